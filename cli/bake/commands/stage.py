"""``bake stage``: upload a release's artifacts from a mirror to S3 (for builds without internet).

Parsing only; the work is in ``bake.stage``. boto3 is imported lazily, inside the command.
"""

from __future__ import annotations

import json

import click

from bake.commands.common import MirrorUrl, catalog_option, k8s_option


@click.command()
@k8s_option
@click.option("--arch", default="amd64", show_default=True, help="Comma-separated: amd64,arm64.")
@click.option(
    "--mirror",
    required=True,
    metavar="DIR|URL",
    type=MirrorUrl(allow_dir=True),
    help="Mirror to copy from (<mirror>/<host>/<path> layout).",
)
@click.option(
    "--bucket", required=True, metavar="s3://BUCKET/PREFIX", help="Where to stage the artifacts."
)
@click.option(
    "--kms-key-id", metavar="KEY", help="KMS key for the objects (default: the aws/s3 key)."
)
@click.option("--no-images", is_flag=True, help="Skip the container image archives.")
@click.option(
    "--dry-run", is_flag=True, help="Verify the files and list the uploads; upload nothing."
)
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@catalog_option
@click.pass_obj
def stage(g, k8s, arch, mirror, bucket, kms_key_id, no_images, dry_run, output, catalogs) -> None:
    """Verify a release's artifacts (SHA-256) and upload them to S3 in the mirror layout.

    Then bake with `bake ami --artifacts s3://BUCKET/PREFIX` in a subnet without internet.
    """
    from bake.aws.session import AwsClients, target_from_options
    from bake.stage import StageOptions, stage_release

    options = StageOptions(
        k8s=k8s,
        arches=tuple(a.strip() for a in arch.split(",") if a.strip()),
        mirror=mirror,
        bucket=bucket,
        catalogs=tuple(catalogs),
        images=not no_images,
        kms_key_id=kms_key_id,
        dry_run=dry_run,
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
