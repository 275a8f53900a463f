"""``bake ami``: bake a node image (locally with ``--local``, or in EC2 Image Builder)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from bake.commands.common import (
    MirrorUrl,
    addons_option,
    arches_option,
    artifacts_option,
    catalog_option,
    interrupt_confirmer,
    mirror_option,
    os_option,
    output_option,
    ssm_prefix_option,
)
from bake.context import GlobalOptions
from bake.errors import UsageError


def _progress(output: str):
    """Progress lines go to stderr (stdout stays clean for --output json)."""

    def emit(message: str) -> None:
        click.echo(f"==> {message}", err=True)

    return emit


@click.group(invoke_without_command=True)
@click.option(
    "--k8s",
    "k8s",
    metavar="VERSION",
    help="Kubernetes version: 1.30 (newest known patch) or 1.30.4.",
)
@arches_option
@os_option
@click.option(
    "--local",
    is_flag=True,
    help="Build on this machine and publish into the embedded AWS (moto on 127.0.0.1).",
)
@mirror_option
@ssm_prefix_option
@click.option(
    "--debian-mirror",
    metavar="URL",
    type=MirrorUrl(),
    help="Debian archive for the local parent image (default: the host's apt sources).",
)
@click.option(
    "--keep-failed",
    is_flag=True,
    help="Keep a failed local build's staging directory for inspection.",
)
@click.option(
    "--regions",
    metavar="R1,R2",
    default="",
    help="AWS: regions the AMI is copied to (default: the build region).",
)
@click.option("--instance-profile", metavar="NAME", default="", help="AWS: build instance profile.")
@click.option("--subnet-id", metavar="ID", help="AWS: private subnet for the build instance.")
@click.option(
    "--security-group-id",
    "security_group_ids",
    metavar="ID",
    multiple=True,
    help="AWS: build security group; repeatable.",
)
@click.option(
    "--instance-type",
    "instance_types",
    metavar="TYPE",
    multiple=True,
    help="AWS: build instance type; repeatable.",
)
@click.option("--log-bucket", metavar="BUCKET", help="AWS: S3 bucket for build logs.")
@click.option("--kms-key-id", metavar="KEY", help="AWS: KMS key for the AMI's EBS snapshots.")
@click.option(
    "--target-account",
    "target_accounts",
    metavar="ID",
    multiple=True,
    help="AWS: share/copy the AMI to this account; repeatable.",
)
@artifacts_option("AWS: fetch artifacts from S3 (staged by `bake stage`).")
@click.option(
    "--yes",
    is_flag=True,
    help="AWS: answer yes to every question (on Ctrl-C: cancel the build without asking).",
)
@click.option(
    "--no-wait",
    is_flag=True,
    help="AWS: print the build ARN and return (attach with `bake ami wait ARN`).",
)
@catalog_option
@addons_option
@output_option
@click.pass_context
def ami(
    ctx: click.Context,
    k8s,
    arches,
    os_name,
    local,
    mirror,
    ssm_prefix,
    debian_mirror,
    keep_failed,
    regions,
    instance_profile,
    subnet_id,
    security_group_ids,
    instance_types,
    log_bucket,
    kms_key_id,
    target_accounts,
    artifacts_s3,
    yes,
    no_wait,
    catalogs,
    output,
    addons,
) -> None:
    """Bake a node image for a Kubernetes release and publish its id to SSM.

    \b
    Examples:
      bake ami --k8s 1.30 --local --mirror http://127.0.0.1:8080 --catalog overlay.yaml
      bake ami --k8s 1.30.12 --arch arm64 --region eu-west-1   (EC2 Image Builder)
    """
    if ctx.invoked_subcommand is not None:
        return
    if not k8s:
        raise UsageError("missing --k8s VERSION (e.g. --k8s 1.30); see `bake catalog list`")
    g: GlobalOptions = ctx.obj
    from bake.ami import AmiOptions

    options = AmiOptions(
        k8s=k8s,
        arch=arches[0],
        os_name=os_name,
        catalogs=tuple(Path(c) for c in catalogs),
        mirror=mirror,
        ssm_prefix=ssm_prefix,
        data_dir=g.data_dir,
        keep_failed=keep_failed,
        debian_mirror=debian_mirror,
        addons=addons,
    )
    progress = _progress(output)
    if not local:
        _bake_aws(
            g,
            options,
            arches,
            progress,
            output,
            regions=regions,
            instance_profile=instance_profile,
            subnet_id=subnet_id,
            security_group_ids=security_group_ids,
            instance_types=instance_types,
            log_bucket=log_bucket,
            kms_key_id=kms_key_id,
            target_accounts=target_accounts,
            artifacts_s3=artifacts_s3,
            wait=not no_wait,
            yes=yes,
        )
        return
    if len(arches) != 1:
        raise UsageError("--local bakes one arch at a time (the host's); drop the comma list")
    aws_only = {
        "--artifacts": artifacts_s3,
        "--regions": regions,
        "--instance-profile": instance_profile,
        "--subnet-id": subnet_id,
        "--log-bucket": log_bucket,
        "--kms-key-id": kms_key_id,
        "--no-wait": no_wait,
        "--yes": yes,
        "--security-group-id": security_group_ids,
        "--instance-type": instance_types,
        "--target-account": target_accounts,
    }
    given = [name for name, value in aws_only.items() if value]
    if given:
        raise UsageError(
            f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to EC2 Image Builder "
            "builds, not --local (local builds fetch artifacts from --mirror)"
        )
    from bake.ami import bake_local

    result = bake_local(options, progress)
    if output == "json":
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    click.echo(f"image_id:           {result.image_id}")
    click.echo(f"ssm_parameter:      {result.ssm_parameter} (label {result.label})")
    click.echo(f"kubernetes_version: {result.kubernetes_version} ({result.arch}, {result.os})")
    click.echo(f"build_id:           {result.build_id}")
    for key in ("rootfs_archive", "disk", "kernel", "initrd", "manifest"):
        if key in result.local:
            click.echo(f"{key + ':':<20}{result.local[key]}")
    click.echo(f"took {result.duration_s:.0f} s")


def _bake_aws(
    g: GlobalOptions, options, arches, progress, output, *, regions, yes, **aws_kwargs
) -> None:
    from bake.ami import AwsBakeOptions, bake_aws
    from bake.aws.session import AwsClients, target_from_options

    aws = AwsBakeOptions(
        arches=arches,
        regions=tuple(r.strip() for r in regions.split(",") if r.strip()),
        **aws_kwargs,
    )
    results = bake_aws(
        options,
        aws,
        AwsClients(target_from_options(g)),
        progress,
        confirm=interrupt_confirmer(yes),
    )
    if output == "json":
        click.echo(json.dumps(results, indent=2, default=str))
        return
    for r in results:
        click.echo(f"{r['kubernetes_version']} {r['arch']}: {r['image_arn']}")
        for ami_ in r.get("amis", []):
            click.echo(f"  ami: {ami_}")
        for p in r.get("publications", []):
            click.echo(
                f"  ssm: {p['ssm_parameter']} = {p['image_id']} ({p['region']}, {p['label']})"
            )


def _attach_aws_commands() -> None:
    from bake.commands.ami_aws import cancel, status, wait

    for command in (status, wait, cancel):
        ami.add_command(command)


_attach_aws_commands()
