"""``bake init`` / ``validate`` / ``launch`` / ``destroy``: the cluster file and its stack.

Parsing only; the work is in ``bake.cluster`` (the file) and ``bake.launch`` (render, deploy).
boto3 is imported lazily inside the commands that talk to AWS.
"""

from __future__ import annotations

from pathlib import Path

import click

from bake.commands.common import catalog_option, confirmer, out_dir_option, output_option
from bake.localcluster import DRILLS

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
@click.option(
    "--local",
    is_flag=True,
    help="Size it for `bake launch --local`: 3 control planes and 2 workers as VMs here.",
)
def init(
    cluster_file: Path, name: str, cluster_region: str, minor: str, force: bool, local: bool
) -> None:
    """Write a commented cluster.yaml to start from."""
    from bake.cluster import ClusterFileError, init_text

    text = init_text(name=name, region=cluster_region, minor=minor, local=local)
    if cluster_file.exists() and not force:
        raise ClusterFileError(f"{cluster_file} exists: pass --force to overwrite it")
    from bake.userfiles import write_file

    write_file(cluster_file, text, "-f")
    then = f"`bake launch --local -f {cluster_file}`" if local else (
        f"`bake validate -f {cluster_file}`")
    click.echo(f"wrote {cluster_file}: edit it, then {then}")


@click.command()
@file_option
@catalog_option
def validate(cluster_file: Path, catalogs: tuple[Path, ...]) -> None:
    """Check the cluster file and render its template and user-data (no AWS calls)."""
    from bake.cluster import load_checked_cluster
    from bake.launch import TEMPLATE_BODY_LIMIT, render_cluster

    spec = load_checked_cluster(cluster_file, catalogs)
    docs = render_cluster(spec)
    sizes = ", ".join(f"{role} user-data {len(t.encode())} B" for role, t in docs.user_data.items())
    click.echo(
        f"{cluster_file}: ok: cluster {spec.name} in {spec.region}, "
        f"Kubernetes {spec.kubernetes_minor}, "
        f"{spec.control_plane.desired} control planes, workers {spec.workers.min_size}-"
        f"{spec.workers.max_size}, {'air-gapped' if spec.network.air_gapped else 'NAT egress'}, "
        f"add-ons: {', '.join([spec.cni, *spec.addons.names()])}; "
        f"template {len(docs.template_body.encode())} B of {TEMPLATE_BODY_LIMIT} (as deployed), "
        f"{sizes}"
    )


def _deployer(spec, clients, yes: bool, timeout: int, local: bool, echo):
    """The change-set deploy of ``bake launch`` for ``spec``, as a callable (asks first unless
    ``yes``; refuses without a terminal)."""
    from bake.aws.cloudformation import CloudFormation
    from bake.launch import LaunchOptions, stack_parameters
    from bake.launch import launch as run_launch

    confirm = confirmer(yes, f"bake launch of stack {spec.stack_name}")

    def deploy():
        return run_launch(
            LaunchOptions(spec=spec, yes=yes, timeout_seconds=timeout, poll_seconds=1 if local
                          else 5),
            CloudFormation(clients.client("cloudformation")),
            echo=echo,
            confirm=confirm,
            parameters=stack_parameters(spec, clients.client("ec2")),
        )

    return deploy


