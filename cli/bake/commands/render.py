"""``bake render``: write the documents bake would upload or run, for review.

``bake render ami`` renders the EC2 Image Builder documents of one release (components, image
recipe, infrastructure and distribution configurations) into a directory, without any AWS call
(boto3 is never imported on this path). Other ``render`` sub-commands are attached at the bottom.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from bake.commands.common import (
    addons_option,
    arch_option,
    artifacts_option,
    catalog_option,
    k8s_option,
    mirror_option,
    os_option,
    out_dir_option,
    ssm_prefix_option,
)


@dataclass(frozen=True)
class RenderAmiOptions:
    """Options of ``bake render ami``.

    Attributes:
        k8s: version request (``1.30`` or ``1.30.12``).
        arch: ``amd64`` or ``arm64``.
        mirror: artifact mirror base URL, or ``None`` for upstream URLs.
        catalogs: catalog overlay files.
        ssm_prefix: SSM hierarchy of the published image id.
        out_dir: output directory.
        cloudformation: also write the Image Builder resources as a CloudFormation template
            (``cloudformation/imagebuilder.yaml``), for teams that deploy through stacks.
        os_name: the image OS (``image-recipes/os/<os>.yaml``).
        artifacts_s3: ``s3://bucket/prefix`` staged by ``bake stage``: render the S3Download
            documents of a build without internet (``RenderOptions.artifacts_s3``), with the
            ``bake-node`` component fetching the node agent's bundle from there, exactly as
            ``bake ami --artifacts`` renders them (``bake.ami.agent_source_s3``).
        addons: ``--addons``: ``None`` for every add-on the catalog pins, else those names.
    """

    k8s: str
    arch: str
    mirror: str | None
    catalogs: tuple[Path, ...]
    ssm_prefix: str
    out_dir: Path
    cloudformation: bool = False
    artifacts_s3: str | None = None
    os_name: str = "debian-12"
    addons: tuple[str, ...] | None = None


def render_ami(options: RenderAmiOptions) -> tuple[list[Path], list[str]]:
    """Resolve the release, render its documents and write them under ``options.out_dir``.

    Returns:
        ``(paths written, notes for the user)``.
    Raises:
        CatalogError: unknown version/arch, bad overlay, image archives without a mirror.
        RenderError: a template failed.
        UsageError: a malformed ``artifacts_s3``, or one with an OS-package runtime.
    """
    from bake.ami import agent_source_s3
    from bake.catalog import load_catalog, resolve
    from bake.render import RenderOptions, render_image_documents

    release = resolve(load_catalog(options.catalogs), options.k8s, options.arch, options.os_name,
                      addons=options.addons)
    agent = agent_source_s3(options.artifacts_s3) if options.artifacts_s3 else None
    docs = render_image_documents(
        release,
        RenderOptions(
            mirror=options.mirror,
            ssm_prefix=options.ssm_prefix,
            artifacts_s3=options.artifacts_s3,
            agent=agent,
        ),
    )
    files = docs.files()
    if options.cloudformation:
        from bake.render_cfn import render_cloudformation

        files["cloudformation/imagebuilder.yaml"] = render_cloudformation(docs)
    from bake.userfiles import write_files

    paths = write_files(options.out_dir, files, "-o")
    notes = []
    missing = [i.ref for i in release.images if not i.archive_sha256]
    if missing:
        notes.append(
            f"note: no image archive SHA-256 in the catalog for {len(missing)} of "
            f"{len(release.images)} images, so bake-images and the add-ons' components stage none "
            f"of them; add an "
            "image_archives section with --catalog FILE and pass --mirror URL"
        )
    if agent is not None:
        notes.append(
            f"note: bake-node fetches the node agent from {agent.url} (sha256 {agent.sha256}); "
            "`bake ami --artifacts` uploads it there before the build"
        )
    notes.append(
        f"rendered Kubernetes {release.kubernetes_version} ({release.os}, {release.arch}), "
        f"content {docs.content_hash[:12]}"
    )
    return paths, notes


@click.group()
def render() -> None:
    """Render Image Builder documents (or cluster templates) for review."""


@render.command("ami")
@k8s_option
@arch_option
@os_option
@mirror_option
@ssm_prefix_option
@catalog_option
@out_dir_option("Directory to write components/ and image-recipes/ into.", "--out")
@click.option(
    "--format",
    "formats",
    type=click.Choice(["documents", "cloudformation"]),
    multiple=True,
    default=("documents",),
    show_default=True,
    help="documents: the Image Builder documents; cloudformation: also the Image Builder "
    "resources as a CloudFormation template. Repeatable.",
)
@artifacts_option(
    "Fetch every artifact from S3 (staged by `bake stage`) with S3Download + SHA-256 check."
)
@addons_option
def ami(
    k8s: str,
    arch: str,
    os_name: str,
    mirror: str | None,
    ssm_prefix: str,
    catalogs: tuple[Path, ...],
    out_dir: Path,
    formats: tuple[str, ...],
    artifacts_s3: str | None,
    addons: tuple[str, ...] | None,
) -> None:
    """Render the Image Builder documents of one release into a directory.

    \b
    Example:
      bake render ami --k8s 1.30 --arch amd64 -o out/
    """
    paths, notes = render_ami(
        RenderAmiOptions(k8s, arch, mirror, tuple(catalogs), ssm_prefix, out_dir,
                         cloudformation="cloudformation" in formats, artifacts_s3=artifacts_s3,
                         os_name=os_name, addons=addons)
    )
    for path in paths:
        click.echo(str(path))
    for note in notes:
        click.echo(note, err=True)


# Other `bake render` sub-commands are attached here, e.g.:
# render.add_command(...)  # `bake render cluster` (cluster engineer)
from bake.commands.render_cluster import addons as _render_addons  # noqa: E402
from bake.commands.render_cluster import cluster as _render_cluster  # noqa: E402

render.add_command(_render_cluster)
render.add_command(_render_addons)
