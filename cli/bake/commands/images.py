"""``bake images``: what was baked (EC2 + SSM, and local build output).

Parsing only; the work is in ``bake.images``. boto3 is imported lazily, inside the command.
"""

from __future__ import annotations

import json

import click

from bake.commands.common import output_option


@click.group()
def images() -> None:
    """List baked images from SSM Parameter Store and EC2."""


@images.command("list")
@output_option
@click.option(
    "--local",
    is_flag=True,
    help="Ask the embedded AWS (`bake sandbox start`) instead of the normal AWS chain.",
)
@click.option(
    "--ssm-prefix",
    default="/bake/k8s",
    show_default=True,
    metavar="PREFIX",
    help="SSM hierarchy the image ids are published under.",
)
@click.pass_obj
def list_cmd(g, output: str, local: bool, ssm_prefix: str) -> None:
    """List baked images, newest first: AMI, version, arch, SSM publication, local paths."""
    from bake.aws.session import AwsClients, target_from_options
    from bake.images import ImagesOptions, format_table, list_images

    if local:
        from bake.sandbox import require_running, sandbox_target

        target = sandbox_target(require_running(g.data_dir))
    else:
        target = target_from_options(g)
    options = ImagesOptions(data_dir=g.data_dir, ssm_prefix=ssm_prefix)
    found = list_images(AwsClients(target), options)
    if output == "json":
        click.echo(json.dumps({"images": [i.to_json() for i in found]}, indent=2))
        return
    if not found:
        click.echo("no baked images (bake one with: bake ami --k8s 1.30 --local)")
        return
    click.echo(format_table(found))