@click.command()
@file_option
@click.option("--yes", is_flag=True, help="Apply the change set without asking.")
@click.option(
    "--local",
    is_flag=True,
    help="Deploy into the embedded AWS and boot the instances as VMs of the baked image here.",
)
@click.option(
    "--timeout", default=3600, show_default=True, type=int, help="Seconds to follow the stack."
)
@click.option(
    "--join-timeout",
    default=1800,
    show_default=True,
    type=int,
    help="--local: seconds to wait for every node to join.",
)
@catalog_option
@click.pass_obj
def launch(
    g, cluster_file: Path, yes: bool, local: bool, timeout: int, join_timeout: int, catalogs
) -> None:
    """Deploy the cluster stack through a change set, streaming its events.

    With --local, the stack goes into the embedded AWS and every instance of its Auto Scaling
    groups boots as a VM of the baked image, with its launch template's user-data.
    """
    from bake.cluster import load_checked_cluster

    spec = load_checked_cluster(cluster_file, catalogs)
    clients = _clients(_target_region(g, spec), local)
    deploy = _deployer(spec, clients, yes, timeout, local, click.echo)

    if local:
        from bake.localcluster.service import LocalOptions, launch_local

        results = launch_local(
            LocalOptions(spec, g.data_dir, spec.local.vm_memory_mib, float(join_timeout)),
            clients, click.echo, deploy)
        def secs(value) -> str:
            return "-" if value is None else f"{value:.1f} s"

        click.echo(f"{'INSTANCE':<21} {'NODE':<26} {'ROLE':<14} {'IP':<15} {'MODE':<5} "
                   f"{'BOOT->JOINED':>12} {'AGENT':>7} {'CONFIG':>7} {'BOOTSTRAP':>9} "
                   f"{'POST':>7}  JOINED")
        for r in results:
            row = r.row()
            ph = row["phases"]
            click.echo(f"{row['instance_id']:<21} {row['hostname']:<26} {row['role']:<14} "
                       f"{row['private_ip']:<15} {row['mode']:<5} "
                       f"{secs(row['boot_to_joined_s']):>12} {secs(row['agent_overhead_s']):>7} "
                       f"{secs(ph.get('config')):>7} {secs(ph.get('bootstrap')):>9} "
                       f"{secs(ph.get('post')):>7}  {'yes' if row['status'] == 'joined' else 'no'}")
        click.echo("AGENT: agent start to the first kubeadm call (identity, config, lease, join "
                   "material); phase times from each agent's own report")
        click.echo(f"cluster {spec.name}: {len(results)} nodes joined; `bake status --local -f "
                   f"{cluster_file}`, `bake logs --local -f {cluster_file} NODE`")
        return
    result = deploy()
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
    vms = None
    if local:
        from bake.localcluster.state import read_state

        vms = read_state(g.data_dir, spec.name)
    # the target must exist and answer before anyone is asked anything
    clients = _clients(_target_region(g, spec), local)
    cfn = CloudFormation(clients.client("cloudformation"))
    stack = cfn.stack_status(spec.stack_name)
    if stack is None and vms is None:
        click.echo(f"no stack {spec.stack_name}: nothing to delete")
        click.echo(f"stack {spec.stack_name}: NOT_FOUND")
        return
    what = f"stack {spec.stack_name}" + (f" and the {len(vms.get('nodes', []))} local VMs"
                                         if vms else "")
    if not confirm(f"delete {what} and everything in it?"):
        click.echo("not deleted")
        return
    if vms is not None:
        from bake.localcluster.service import destroy_local

        destroy_local(g.data_dir, spec.name, click.echo)
    if stack is None:
        click.echo(f"stack {spec.stack_name}: NOT_FOUND")
        return
    status = run_destroy(spec, cfn, click.echo, timeout=timeout, ssm=clients.client("ssm"))
    click.echo(f"stack {spec.stack_name}: {status}")


@click.command()
@file_option
@click.option("--local", is_flag=True, help="The local VM cluster (embedded AWS).")
@output_option
@click.pass_obj
def status(g, cluster_file: Path, local: bool, output: str) -> None:
    """Show the cluster's nodes, etcd members, join material and anything stuck."""
    import json

    from bake.cluster import load_cluster
    from bake.status import cluster_status, format_status

    spec = load_cluster(cluster_file)
    clients = _clients(_target_region(g, spec), local)
    local_state = None
    if local:
        from bake.localcluster.service import STANDIN_NOTE
        from bake.localcluster.state import read_state

        local_state = read_state(g.data_dir, spec.name) or {"nodes": []}
    result = cluster_status(spec, clients, local_state)
    if output == "json":
        click.echo(json.dumps(result.to_json(), indent=2, default=str))
        return
    for line in format_status(result):
        click.echo(line)
    if local:
        click.echo(STANDIN_NOTE)


@click.command()
@file_option
@click.option("--local", is_flag=True, help="The local VM cluster (embedded AWS).")
@out_dir_option("Directory for <cluster name>.kubeconfig.", default=Path("."))
@click.option("--force", is_flag=True, help="Replace an existing file.")
@click.pass_obj
def kubeconfig(g, cluster_file: Path, local: bool, out_dir: Path, force: bool) -> None:
    """Fetch the cluster's admin kubeconfig (written 0600, never printed).

    \b
    Example:
      bake kubeconfig -f cluster.yaml -o ~/.kube
      kubectl --kubeconfig ~/.kube/demo.kubeconfig get nodes
    """
    from bake.cluster import load_cluster
    from bake.kubeconfig import KubeconfigOptions, fetch_kubeconfig

    spec = load_cluster(cluster_file)
    path = fetch_kubeconfig(
        spec, _clients(_target_region(g, spec), local), KubeconfigOptions(out_dir, force)
    )
    click.echo(f"wrote {path} (mode 0600; server: the control-plane endpoint)")


