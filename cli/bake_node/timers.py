"""The control planes' timer jobs, each one ``bake-node`` command run by a systemd timer of the
image (components/bake-node.yaml.j2):

- ``rotate`` (``bake-node-rotate.timer``, every 2 min): refresh the join material;
- ``snapshot`` (``bake-node-snapshot.timer``, every 5 min): an etcd snapshot to S3 when one is
  due (``bake_node.snapshots``);
- ``renew_certificates`` (``bake-node-certs.timer``, daily): record the kubeadm certificates'
  expiry and renew them when due (``bake_node.certs``).

Each runs the agent's config phase, does nothing on a node that is not an initialized control
plane, and does its work under its own lease in the cluster table, one control plane at a time.
"""

from __future__ import annotations

import subprocess
import time

from bake_node import certs, snapshots
from bake_node.agent import (
    CLUSTER_KEY,
    SNAPSHOT_KEY,
    Agent,
    Settings,
    record_certificates,
    record_etcd_status,
)
from bake_node.aws import Clients
from bake_node.aws import dynamodb as ddb
from bake_node.errors import ConfigError, NodeError
from bake_node.etcd import EtcdCtl, EtcdMembers
from bake_node.lease import Lease


def _on_control_plane(settings: Settings, clients: Clients | None, job: str):
    """The config phase of a timer job: ``(agent, context, DynamoDB client)``.

    Raises:
        ConfigError: node.yaml is invalid, or this node is not a control plane.
    """
    agent = Agent(settings, clients)
    ctx = agent.config_phase()
    if not ctx.config.is_control_plane:
        raise ConfigError(f"{job} runs on control planes only")
    return agent, ctx, agent.clients(ctx.config).client("dynamodb")


def _initialized(db, config) -> bool:
    """True once the cluster item of the lock table says ``initialized``."""
    return ddb.get_item(db, config.lock_table, CLUSTER_KEY).get("state", {}).get("S") == \
        "initialized"


def rotate(settings: Settings, clients: Clients | None = None) -> list[str]:
    """The rotation timer's work on a control plane: under the lease, refresh join material.

    Returns the parts rotated; ``[]`` when the cluster is not initialized yet.

    Raises:
        LeaseLost: the lease could not be taken within ``settings.wait_timeout``.
    """
    agent, ctx, db = _on_control_plane(settings, clients, "rotate")
    c = ctx.config
    if not _initialized(db, c):
        return []
    lease = Lease(db, c.lock_table, "control-plane", ttl=settings.lease_ttl)
    held = lease.acquire(
        ctx.identity.instance_id, timeout=settings.wait_timeout, poll=settings.poll
    )
    try:
        with lease.keep_alive(held) as beat:
            done = agent._material(ctx).rotate(agent.kubeadm, agent.token_ttl(c))
            beat.check()
            record_etcd_status(db, ctx, agent._etcd([f"https://{ctx.identity.private_ip}:2379"]))
            return done
    finally:
        lease.release(held)


def etcd_status(settings: Settings, clients: Clients | None = None) -> str:
    """Record the etcd members as this control plane sees them now (item ``etcd-status``,
    what the rotate timer records every 2 min) and return them, one line each: what ``bake
    upgrade`` reads between its steps without waiting for the timer.

    Raises:
        NodeError: this control plane's etcd does not answer.
    """
    agent, ctx, db = _on_control_plane(settings, clients, "etcd-status")
    etcd = agent._etcd([f"https://{ctx.identity.private_ip}:2379"])
    members = etcd.members()
    record_etcd_status(db, ctx, etcd, members)
    return "\n".join(f"{m.name or m.id} {'learner' if m.is_learner else 'voter'} "
                     f"{'healthy' if etcd.healthy(m) else 'unhealthy'}" for m in members)


def remove_etcd_member(settings: Settings, name: str, clients: Clients | None = None) -> str:
    """``bake-node etcd-remove NAME`` on a control plane (``bake upgrade`` before it terminates
    the control plane ``NAME``): under the ``control-plane`` lease, so that no join's member
    add runs beside it, remove the member (``bake_node.upgrade.remove_member``), drop its
    registry record and record etcd again. Returns what was done.

    Raises:
        NodeError: quorum would be lost; LeaseLost: the lease was not free in time.
    """
    from bake_node import upgrade

    agent, ctx, db = _on_control_plane(settings, clients, "etcd-remove")
    c = ctx.config
    lease = Lease(db, c.lock_table, "control-plane", ttl=settings.lease_ttl)
    held = lease.acquire(ctx.identity.instance_id, timeout=settings.wait_timeout,
                         poll=settings.poll)
    try:
        with lease.keep_alive(held):
            etcd = agent._etcd([f"https://{ctx.identity.private_ip}:2379"])
            before = {m.id: m for m in etcd.members()}
            done = upgrade.remove_member(etcd, name, keep=ctx.identity.hostname)
            members = EtcdMembers(db, c.lock_table, agent.clients(c).client("ec2"))
            left = {m.id for m in etcd.members()}
            for member_id, rec in members.registry().items():
                if member_id in before and member_id not in left:
                    members.unregister(rec["instance_id"])
            record_etcd_status(db, ctx, etcd)
            return done
    finally:
        lease.release(held)


