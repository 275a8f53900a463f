"""``bake ami status|wait|cancel ARN``: attach to an EC2 Image Builder build.

Parsing only; the work is in ``bake.builders.imagebuilder``. The lead attaches these click
commands to the ``ami`` group (``ami.add_command(status)``, ``wait``, ``cancel``). boto3
is imported lazily, inside the commands.
"""

from __future__ import annotations

import json

import click

from bake.commands.common import interrupt_confirmer, output_option, ssm_prefix_option

_log_options = [
    click.option(
        "--log-bucket",
        metavar="BUCKET",
        help="S3 bucket of the build logs, to show where they are.",
    ),
    click.option("--log-prefix", default="bake/imagebuilder", show_default=True, metavar="PREFIX"),
]


def _with_log_options(fn):
    for option in reversed(_log_options):
        fn = option(fn)
    return fn


def _driver(
    g,
    log_bucket: str | None,
    log_prefix: str,
    poll_seconds: float = 30.0,
    timeout_minutes: int = 240,
):
    from bake.aws.session import AwsClients, target_from_options
    from bake.builders.imagebuilder import ImageBuilderDriver, ImageBuilderOptions

    options = ImageBuilderOptions(
        instance_types=(),
        subnet_id=None,
        security_group_ids=(),
        instance_profile="",
        log_bucket=log_bucket,
        log_prefix=log_prefix,
        regions=(),
        target_accounts=(),
        kms_key_id=None,
        artifacts_s3=None,
        poll_seconds=poll_seconds,
        timeout_minutes=timeout_minutes,
    )
    return ImageBuilderDriver(AwsClients(target_from_options(g)), options, click.echo)


def _check_arn(arn: str) -> None:
    from bake.errors import UsageError

    if ":image/" not in arn or not arn.startswith("arn:"):
        raise UsageError(
            f"{arn!r} is not an image build version ARN (arn:aws:imagebuilder:<region>:<account>:"
            "image/<name>/<x.y.z>/<n>, as printed by `bake ami --no-wait`)"
        )


@click.command("status")
@click.argument("arn")
@output_option
@_with_log_options
@click.pass_obj
def status(g, arn: str, output: str, log_bucket: str | None, log_prefix: str) -> None:
    """Show the status, workflow steps and AMIs of an Image Builder build."""
    from bake.builders.imagebuilder import log_location

    _check_arn(arn)
    driver = _driver(g, log_bucket, log_prefix)
    current = driver.status(arn)
    if output == "json":
        click.echo(json.dumps(current.to_json(), indent=2))
        return
    click.echo(f"{arn}: {current.status}{' - ' + current.reason if current.reason else ''}")
    for step in current.steps:
        click.echo(f"  {step.kind.lower():12} {step.name}: {step.status}")
    for ami in current.amis:
        click.echo(f"  AMI {ami.image_id} in {ami.region}")
    if current.status == "FAILED":
        click.echo(f"  logs: {log_location(driver.options, current)}")


@click.command("wait")
@click.argument("arn")
@click.option(
    "--poll-seconds", type=float, default=30.0, show_default=True, help="Seconds between polls."
)
@click.option("--timeout-minutes", type=int, default=240, show_default=True)
@click.option("--yes", is_flag=True, help="On Ctrl-C, cancel the build without asking.")
@ssm_prefix_option
@output_option
@_with_log_options
@click.pass_obj
def wait(
    g,
    arn: str,
    poll_seconds: float,
    timeout_minutes: int,
    yes: bool,
    ssm_prefix: str,
    output: str,
    log_bucket: str | None,
    log_prefix: str,
) -> None:
    """Wait for a build `bake ami --no-wait` started, then publish it as `bake ami` does.

    Ctrl-C asks whether to cancel the build.
    """
    from bake.builders.imagebuilder import publish_when_done

    _check_arn(arn)
    driver = _driver(g, log_bucket, log_prefix, poll_seconds, timeout_minutes)
    result = publish_when_done(driver, arn, ssm_prefix, interrupt_confirmer(yes))
    if output == "json":
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    click.echo(f"AVAILABLE after {int(result.details['elapsed_seconds'])} s")
    for p in result.publications:
        click.echo(f"  ssm: {p['ssm_parameter']} = {p['image_id']} ({p['region']}, {p['label']})")


@click.command("cancel")
@click.argument("arn")
@click.pass_obj
def cancel(g, arn: str) -> None:
    """Cancel a running Image Builder build (nothing is published)."""
    _check_arn(arn)
    _driver(g, None, "").cancel(arn)
