"""``bake init`` / ``validate`` / ``launch`` / ``destroy``: the cluster file and its stack.

Parsing only; the work is in ``bake.cluster`` (the file) and ``bake.launch`` (render, deploy).
boto3 is imported lazily inside the commands that talk to AWS.
"""

from __future__ import annotations

from pathlib import Path

import click

from bake.commands.common import catalog_option, confirmer

file_option = click.option(
    "-f",
    "--file",
    "cluster_file",
    default="cluster.yaml",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The cluster file (create one with `bake init`).",
)


def _clients(g, local: bool):
    from bake.aws.session import AwsClients, target_from_options

    if local:
        from bake.sandbox import require_running, sandbox_target

        return AwsClients(sandbox_target(require_running(g.data_dir)))
    return AwsClients(target_from_options(g))


def _target_region(g, spec):
    """Use the cluster file's region unless --region was given."""
    from dataclasses import replace

    return g if g.region else replace(g, region=spec.region)


@click.command()
@click.option(
    "-f",
    "--file",
    "cluster_file",
    default="cluster.yaml",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the file.",
)
@click.option("--name", default="demo", show_default=True, help="Cluster name ([a-z0-9-]).")
@click.option(
    "--region", "cluster_region", default="us-east-1", show_default=True, help="AWS region."
)
@click.option(
    "--k8s", "minor", default="1.30", show_default=True, metavar="MINOR", help="Kubernetes minor."
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(cluster_file: Path, name: str, cluster_region: str, minor: str, force: bool) -> None:
    """Write a commented cluster.yaml to start from."""
    from bake.cluster import ClusterFileError, init_text

    text = init_text(name=name, region=cluster_region, minor=minor)
    if cluster_file.exists() and not force:
        raise ClusterFileError(f"{cluster_file} exists: pass --force to overwrite it")
    from bake.userfiles import write_file

    write_file(cluster_file, text, "-f")
    click.echo(f"wrote {cluster_file}: edit it, then `bake validate -f {cluster_file}`")


@click.command()
@file_option
@catalog_option
def validate(cluster_file: Path, catalogs: tuple[Path, ...]) -> None:
    """Check the cluster file and render its template and user-data (no AWS calls)."""
    from bake.cluster import load_checked_cluster
    from bake.launch import render_cluster

    spec = load_checked_cluster(cluster_file, catalogs)
    docs = render_cluster(spec)
    sizes = ", ".join(f"{role} user-data {len(t.encode())} B" for role, t in docs.user_data.items())
    click.echo(
        f"{cluster_file}: ok: cluster {spec.name} in {spec.region}, "
        f"Kubernetes {spec.kubernetes_minor}, "
        f"{spec.control_plane.desired} control planes, workers {spec.workers.min_size}-"
        f"{spec.workers.max_size}, {'air-gapped' if spec.network.air_gapped else 'NAT egress'}; "
        f"template {len(docs.template.encode())} B, {sizes}"
    )


@click.command()
@file_option
@click.option("--yes", is_flag=True, help="Apply the change set without asking.")
@click.option("--local", is_flag=True, help="Deploy into the embedded AWS (`bake sandbox start`).")
@click.option(
    "--timeout", default=3600, show_default=True, type=int, help="Seconds to follow the stack."
)
@catalog_option
@click.pass_obj
def launch(g, cluster_file: Path, yes: bool, local: bool, timeout: int, catalogs) -> None:
    """Deploy the cluster stack through a change set, streaming its events."""
    from bake.aws.cloudformation import CloudFormation
    from bake.cluster import load_checked_cluster
    from bake.launch import LaunchOptions, stack_parameters
    from bake.launch import launch as run_launch

    spec = load_checked_cluster(cluster_file, catalogs)
    confirm = confirmer(yes, f"bake launch of stack {spec.stack_name}")
    clients = _clients(_target_region(g, spec), local)
    result = run_launch(
        LaunchOptions(spec=spec, yes=yes, timeout_seconds=timeout),
        CloudFormation(clients.client("cloudformation")),
        echo=click.echo,
        confirm=confirm,
        parameters=stack_parameters(spec, clients.client("ec2")),
    )
    if result.outputs:
        click.echo(f"stack {result.stack_name}: {result.status}")
        for key, value in sorted(result.outputs.items()):
            click.echo(f"  {key:<26} {value}")


@click.command()
@file_option
@click.option("--yes", is_flag=True, help="Delete without asking.")
@click.option("--local", is_flag=True, help="Use the embedded AWS (`bake sandbox start`).")
@click.option(
    "--timeout", default=3600, show_default=True, type=int, help="Seconds to follow the stack."
)
@click.pass_obj
def destroy(g, cluster_file: Path, yes: bool, local: bool, timeout: int) -> None:
    """Delete the cluster stack (every resource it created)."""
    from bake.aws.cloudformation import CloudFormation
    from bake.cluster import load_cluster
    from bake.launch import destroy as run_destroy

    spec = load_cluster(cluster_file)
    confirm = confirmer(yes, f"bake destroy of stack {spec.stack_name}")
    # the target must exist and answer before anyone is asked anything
    clients = _clients(_target_region(g, spec), local)
    cfn = CloudFormation(clients.client("cloudformation"))
    if cfn.stack_status(spec.stack_name) is None:
        click.echo(f"no stack {spec.stack_name}: nothing to delete")
        click.echo(f"stack {spec.stack_name}: NOT_FOUND")
        return
    if not confirm(f"delete stack {spec.stack_name} and everything in it?"):
        click.echo("not deleted")
        return
    status = run_destroy(spec, cfn, click.echo, timeout=timeout)
    click.echo(f"stack {spec.stack_name}: {status}")
