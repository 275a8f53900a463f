"""``bake status``: what a cluster looks like, read from AWS the way its nodes report it.

The same reads on AWS and against the embedded AWS of a local VM cluster: the stack's status,
the Auto Scaling groups' instances, the node agents' reports and the etcd members as the last
control plane saw them (the cluster's DynamoDB table: ``node#<instance id>``, ``etcd-status``,
``cluster``, ``lease#control-plane``, and ``etcd-snapshot``: the last etcd snapshot), and the
expiry of the join material in SSM Parameter Store (the values stay secret: only their
``expires`` field is shown). With ``--local`` it adds whether each VM runs. Anything stuck is
listed: a failed node (phase and error), an instance with no report after ``STUCK_AFTER_S``, an
expired token, an etcd learner or unhealthy member, no etcd snapshot for three intervals, a
control plane's certificate within 7 days of expiry (``certs#<instance id>``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from bake.cluster import ClusterSpec
from bake.errors import BakeError

STUCK_AFTER_S = 15 * 60  # an instance that has not reported after this long is listed


@dataclass
class ClusterStatus:
    """Everything ``bake status`` prints (``to_json()`` for ``--output json``)."""

    cluster: str
    stack_status: str | None
    nodes: list[dict[str, Any]] = field(default_factory=list)
    etcd: dict[str, Any] | None = None
    cluster_state: dict[str, Any] | None = None
    lease: dict[str, Any] | None = None
    snapshot: dict[str, Any] | None = None
    certificates: dict[str, Any] | None = None
    join_material: dict[str, Any] = field(default_factory=dict)
    stuck: list[str] = field(default_factory=list)
    local: dict[str, Any] | None = None
    addons: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The status as a JSON-ready dict."""
        return {
            "cluster": self.cluster,
            "stack_status": self.stack_status,
            "nodes": self.nodes,
            "etcd": self.etcd,
            "cluster_state": self.cluster_state,
            "lease": self.lease,
            "snapshot": self.snapshot,
            "certificates": self.certificates,
            "join_material": self.join_material,
            "stuck": self.stuck,
            "local": self.local,
            "addons": self.addons,
        }


def _join_material(ssm, spec: ClusterSpec, now: float) -> dict[str, Any]:
    """``{part: {"expires_in_s": s | None, "present": bool}}``; values never leave here."""
    names = {
        "token": f"{spec.shared_prefix}/join/token",
        "ca-cert-hash": f"{spec.shared_prefix}/join/ca-cert-hash",
        "certificate-key": f"{spec.control_plane_prefix}/join/certificate-key",
    }
    from bake.aws import ssm as ssm_api
    from bake.errors import AwsError

    try:
        found = ssm_api.secure_values(ssm, list(names.values()))
    except AwsError as exc:  # no permission to read them is a status too
        return {"error": f"not readable ({exc.code or exc.format_message()})"}
    out: dict[str, Any] = {}
    for part, name in names.items():
        if name not in found:
            out[part] = {"present": False}
            continue
        try:
            expires = json.loads(found[name]).get("expires")
        except ValueError:
            expires = None
        out[part] = {"present": True,
                     "expires_in_s": round(expires - now) if expires else None}
    return out


