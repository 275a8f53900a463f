"""``bake etcd snapshots`` and ``bake etcd restore``: the control planes' etcd snapshots.

Snapshots are taken by the node agent on the control planes (``bake-node snapshot``, a timer;
``bake_node.snapshots``): one object ``<prefix><id>.tar.gz`` per snapshot in the stack's
``SnapshotBucket`` (the ``EtcdSnapshotBucket`` output), SSE-KMS under the cluster key, with the
etcd revision, key count and SHA-256 as object metadata.

A restore replaces every control plane (etcd docs, "Disaster recovery": restore makes a new
cluster; the old members must not rejoin it):

1. the snapshot is checked to exist, and the user confirms (``--yes``);
2. the control-plane group is scaled to 0 and bake waits until its instances are gone;
3. the cluster item of the lock table is set to ``restore-requested`` with the snapshot id,
   and the join material of the old cluster is deleted (its bootstrap token and certificate
   key live in the old etcd);
4. the group is scaled back to ``controlPlane.count``. The first new control plane takes the
   lease, restores the snapshot (its certificates too) and runs ``kubeadm init`` on the
   restored data; the others join it one at a time through the usual path. Workers keep
   running: the CA is the old one, so their kubelets carry on through the same endpoint.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bake.aws import autoscaling, dynamodb, s3, ssm
from bake.aws.cloudformation import CloudFormation
from bake.cluster import ClusterSpec
from bake.cluster.model import SNAPSHOT_PREFIX
from bake.errors import BakeError, UsageError

SNAPSHOT_ID_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[A-Za-z0-9-]{1,64}$")
SUFFIX = ".tar.gz"
# the join material of bake_node.joinmaterial.JoinMaterial (its NAMES and SUBTREE)
JOIN_MATERIAL = ("shared/join/token", "shared/join/ca-cert-hash",
                 "control-plane/join/certificate-key")


@dataclass(frozen=True)
class SnapshotInfo:
    """One stored snapshot.

    Attributes:
        id: ``<UTC %Y%m%dT%H%M%SZ>-<instance id>``; ``taken_at`` the same time as ISO 8601.
        size_bytes: the archive's size; ``revision``, ``total_keys``: etcd's, at the snapshot.
        taken_by: the control plane's instance id; ``kubernetes_version`` its version.
    """

    id: str
    taken_at: str
    size_bytes: int
    revision: int | None
    total_keys: int | None
    taken_by: str
    kubernetes_version: str

    def to_json(self) -> dict[str, Any]:
        """The ``--output json`` form (the attribute names)."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class RestoreOptions:
    """What ``bake etcd restore`` was asked.

    Attributes:
        snapshot_id: the snapshot to restore (``bake etcd snapshots`` lists them).
        timeout_s: seconds to wait for the old control planes to be gone.
        poll_s: seconds between looks at the group.
    """

    snapshot_id: str
    timeout_s: float = 900.0
    poll_s: float = 5.0


def snapshot_bucket(spec: ClusterSpec, clients) -> str:
    """The stack's snapshot bucket (output ``EtcdSnapshotBucket``).

    Raises:
        BakeError: no stack of that cluster in this account and region.
        UsageError: the stack has no snapshot bucket (``etcdSnapshots.enabled: false``).
    """
    cfn = CloudFormation(clients.client("cloudformation"))
    if cfn.stack_status(spec.stack_name) is None:
        raise BakeError(f"no stack {spec.stack_name} in {spec.region}: launch the cluster "
                        f"first (`bake launch -f {spec.source}`)")
    bucket = cfn.outputs(spec.stack_name).get("EtcdSnapshotBucket")
    if not bucket:
        raise UsageError(f"{spec.stack_name} has no etcd snapshot bucket: set "
                         f"etcdSnapshots.enabled: true in {spec.source} and `bake launch` again")
    return bucket


def _id_time(snapshot_id: str) -> str:
    stamp = snapshot_id.split("-", 1)[0]
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.strptime(stamp, "%Y%m%dT%H%M%SZ"))


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def list_snapshots(spec: ClusterSpec, clients) -> list[SnapshotInfo]:
    """The cluster's stored snapshots, newest first (one ListObjectsV2 page walk, then one
    HeadObject per snapshot for its metadata).

    Raises:
        BakeError, UsageError: see ``snapshot_bucket``; AwsError: a refused call.
    """
    bucket = snapshot_bucket(spec, clients)
    client = clients.client("s3")
    found = []
    for obj in s3.list_objects(client, bucket, SNAPSHOT_PREFIX):
        name = obj["Key"][len(SNAPSHOT_PREFIX):]
        sid = name[: -len(SUFFIX)] if name.endswith(SUFFIX) else ""
        if not SNAPSHOT_ID_RE.match(sid):
            continue
        meta = s3.object_metadata(client, bucket, obj["Key"]) or {}
        found.append(SnapshotInfo(
            id=sid,
            taken_at=_id_time(sid),
            size_bytes=int(obj.get("Size", 0)),
            revision=_int(meta.get("revision")),
            total_keys=_int(meta.get("total-keys")),
            taken_by=meta.get("taken-by", ""),
            kubernetes_version=meta.get("kubernetes-version", ""),
        ))
    return sorted(found, key=lambda s: s.id.split("-", 1)[0], reverse=True)