@click.command()
@file_option
@click.option("--local", is_flag=True, help="A VM of the local cluster (its serial console).")
@click.option("--lines", type=int, default=None, help="Only the last N lines.")
@click.argument("node")
@click.pass_obj
def logs(g, cluster_file: Path, local: bool, lines: int | None, node: str) -> None:
    """Print a node's console: kernel, systemd, cloud-init and the node agent's journal.

    NODE is an instance id, a private IP or a host name. On AWS this is the instance's console
    output (ec2:GetConsoleOutput); locally, the VM's serial console.
    """
    from bake.cluster import load_cluster
    from bake.errors import UsageError

    spec = load_cluster(cluster_file)
    if local:
        from bake.localcluster.state import console_text, find_node, read_state

        state = read_state(g.data_dir, spec.name)
        if state is None:
            raise UsageError(f"no local cluster {spec.name} is running: `bake launch --local -f "
                             f"{cluster_file}`")
        click.echo(console_text(find_node(state, node), lines), nl=False)
        return
    from bake.aws import ec2

    clients = _clients(_target_region(g, spec), False)
    text = ec2.console_output(clients.client("ec2"), node)
    if lines:
        text = "\n".join(text.splitlines()[-lines:]) + "\n"
    click.echo(text, nl=False)


@click.command()
@file_option
@click.option("--local", is_flag=True, help="Required: drills run on the local VM cluster.")
@click.option("--join-timeout", default=1500, show_default=True, type=int,
              help="Seconds to wait for a replacement node to join.")
@output_option
@click.option("--yes", is_flag=True, help="leader-dies-mid-init: apply the new cluster's change "
              "set without asking.")
@click.argument("name", metavar="NAME", type=click.Choice(DRILLS))
@catalog_option
@click.pass_obj
def drill(g, cluster_file: Path, local: bool, join_timeout: int, output: str, yes: bool,
          name: str, catalogs) -> None:
    """Run failure drill NAME against the running local cluster and check it recovers.

    NAME is one of: control-plane-replace, control-plane-roll, control-plane-upgrade (bake the
    next minor's image with `bake ami --local` first), quorum-guard, stale-learner,
    embedded-aws-outage, worker-after-token-expiry (on a running cluster), leader-dies-mid-init
    (launches the cluster itself and breaks it while it forms; none may be running).

    Prints what the drill did and checked and the seconds to recover, writes the result as
    JSON under the cluster's directory, and exits 1 when the cluster did not come back healthy.
    See docs/drills.md.
    """
    import json

    from bake.cluster import load_checked_cluster, load_cluster
    from bake.errors import BakeError, UsageError

    if not local:
        raise UsageError("drills break a cluster on purpose: they run on the local VM cluster "
                         "only (add --local)")
    from bake.localcluster import FRESH_CLUSTER_DRILLS
    from bake.localcluster.drills import run_drill
    from bake.localcluster.service import LocalOptions
    from bake.localcluster.state import read_state

    fresh = name in FRESH_CLUSTER_DRILLS
    spec = load_checked_cluster(cluster_file, catalogs) if fresh else load_cluster(cluster_file)
    running = read_state(g.data_dir, spec.name) is not None
    if fresh and running:
        raise UsageError(f"drill {name} forms a new cluster: `bake destroy --local -f "
                         f"{cluster_file}` first")
    if not fresh and not running:
        raise UsageError(f"no local cluster {spec.name} is running: `bake launch --local -f "
                         f"{cluster_file}` first")
    clients = _clients(_target_region(g, spec), True)
    echo = click.echo if output == "text" else (lambda line: click.echo(line, err=True))
    options = LocalOptions(spec, g.data_dir, spec.local.vm_memory_mib, float(join_timeout))
    launch = None
    if fresh:
        from bake.localcluster.service import launch_local

        deploy = _deployer(spec, clients, yes, 3600, True, echo)

        def launch() -> None:
            launch_local(options, clients, echo, deploy, wait=False)

    result = run_drill(options, clients, echo, name, launch)
    if output == "json":
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        took = f"recovered in {result.recovery_s:.0f} s" if result.recovery_s is not None \
            else "did not recover"
        click.echo(f"drill {name}: {'PASSED' if result.passed else 'FAILED'} ({took}; "
                   f"{len(result.checked)} checks held, {len(result.failures)} failed); "
                   f"result: {result.details.get('result_file')}")
    if not result.passed:
        raise BakeError(f"drill {name} failed: {'; '.join(result.failures) or 'no recovery'}")