def cluster_status(spec: ClusterSpec, clients, local_state: dict | None = None) -> ClusterStatus:
    """Read the cluster's status.

    Args:
        spec: the cluster.
        clients: ``bake.aws.session.AwsClients`` (the account, or the embedded AWS).
        local_state: the local cluster's recorded state (``--local``), or ``None``.

    Raises:
        AwsError: a read failed in a way the user can fix (credentials, permissions).
    """
    from bake.aws import autoscaling, dynamodb
    from bake.aws.cloudformation import CloudFormation
    from bake.errors import AwsError

    now = time.time()
    status = ClusterStatus(spec.name, CloudFormation(clients.client("cloudformation"))
                           .stack_status(spec.stack_name))
    if status.stack_status is None:
        status.stuck.append(f"no stack {spec.stack_name}: launch it with `bake launch`")
        return status
    groups = autoscaling.groups(clients.client("autoscaling"),
                                [f"bake-{spec.name}-control-plane", f"bake-{spec.name}-worker"])
    members = {i["InstanceId"]: ("control-plane" if name.endswith("-control-plane") else "worker",
                                 i.get("LifecycleState", ""))
               for name, g in groups.items() for i in g.get("Instances", [])}
    db = clients.client("dynamodb")
    try:
        reports = {r["instance_id"]: r
                   for r in dynamodb.items_with_prefix(db, spec.lock_table, "node#")}
        etcd = dynamodb.item(db, spec.lock_table, "etcd-status")
        status.cluster_state = dynamodb.item(db, spec.lock_table, "cluster")
        status.lease = dynamodb.item(db, spec.lock_table, "lease#control-plane")
        last = dynamodb.item(db, spec.lock_table, "etcd-snapshot")
        cert_items = dynamodb.items_with_prefix(db, spec.lock_table, "certs#")
    except AwsError as exc:
        raise BakeError(f"cannot read the cluster table {spec.lock_table}: "
                        f"{exc.format_message()}") from exc
    local_nodes = {n["instance_id"]: n for n in (local_state or {}).get("nodes", [])}
    for instance_id in sorted(set(members) | set(reports)):
        role, lifecycle = members.get(instance_id, ("", "gone"))
        report = reports.get(instance_id, {})
        phases = json.loads(report.get("phases", "{}")) if report.get("phases") else {}
        boot_to_joined = (report["joined_at"] - report["boot_epoch"]
                          if "joined_at" in report and "boot_epoch" in report else None)
        row = {
            "instance_id": instance_id,
            "role": report.get("role") or role,
            "hostname": report.get("hostname", local_nodes.get(instance_id, {}).get("hostname",
                                                                                   "")),
            "private_ip": report.get("private_ip",
                                     local_nodes.get(instance_id, {}).get("private_ip", "")),
            "lifecycle": lifecycle,
            "kubernetes_version": report.get("kubernetes_version", ""),
            "status": report.get("status", "no report yet"),
            "mode": report.get("mode", ""),
            "boot_to_joined_s": round(boot_to_joined, 1) if boot_to_joined else None,
            "phases": {k: v.get("seconds") for k, v in phases.items()},
            "failed_phase": report.get("failed_phase"),
            "error": report.get("error"),
        }
        if local_state is not None and instance_id in local_nodes:
            from pathlib import Path

            from bake.localcluster import vm

            node = local_nodes[instance_id]
            row["vm"] = "running" if vm.is_our_qemu(node["pid"], vm.VmFiles(Path(node["dir"]))) \
                else "stopped"
            row["console"] = str(Path(node["dir"]) / "console.log")
        if report.get("addons") and lifecycle != "gone":
            applied = json.loads(report["addons"])
            status.addons = {"applied_by": instance_id, "addons": applied}
            for name, rec in sorted(applied.items(), key=lambda kv: kv[1].get("order", 0)):
                if rec.get("status") != "ready":
                    status.stuck.append(f"add-on {name} failed (applied by {instance_id}): "
                                        f"{rec.get('error', '')}")
        if lifecycle == "gone":  # left its group (terminated, replaced): history, not a node
            row["status"] = "gone"
        status.nodes.append(row)
        if row["status"] == "failed":
            status.stuck.append(f"{instance_id} ({row['role']}) failed in phase "
                                f"{row['failed_phase']}: {row['error']}")
        elif not report and lifecycle not in ("gone", "Terminating", "Terminated"):
            booted = (local_nodes or {}).get(instance_id, {}).get("started")
            started = (local_state or {}).get("created")
            since = (f" (VM booted {now - booted:.0f} s ago)" if booted
                     else f" (cluster launched {started})" if started else "")
            status.stuck.append(f"{instance_id} ({row['role']}) has not reported yet{since}")
        if row.get("vm") == "stopped" and lifecycle != "gone":
            status.stuck.append(f"{instance_id}: its VM is not running")
    if etcd:
        listed = json.loads(etcd.get("members", "[]"))
        status.etcd = {"observed_by": etcd.get("observed_by"),
                       "age_s": round(now - etcd.get("observed_at", now)), "members": listed}
        for m in listed:
            if m.get("learner"):
                status.stuck.append(f"etcd member {m['id']} is still a learner")
            elif not m.get("healthy"):
                status.stuck.append(f"etcd member {m['id']} ({m.get('name') or 'never started'})"
                                    " is not healthy")
    if last:
        status.snapshot = {"id": last.get("snapshot_id"), "taken_by": last.get("taken_by"),
                           "age_s": round(now - last.get("taken_at", now))}
    interval_s = spec.etcd_snapshots.interval_minutes * 60
    initialized = (status.cluster_state or {}).get("state") == "initialized"
    if spec.etcd_snapshots.enabled and initialized:
        # three intervals without a snapshot: every control plane's timer missed it
        if status.snapshot and status.snapshot["age_s"] > 3 * interval_s:
            status.stuck.append(f"the last etcd snapshot is {_duration(status.snapshot['age_s'])}"
                                " old: is bake-node-snapshot.timer running on the control "
                                "planes? (`bake logs NODE`)")
    live = {i for i, (_role, state) in members.items()
            if state not in ("Terminating", "Terminated")}
    current = [c for c in cert_items if c.get("instance_id") in live]
    if current:
        first = min(current, key=lambda c: c.get("earliest_expiry", float("inf")))
        status.certificates = {
            "earliest_expiry": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                             time.gmtime(first["earliest_expiry"])),
            "expires_in_s": round(first["earliest_expiry"] - now),
            "certificate": first.get("earliest"), "instance_id": first.get("instance_id"),
            "hostname": first.get("hostname"),
            "renew_before_days": spec.cert_renew_before_days,
        }
        if status.certificates["expires_in_s"] < 7 * 86400:
            status.stuck.append(f"certificate {first.get('earliest')} of {first.get('hostname')}"
                                f" expires {status.certificates['earliest_expiry']}: is "
                                "bake-node-certs.timer running? (`bake-node certs --force`)")
    status.join_material = _join_material(clients.client("ssm"), spec, now)
    token = status.join_material.get("token", {})
    if token.get("present") and (token.get("expires_in_s") or 1) <= 0:
        status.stuck.append("the bootstrap token expired: is a control plane's "
                            "bake-node-rotate timer running?")
    if local_state is not None:
        status.local = {"netns": local_state.get("netns"), "nlb": local_state.get("nlb_ip"),
                        "image": local_images(local_state),
                        "created": local_state.get("created")}
    return status