def format_snapshots(snapshots: list[SnapshotInfo]) -> list[str]:
    """Table lines: id, time, size (MiB), revision, keys, Kubernetes version."""
    lines = [f"{'SNAPSHOT':<40} {'TAKEN (UTC)':<21} {'MiB':>7} {'REVISION':>9} {'KEYS':>7} "
             "KUBERNETES"]
    for s in snapshots:
        lines.append(f"{s.id:<40} {s.taken_at:<21} {s.size_bytes / 2**20:>7.1f} "
                     f"{s.revision if s.revision is not None else '-':>9} "
                     f"{s.total_keys if s.total_keys is not None else '-':>7} "
                     f"{s.kubernetes_version or '-'}")
    return lines


def request_restore(spec: ClusterSpec, clients, snapshot_id: str) -> None:
    """Step 3: the cluster item becomes ``restore-requested`` with ``snapshot_id`` (what the
    node agent's init reads: ``bake_node.agent.RESTORE_FIELDS``), and the old cluster's join
    material is deleted. Call it only when no control plane of the old cluster is left."""
    dynamodb.put_strings(clients.client("dynamodb"), spec.lock_table, {
        "pk": "cluster", "state": "restore-requested", "restore_snapshot": snapshot_id,
        "restore_requested_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    ssm.delete_parameters(clients.client("ssm"),
                          [f"{spec.ssm_prefix}/{name}" for name in JOIN_MATERIAL])


def restore(
    spec: ClusterSpec,
    clients,
    options: RestoreOptions,
    confirm: Callable[[str], bool],
    echo: Callable[[str], None],
    after_resize: Callable[[], None] = lambda: None,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Replace every control plane with a new set restored from ``options.snapshot_id``
    (the steps of the module docstring).

    Args:
        confirm: asked once before anything changes; ``False`` changes nothing.
        echo: one line of progress per step.
        after_resize: called after each resize of the group (``--local``: the VMs follow).
        sleep: waits between looks at the group (tests pass a no-op).

    Returns:
        True when the restore was requested; False when the user declined.

    Raises:
        UsageError: the id is malformed or no such snapshot exists (nothing changed).
        BakeError: the old control planes were not gone within ``timeout_s`` (the group is
            left at 0; run the command again); AwsError: a refused call.
    """
    sid = options.snapshot_id
    if not SNAPSHOT_ID_RE.match(sid):
        raise UsageError(f"--snapshot {sid!r} is not a snapshot id (like "
                         f"20261205T103000Z-i-0123456789abcdef0): `bake etcd snapshots -f "
                         f"{spec.source}` lists them")
    bucket = snapshot_bucket(spec, clients)
    if s3.object_metadata(clients.client("s3"), bucket, f"{SNAPSHOT_PREFIX}{sid}{SUFFIX}") is None:
        raise UsageError(f"no snapshot {sid} in s3://{bucket}/{SNAPSHOT_PREFIX}: `bake etcd "
                         f"snapshots -f {spec.source}` lists them")
    group = f"bake-{spec.name}-control-plane"
    count = spec.control_plane.desired
    if not confirm(f"Restore cluster {spec.name} from {sid}? Its {count} control plane(s) are "
                   "terminated and replaced; etcd writes after the snapshot are lost."):
        echo("nothing changed")
        return False
    asg = clients.client("autoscaling")
    autoscaling.resize(asg, group, 0, 0)
    echo(f"{group}: scaled to 0; waiting for the old control planes to terminate")
    after_resize()
    deadline = time.monotonic() + options.timeout_s
    while True:
        left = [i["InstanceId"] for g in autoscaling.groups(asg, [group]).values()
                for i in g.get("Instances", [])]
        if not left:
            break
        if time.monotonic() > deadline:
            raise BakeError(f"{group} still has {', '.join(left)} after {options.timeout_s:.0f} "
                            "s: the restore is not requested yet; run the command again")
        sleep(options.poll_s)
    request_restore(spec, clients, sid)
    echo(f"restore of {sid} requested in {spec.lock_table}; old join material deleted")
    autoscaling.resize(asg, group, count, count)
    echo(f"{group}: scaled to {count}; the first control plane restores the snapshot, the "
         f"others join it (follow with `bake status -f {spec.source}`)")
    after_resize()
    return True
