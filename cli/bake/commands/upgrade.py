"""``bake upgrade``: every node replaced by one of a newer image, control planes first.

Parsing only; the work is in ``bake.upgrade``.
"""

from __future__ import annotations

from pathlib import Path

import click

from bake.commands.cluster import _clients, _target_region, file_option
from bake.commands.common import catalog_option, confirmer


@click.command()
@file_option
@click.option("--k8s", "minor", default=None, metavar="MINOR",
              help="The Kubernetes minor to go to: the control planes' own or the next one "
                   "[default: the cluster file's, to roll onto a newer image of it].")
@click.option("--yes", is_flag=True, help="Upgrade without asking.")
@click.option("--local", is_flag=True,
              help="The local VM cluster: new instances boot as VMs of the target's local "
                   "image (`bake ami --k8s MINOR --local`).")
@click.option("--control-planes-only", is_flag=True,
              help="Stop after the control planes and kube-proxy/CoreDNS; workers later.")
@click.option("--node-timeout", default=1800, show_default=True, type=int,
              help="Seconds a new node may take to boot and join.")
@click.option("--drain-timeout", default=300, show_default=True, type=int,
              help="Seconds `kubectl drain` may take per node (evictions honour PDBs).")
@click.option("--timeout", default=3600, show_default=True, type=int,
              help="Seconds to follow the stack update.")
@catalog_option
@click.pass_obj
def upgrade(g, cluster_file: Path, minor: str | None, yes: bool, local: bool,
            control_planes_only: bool, node_timeout: int, drain_timeout: int, timeout: int,
            catalogs) -> None:
    """Replace every node with one of the target image: control planes one at a time (a new
    one joins, then an old one is drained and leaves etcd), then kube-proxy and CoreDNS, then
    workers (drained, replaced).

    Bake the target first (`bake ami --k8s MINOR`). The cluster must be healthy; the cluster
    file's `kubernetes` is set to the target. A failed step stops the roll with the reason and
    the cluster keeps serving; run the command again to resume.

    \b
    Example:
      bake ami --k8s 1.31
      bake upgrade -f cluster.yaml --k8s 1.31
    """
    from bake.catalog import load_catalog
    from bake.cluster import check_cluster, load_checked_cluster
    from bake.cluster.model import ClusterFileError
    from bake.errors import UsageError
    from bake.upgrade import UpgradeOptions, plan_upgrade, stack_deployer, target_spec
    from bake.upgrade import upgrade as run_upgrade

    spec = load_checked_cluster(cluster_file, catalogs)
    target = target_spec(spec, minor or spec.kubernetes_minor)
    findings = check_cluster(target, load_catalog(catalogs))
    if findings:
        raise ClusterFileError(f"--k8s {target.kubernetes_minor}: " + "; ".join(
            f.split(": ", 2)[-1] for f in findings))
    clients = _clients(_target_region(g, spec), local)
    hooks = {}
    if local:
        from bake.localcluster.service import LocalOptions
        from bake.localcluster.state import read_state
        from bake.localcluster.upgrade import local_roll

        if read_state(g.data_dir, spec.name) is None:
            raise UsageError(f"no local cluster {spec.name} is running: `bake launch --local "
                             f"-f {cluster_file}` first")
        roll = local_roll(LocalOptions(spec, g.data_dir, spec.local.vm_memory_mib,
                                       float(node_timeout)), clients, click.echo)
        hooks = {"after_resize": roll.after_resize, "run_command": roll.run_command,
                 "terminate": roll.terminate}
    plan = plan_upgrade(spec, target, clients)
    confirm = confirmer(yes, f"bake upgrade of {spec.stack_name}")
    deploy = stack_deployer(target, clients, click.echo, float(timeout), 1 if local else 5)
    options = UpgradeOptions(target.kubernetes_minor, node_timeout_s=float(node_timeout),
                             drain_timeout_s=drain_timeout, poll_s=5 if local else 10,
                             workers=not control_planes_only)
    run_upgrade(plan, spec, clients, options, confirm, click.echo, deploy, cluster_file,
                **hooks)