def local_images(local_state: dict) -> str | None:
    """The local images the running VMs booted, comma-separated: one, or two while `bake
    upgrade --local` rolls; a VM recorded without its image booted the launch image
    (``local_state["image_dir"]``). ``None`` when nothing is recorded."""
    from bake.localcluster.state import running_nodes

    launch = local_state.get("image_dir")
    images = sorted({n.get("image_dir") or launch for n in running_nodes(local_state)} - {None})
    return ", ".join(images) or launch


def _duration(seconds) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if abs(seconds) >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    if abs(seconds) >= 60:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds} s"


def format_status(status: ClusterStatus) -> list[str]:
    """The text ``bake status`` prints."""
    lines = [f"cluster {status.cluster}: stack {status.stack_status or 'absent'}"]
    if status.local:
        lines[0] += (f"; local VMs in namespace {status.local['netns']}, NLB "
                     f"{status.local['nlb']}, image {status.local['image']}")
    cs = status.cluster_state
    if cs and cs.get("state") == "restore-requested":
        lines.append(f"kubeadm: restore of etcd snapshot {cs.get('restore_snapshot')} requested "
                     f"at {cs.get('restore_requested_at')}; the first control plane restores it")
    elif cs:
        lines.append(f"kubeadm: {cs.get('state', '?')} by "
                     f"{cs.get('initialized_by') or cs.get('init_started_by') or '?'}"
                     + (f" (etcd restored from {cs['restored_from']})"
                        if cs.get("restored_from") else ""))
    if status.addons:
        applied = status.addons["addons"]
        lines.append("add-ons: " + ", ".join(
            f"{name} {rec.get('version') or ''} {rec.get('status')}".replace("  ", " ")
            for name, rec in sorted(applied.items(), key=lambda kv: kv[1].get("order", 0)))
            + f" (applied by {status.addons['applied_by']})")
    if status.snapshot:
        lines.append(f"etcd snapshot: {status.snapshot['id']}, "
                     f"{_duration(status.snapshot['age_s'])} ago")
    if status.certificates:
        c = status.certificates
        lines.append(f"certificates: earliest expiry {c['earliest_expiry']} ({c['certificate']} "
                     f"on {c['hostname']}), in {_duration(c['expires_in_s'])}; renewed "
                     f"{c['renew_before_days']} days before")
    if status.nodes:
        lines.append(f"{'INSTANCE':<21} {'NODE':<26} {'ROLE':<14} {'VERSION':<9} {'IP':<15} "
                     f"{'STATUS':<14} {'MODE':<5} {'BOOT->JOINED':>12}  PHASES (s)"
                     + ("  VM" if status.local else ""))
        for n in status.nodes:
            phases = " ".join(f"{k}={v}" for k, v in n["phases"].items())
            joined = f"{n['boot_to_joined_s']} s" if n["boot_to_joined_s"] else "-"
            line = (f"{n['instance_id']:<21} {n.get('hostname') or '-':<26} {n['role']:<14} "
                    f"{n.get('kubernetes_version') or '-':<9} {n['private_ip']:<15} "
                    f"{n['status']:<14} {n['mode']:<5} {joined:>12}  {phases}")
            if status.local:
                line += f"  {n.get('vm', '-')}"
            lines.append(line)
    if status.etcd:
        members = status.etcd["members"]
        started = sum(1 for m in members if m.get("started"))
        healthy = sum(1 for m in members if m.get("healthy"))
        learners = sum(1 for m in members if m.get("learner"))
        lines.append(f"etcd: {len(members)} members ({started} started, {healthy} healthy, "
                     f"{learners} learners) as {status.etcd['observed_by']} saw them "
                     f"{_duration(status.etcd['age_s'])} ago")
        for m in members:
            lines.append(f"  {m['id']:<17} {m.get('name') or '(not started)':<28} "
                         f"{m.get('peer_url', ''):<26} "
                         f"{'healthy' if m.get('healthy') else 'UNHEALTHY'}"
                         f"{' learner' if m.get('learner') else ''}")
    jm = status.join_material
    if "error" in jm:
        lines.append(f"join material: {jm['error']}")
    elif jm:
        parts = []
        for part, info in jm.items():
            if not info.get("present"):
                parts.append(f"{part} not published")
            elif info.get("expires_in_s") is None:
                parts.append(f"{part} (no expiry)")
            else:
                parts.append(f"{part} expires in {_duration(info['expires_in_s'])}")
        lines.append("join material: " + "; ".join(parts))
    if status.stuck:
        lines.append("stuck:")
        lines += [f"  {s}" for s in status.stuck]
    else:
        lines.append("nothing stuck")
    return lines
