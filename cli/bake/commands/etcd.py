"""``bake etcd snapshots`` / ``bake etcd restore``: the control planes' etcd snapshots.

Parsing only; the work is in ``bake.etcd``.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from bake.commands.cluster import _clients, _target_region, file_option
from bake.commands.common import confirmer, output_option


@click.group()
def etcd() -> None:
    """The cluster's etcd snapshots in S3: list them, restore one."""


@etcd.command()
@file_option
@click.option("--local", is_flag=True, help="The local VM cluster (embedded AWS).")
@output_option
@click.pass_obj
def snapshots(g, cluster_file: Path, local: bool, output: str) -> None:
    """List the etcd snapshots the control planes stored, newest first.

    \b
    Example:
      bake etcd snapshots -f cluster.yaml
    """
    from bake.cluster import load_cluster
    from bake.etcd import format_snapshots, list_snapshots

    spec = load_cluster(cluster_file)
    found = list_snapshots(spec, _clients(_target_region(g, spec), local))
    if output == "json":
        click.echo(json.dumps([s.to_json() for s in found], indent=2))
        return
    if not found:
        click.echo(f"no etcd snapshots of {spec.name} yet (the control planes take one every "
                   f"{spec.etcd_snapshots.interval_minutes} min once the cluster is up)")
        return
    for line in format_snapshots(found):
        click.echo(line)


@etcd.command()
@file_option
@click.option("--snapshot", "snapshot_id", required=True, metavar="ID",
              help="The snapshot to restore (from `bake etcd snapshots`).")
@click.option("--local", is_flag=True, help="The local VM cluster (its VMs follow the group).")
@click.option("--timeout", default=900, show_default=True, type=int,
              help="Seconds to wait for the old control planes to terminate.")
@click.option("--yes", is_flag=True, help="Replace the control planes without asking.")
@click.pass_obj
def restore(g, cluster_file: Path, snapshot_id: str, local: bool, timeout: int,
            yes: bool) -> None:
    """Replace every control plane with a new set restored from an etcd snapshot.

    The control-plane group goes to 0, the restore is recorded in the cluster's table, and the
    group comes back: the first new control plane restores the snapshot and the others join
    it. Workers keep running. Writes to etcd after the snapshot are lost.

    \b
    Example:
      bake etcd restore -f cluster.yaml --snapshot 20261205T103000Z-i-0123456789abcdef0
    """
    from bake.cluster import load_cluster
    from bake.etcd import RestoreOptions
    from bake.etcd import restore as restore_cluster

    spec = load_cluster(cluster_file)
    confirm = confirmer(yes, f"restore {spec.stack_name}")
    clients = _clients(_target_region(g, spec), local)
    after_resize = lambda: None  # noqa: E731
    if local:
        from bake.localcluster.service import LocalOptions, sync_local

        options = LocalOptions(spec, g.data_dir, spec.local.vm_memory_mib)

        def after_resize() -> None:
            sync_local(options, clients, click.echo)

    restore_cluster(spec, clients, RestoreOptions(snapshot_id, float(timeout)), confirm,
                    click.echo, after_resize)