def snapshot(settings: Settings, clients: Clients | None = None, force: bool = False) -> str:
    """The snapshot timer's work on a control plane: when a snapshot of the cluster is due,
    take one from this node's etcd member, verify it, upload it (SSE-KMS) and prune by the
    retention policy.

    One control plane at a time: the ``etcd-snapshot`` lease is tried once (a node that finds
    it held leaves the snapshot to its holder), and under it the ``etcd-snapshot`` item says
    when the last one was taken; a snapshot is due ``intervalMinutes`` after it (less 60 s for
    timer jitter), so the control planes' 5-minute timers together take one per interval.

    Args:
        force: take one now, whatever the interval (``bake-node snapshot --force``).

    Returns:
        one line: what was done, or why nothing was.

    Raises:
        ConfigError: not a control plane; SnapshotError, AwsCallError: the snapshot failed.
    """
    agent, ctx, db = _on_control_plane(settings, clients, "snapshot")
    c = ctx.config
    if c.etcd_snapshots is None:
        return "etcd snapshots are off (no etcdSnapshots in node.yaml)"
    if not _initialized(db, c):
        return "the cluster is not initialized yet"
    me = ctx.identity.instance_id
    lease = Lease(db, c.lock_table, "etcd-snapshot", ttl=settings.lease_ttl)
    held = lease.try_acquire(me)
    if held is None:
        return "another control plane is taking a snapshot"
    try:
        with lease.keep_alive(held) as beat:
            now = time.time()
            last = ddb.get_item(db, c.lock_table, SNAPSHOT_KEY)
            last_at = float(last.get("taken_at", {}).get("N", "0"))
            if not force and now - last_at < c.etcd_snapshots.interval_s - 60:
                return f"not due: the last snapshot is {int((now - last_at) // 60)} min old"
            sid = snapshots.new_id(me, now)
            pki = settings.kubernetes_dir / "pki"
            tls = {"cacert": pki / "etcd" / "ca.crt", "cert": pki / "apiserver-etcd-client.crt",
                   "key": pki / "apiserver-etcd-client.key"}
            store = agent._snapshot_store(ctx)
            meta = snapshots.take(
                agent._snapshot_tool(), store, f"https://{ctx.identity.private_ip}:2379", tls,
                pki, settings.state_dir / "snapshot", sid,
                {"kubernetes-version": ctx.kubernetes_version, "taken-by": me},
            )
            beat.check()
            lease.fenced_put(held, {
                **SNAPSHOT_KEY,
                "taken_at": {"N": f"{now:.3f}"},
                "snapshot_id": {"S": sid},
                "taken_by": {"S": me},
                "revision": {"N": meta["revision"]},
                "fence": {"N": str(held.fence)},
            })
            pruned = store.prune(now)
    finally:
        lease.release(held)
    return (f"snapshot {sid} stored (revision {meta['revision']}, {meta['total-keys']} keys)"
            + (f"; {len(pruned)} expired deleted" if pruned else ""))


def renew_certificates(settings: Settings, clients: Clients | None = None,
                       force: bool = False) -> str:
    """The certificate timer's work on a control plane: record the expiries; when the earliest
    is within ``certificateRenewBeforeDays`` (default 90) of now, renew them under the
    ``certificate-renewal`` lease (one control plane at a time, so no two restart their
    static pods together and etcd keeps its quorum): ``kubeadm certs renew all``, the static
    pods restarted, etcd and the API server back, the renewed admin kubeconfig stored again.

    Args:
        force: renew now, due or not (``bake-node certs --force``).

    Returns:
        one line: what was done, or until when the certificates are valid.

    Raises:
        ConfigError: not a control plane; KubeadmError, CertificateError: the renewal failed
            (the manifests are back in place either way).
    """
    agent, ctx, db = _on_control_plane(settings, clients, "certs")
    c = ctx.config
    found = record_certificates(db, ctx, settings.kubernetes_dir)
    if not found:
        return f"no kubeadm certificates under {settings.kubernetes_dir}: not joined yet"
    earliest = min(found.values())
    when = time.strftime("%Y-%m-%d", time.gmtime(earliest))
    if not force and not certs.due(found, time.time(), c.cert_renew_before_days):
        return (f"certificates valid until {when}; renewal {c.cert_renew_before_days} days "
                "before")
    lease = Lease(db, c.lock_table, "certificate-renewal", ttl=settings.lease_ttl)
    held = lease.acquire(ctx.identity.instance_id, timeout=min(settings.wait_timeout, 900),
                         poll=settings.poll)
    try:
        with lease.keep_alive(held) as beat:
            agent.kubeadm.renew_certificates()
            certs.restart_static_pods(settings.kubernetes_dir, settings.static_pod_restart_wait)
            etcd = agent._etcd([f"https://{ctx.identity.private_ip}:2379"])
            deadline = time.monotonic() + 300
            while why := _etcd_unhealthy(etcd, ctx.identity.hostname):
                if time.monotonic() > deadline:
                    raise certs.CertificateError(f"etcd on this node was not healthy 300 s "
                                                 f"after the certificate renewal: {why}")
                time.sleep(settings.poll)
            certs.wait_api_ready(settings.kubernetes_dir, ctx.identity.private_ip,
                                 poll=settings.poll)
            beat.check()
            admin = settings.kubernetes_dir / "admin.conf"
            if admin.is_file():
                agent._material(ctx).publish_admin_kubeconfig(admin.read_text())
    finally:
        lease.release(held)
    after = record_certificates(db, ctx, settings.kubernetes_dir, renewed_at=time.time())
    until = time.strftime("%Y-%m-%d", time.gmtime(min(after.values()))) if after else "?"
    return f"certificates renewed: valid until {until} (were until {when})"


def _etcd_unhealthy(etcd: EtcdCtl, name: str) -> str:
    """Why this node's etcd member (named ``name``) is not healthy; '' when it is."""
    try:
        me = next((m for m in etcd.members() if m.name == name), None)
    except (NodeError, OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)[:200]
    return "not in the member list" if me is None else etcd.unhealthy_because(me)
