"""``bake stage``: upload a release's artifacts from a mirror to S3 (for builds without internet).

Parsing only; the work is in ``bake.stage``. boto3 is imported lazily, inside the command.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from bake.commands.common import (
    MirrorUrl,
    addons_option,
    arches_option,
    catalog_option,
    k8s_option,
    output_option,
)


@click.command()
@k8s_option
@arches_option
@click.option(
    "--mirror",
    required=True,
    metavar="DIR|URL",
    type=MirrorUrl(allow_dir=True, must_exist=False),  # checked where it is read
    help="Mirror to copy from (<mirror>/<host>/<path> layout); with --images-from, the mirror "
    "directory the image archives are written into.",
)
@click.option(
    "--bucket", metavar="s3://BUCKET/PREFIX", help="Where to stage the artifacts (S3)."
)
@click.option(
    "--images-from",
    "images_from",
    metavar="REGISTRY",
    help="Copy the release's images by their pinned digests from this registry "
    "(host[:port][/path], or http://host:port for a plain-HTTP one) into OCI archives on "
    "--mirror DIR, and write their SHA-256 to --overlay-out (skopeo).",
)
@click.option(
    "--overlay-out",
    "overlay_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --images-from: the catalog overlay to write (default: "
    "<mirror>/bake-images/catalog-overlay.yaml).",
)
@click.option(
    "--registry-auth",
    "registry_auth",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --images-from: a containers auth.json for the registry (skopeo --authfile).",
)
@click.option(
    "--os-packages",
    "os_packages",
    is_flag=True,
    help="Fetch the OS packages a build without internet installs (kubeadm's tools and the "
    "node agent's Python modules, as image-recipes/os/debian-12.yaml names them, and their "
    "dependencies) with this Debian 12 host's apt into --mirror DIR, and pin their SHA-256 in "
    "<mirror>/os-packages/catalog-overlay.yaml.",
)
@click.option(
    "--resolve-digests",
    is_flag=True,
    help="With --images-from: pin images the catalog has no digest for to the digest the "
    "registry serves now (trust on first use; recorded in the overlay).",
)
@click.option(
    "--kms-key-id", metavar="KEY", help="KMS key for the objects (default: the aws/s3 key)."
)
@click.option("--no-images", is_flag=True, help="Skip the container image archives.")
@click.option(
    "--dry-run", is_flag=True, help="Verify the files and list the uploads; upload nothing."
)
@output_option
@catalog_option
@addons_option
@click.pass_obj
def stage(
    g, k8s, arches, mirror, bucket, images_from, overlay_out, registry_auth, os_packages,
    resolve_digests, kms_key_id, no_images, dry_run, output, catalogs, addons,
) -> None:
    """Verify a release's artifacts (SHA-256) and upload them to S3 in the mirror layout.

    Then bake with `bake ami --artifacts s3://BUCKET/PREFIX` in a subnet without internet.
    With --images-from REGISTRY, first copy the release's images by digest into OCI archives on
    the mirror directory (and pin their SHA-256 in an overlay), for `bake ami --mirror`.

    \b
    Examples:
      bake stage --k8s 1.30 --images-from registry.k8s.io --mirror ./mirror
      bake stage --k8s 1.30 --os-packages --mirror ./mirror
      bake stage --k8s 1.30 --mirror ./mirror --bucket s3://my-bucket/bake \\
        --catalog ./mirror/bake-images/catalog-overlay.yaml
    """
    from bake.errors import UsageError

    say = (lambda s: None) if output == "json" else lambda line: click.echo(line, err=True)
    written: dict[str, str] = {}  # overlays this run wrote: what -> path
    if images_from or os_packages:
        from urllib.parse import urlsplit
        from urllib.request import url2pathname

        if not mirror.startswith("file://"):
            raise UsageError(
                "--images-from and --os-packages write into --mirror DIR: pass a local directory"
            )
        out_dir = Path(url2pathname(urlsplit(mirror).path))
    elif overlay_out or registry_auth or resolve_digests:
        raise UsageError(
            "--overlay-out, --registry-auth and --resolve-digests go with --images-from"
        )
    if os_packages:
        from bake.stage import OsPackagesOptions, download_os_packages

        if len(arches) != 1:
            raise UsageError("--os-packages stages the host's arch only: pass one --arch")
        overlay = out_dir / "os-packages" / "catalog-overlay.yaml"
        doc = download_os_packages(
            OsPackagesOptions(arches[0], out_dir, overlay), say
        )
        count = sum(len(a) for o in doc["os_packages"].values() for a in o.values())
        say(f"{count} OS packages in {out_dir / 'os-packages'}; overlay {overlay}")
        written["os_packages"] = str(overlay)
        catalogs = (*catalogs, overlay)
    if images_from:
        from bake.stage import ImagesFromRegistry, images_from_registry

        overlay = overlay_out or out_dir / "bake-images" / "catalog-overlay.yaml"
        doc = images_from_registry(
            ImagesFromRegistry(k8s, arches, images_from, out_dir, overlay, tuple(catalogs),
                               registry_auth, resolve_digests, addons),
            say,
        )
        count = sum(len(v) for v in doc["image_archives"].values())
        if output != "json":
            click.echo(f"{count} image archives in {out_dir / 'bake-images'}; overlay {overlay}")
        written["image_archives"] = str(overlay)
        catalogs = (*catalogs, overlay)
    if written and not bucket:
        if output == "json":
            click.echo(json.dumps({"overlays": written}, indent=2))
        elif os_packages and not images_from:
            click.echo(f"overlay {written['os_packages']}")
        return
    if not bucket:
        raise UsageError(
            "missing --bucket s3://BUCKET/PREFIX (or --images-from REGISTRY / --os-packages)"
        )
    from bake.aws.session import AwsClients, target_from_options
    from bake.stage import StageOptions, stage_release

    options = StageOptions(
        k8s=k8s,
        arches=arches,
        mirror=mirror,
        bucket=bucket,
        catalogs=tuple(catalogs),
        images=not no_images,
        kms_key_id=kms_key_id,
        dry_run=dry_run,
        addons=addons,
    )
    quiet = output == "json"
    staged = stage_release(
        AwsClients(target_from_options(g)), options, (lambda s: None) if quiet else click.echo
    )
    if quiet:
        click.echo(json.dumps({"objects": [vars(o) for o in staged]}, indent=2))
        return
    new = sum(o.uploaded for o in staged)
    click.echo(f"{len(staged)} files staged in {bucket} ({new} uploaded now)")
