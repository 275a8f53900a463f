"""``bake prune``: deregister older bake AMIs and their snapshots.

Parsing only; the work is in ``bake.prune``. boto3 is imported lazily, inside the command.
"""

from __future__ import annotations

import json

import click

from bake.commands.common import output_option


@click.command()
@click.option(
    "--keep",
    type=int,
    required=True,
    metavar="N",
    help="Newest images kept per Kubernetes minor, OS and arch.",
)
@click.option("--dry-run", is_flag=True, help="List what would be removed; change nothing.")
@click.option(
    "--ssm-prefix",
    default="/bake/k8s",
    show_default=True,
    metavar="PREFIX",
    help="Images published under this SSM hierarchy are never removed.",
)
@output_option
@click.pass_obj
def prune(g, keep: int, dry_run: bool, ssm_prefix: str, output: str) -> None:
    """Deregister older bake AMIs and delete their snapshots (never one SSM points to)."""
    from bake.aws.session import AwsClients, target_from_options
    from bake.prune import PruneOptions
    from bake.prune import prune as run_prune

    options = PruneOptions(keep=keep, ssm_prefix=ssm_prefix, dry_run=dry_run)
    quiet = output == "json"
    decisions = run_prune(
        AwsClients(target_from_options(g)), options, (lambda s: None) if quiet else click.echo
    )
    if quiet:
        click.echo(
            json.dumps({"dry_run": dry_run, "images": [d.to_json() for d in decisions]}, indent=2)
        )
        return
    gone = [d for d in decisions if d.action == "delete"]
    kept = len(decisions) - len(gone)
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {len(gone)} image(s), kept {kept}")
