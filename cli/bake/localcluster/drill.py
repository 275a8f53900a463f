"""The harness of the failure drills (``bake.localcluster.drills``): ``DrillResult`` (what a
drill did and checked, the seconds to recover) and ``Drill`` (one run's shared state and checks:
the cluster's nodes, etcd read the way the Lambda reads it, health, what must not be lost, and
the control-plane group's terminating lifecycle event handed to the very Lambda handler).

Etcd is read with the Lambda's own ``etcdctl`` command, inside a control-plane VM through the
guest agent. Only processes bake started are signalled, each by recorded PID.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bake.errors import UsageError
from bake.localcluster import vm
from bake.localcluster.guest import GuestAgent, GuestAgentError
from bake.localcluster.runcommand import LifecycleGroup, LocalRunCommand
from bake.localcluster.service import EMBEDDED_ACCOUNT_ID, LocalOptions, sync_local
from bake.localcluster.state import cluster_dir, read_state, running_nodes

Echo = Callable[[str], None]  # one line of progress
OUTAGE_S = 60.0
HOOK_NAME = "etcd-member-cleanup"  # cloudformation/cluster.yaml.j2 LifecycleHookSpecificationList


@dataclass
class DrillResult:
    """One drill run.

    Attributes:
        name: the drill.
        passed: the cluster came back healthy and every check held.
        recovery_s: seconds from the fault to a healthy cluster (None when it did not recover).
        did: what the drill did, in order (sentences).
        checked: the checks that held.
        failures: the checks that did not.
        details: figures of the run (members, timings, Lambda results).
    """

    name: str
    passed: bool = False
    recovery_s: float | None = None
    did: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    started: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                               time.gmtime()))

    def to_json(self) -> dict[str, Any]:
        """The result as JSON-ready data (the file ``bake drill`` writes)."""
        return asdict(self)


class Drill:
    """Shared state and checks of one drill run."""

    def __init__(self, options: LocalOptions, clients, echo: Echo, result: DrillResult):
        self.o, self.clients, self.echo, self.r = options, clients, echo, result
        self.spec = options.spec
        self.base = cluster_dir(options.data_dir, self.spec.name)

    # -------------------------------------------------------------- state and etcd

    def state(self) -> dict:
        """The cluster's recorded local state (``local.json``). Raises UsageError when none."""
        state = read_state(self.o.data_dir, self.spec.name)
        if state is None:
            raise UsageError(f"no local cluster {self.spec.name} is running: `bake launch "
                             f"--local -f {self.spec.source}` first")
        return state

    def nodes(self, role: str | None = None) -> list[dict]:
        """The recorded nodes not terminated, of ``role`` (``control-plane``/``worker``) or all."""
        return [n for n in running_nodes(self.state()) if role in (None, n["role"])]

    def sockets(self) -> dict[str, Path]:
        """Instance id -> its VM's guest agent socket (what ``LocalRunCommand`` reaches)."""
        return {n["instance_id"]: vm.VmFiles(Path(n["dir"])).guest_agent for n in self.nodes()}

    def did(self, text: str) -> None:
        """Record and print one thing the drill did."""
        self.r.did.append(text)
        self.echo(f"drill {self.r.name}: {text}")

    def etcd(self, exclude: tuple[str, ...] = ()) -> tuple[list[dict], set[str]] | None:
        """(members, healthy client URLs) read inside a control-plane VM, or None.

        Control planes not in ``exclude`` are asked in turn; the first that answers with both
        etcdctl documents (``member list`` and ``endpoint health --cluster``) is used. None
        when none did.
        """
        from bake.lambdas.etcd_member_cleanup import ETCD_STATUS

        for node in self.nodes("control-plane"):
            if node["instance_id"] in exclude:
                continue
            try:
                out = GuestAgent(vm.VmFiles(Path(node["dir"])).guest_agent,
                                 timeout_s=10).run(ETCD_STATUS, 90).stdout
            except GuestAgentError:
                continue
            docs = [json.loads(line) for line in out.splitlines() if line.strip()[:1] in "[{"]
            if len(docs) < 2:
                # A member list without a health document is no answer: etcdctl could not
                # reach the cluster for ``endpoint health`` (this node's own member was just
                # removed and its etcd is stopping, say), not a report of 0 healthy members.
                continue
            members = docs[0].get("members", [])
            healthy = {h["endpoint"] for h in docs[1] if h.get("health")}
            return members, healthy
        return None

    def etcd_summary(self, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
        """``{"reachable": bool, "members": [{id (hex), name, peer, learner, started,
        healthy}]}`` as a control plane not in ``exclude`` sees etcd."""
        seen = self.etcd(exclude)
        if seen is None:
            return {"reachable": False}
        members, healthy = seen
        rows = [{"id": f"{m['ID']:x}", "name": m.get("name", ""),
                 "peer": (m.get("peerURLs") or [""])[0], "learner": bool(m.get("isLearner")),
                 "started": bool(m.get("name")),
                 "healthy": any(u in healthy for u in m.get("clientURLs", []))} for m in members]
        return {"reachable": True, "members": rows}

    # -------------------------------------------------------------- the checks

    def healthy(self, control_planes: int | None = None, exclude: tuple[str, ...] = ()
                ) -> list[str]:
        """What is wrong with the cluster now ([] when healthy)."""
        from bake.aws import autoscaling, dynamodb

        want = control_planes or self.spec.control_plane.desired
        problems = []
        etcd = self.etcd_summary(exclude)
        if not etcd["reachable"]:
            return ["no control plane answered etcdctl"]
        members = etcd["members"]
        started = [m for m in members if m["started"] and not m["learner"]]
        if len(members) != want or len(started) != want:
            problems.append(f"etcd has {len(members)} members ({len(started)} started voters), "
                            f"want {want}")
        sick = [m["name"] or m["id"] for m in members if not m["healthy"]]
        if sick:
            problems.append(f"etcd members not healthy: {', '.join(sick)}")
        groups = autoscaling.groups(self.clients.client("autoscaling"),
                                    [f"bake-{self.spec.name}-control-plane",
                                     f"bake-{self.spec.name}-worker"])
        ids = {i["InstanceId"] for g in groups.values() for i in g.get("Instances", [])}
        reports = {r["instance_id"]: r for r in dynamodb.items_with_prefix(
            self.clients.client("dynamodb"), self.spec.lock_table, "node#")}
        late = sorted(i for i in ids if reports.get(i, {}).get("status") != "joined")
        if late:
            problems.append("not joined: " + "; ".join(
                f"{i} ({self.why_not_joined(i, reports.get(i))})" for i in late))
        return problems

    def why_not_joined(self, instance_id: str, report: dict | None) -> str:
        """One clause on a node that has not joined, for the drill's failure line: its agent's
        reported failure (``node#<id>``: ``failed_phase``, ``error``), else whether its VM runs
        and the last agent line on its console (the journal is forwarded there)."""
        if report and report.get("status") == "failed":
            age = time.time() - float(report.get("updated", time.time()))
            return (f"agent failed in {report.get('failed_phase', '?')}, reported {age:.0f} s "
                    f"ago: {str(report.get('error', ''))[:700]}")
        node = next((n for n in self.nodes() if n["instance_id"] == instance_id), None)
        if node is None:
            return "no VM recorded for it"
        files = vm.VmFiles(Path(node["dir"]))
        if not node.get("pid") or not vm.is_our_qemu(int(node["pid"]), files):
            return "its VM is not running"
        try:
            lines = files.console.read_text(errors="replace").splitlines()
        except OSError:
            lines = []
        agent = [ln.split("]: ", 1)[-1] for ln in lines if "bake-node[" in ln
                 or "bake_node" in ln]
        return f"VM running; last agent line: {agent[-1][:300]}" if agent else \
            "VM running; the agent has logged nothing yet"

    def wait_healthy(self, **kwargs: Any) -> list[str]:
        """Poll ``healthy`` until it holds or ``options.timeout_s`` passes; the last problems."""
        deadline = time.monotonic() + self.o.timeout_s
        while True:
            problems = self.healthy(**kwargs)
            if not problems or time.monotonic() > deadline:
                return problems
            time.sleep(self.o.poll_s)

    def snapshot(self) -> dict[str, Any]:
        """The cluster table's keys and the SSM parameters (names, versions) under the
        cluster's prefix."""
        from bake.aws import dynamodb, ssm

        db = self.clients.client("dynamodb")
        keys = sorted(i["pk"] for i in dynamodb.items_with_prefix(db, self.spec.lock_table, ""))
        params = ssm.describe_prefix(self.clients.client("ssm"), self.spec.ssm_prefix)
        cluster = dynamodb.item(db, self.spec.lock_table, "cluster") or {}
        return {"keys": keys, "params": params,
                "initialized_by": cluster.get("initialized_by"), "state": cluster.get("state")}

    def nothing_lost(self, before: dict[str, Any]) -> None:
        """No cluster-table item or SSM parameter of ``before`` is gone, except the etcd
        registry items (``etcd#<instance id>``) of instances that left the groups: the agent's
        reconcile deletes those with the member."""
        from bake.aws import autoscaling

        after = self.snapshot()
        groups = autoscaling.groups(self.clients.client("autoscaling"),
                                    [f"bake-{self.spec.name}-control-plane",
                                     f"bake-{self.spec.name}-worker"])
        current = {i["InstanceId"] for g in groups.values() for i in g.get("Instances", [])}
        lost_keys = sorted(k for k in set(before["keys"]) - set(after["keys"])
                           if not (k.startswith("etcd#") and k[5:] not in current))
        lost_params = sorted(set(before["params"]) - set(after["params"]))
        self.check(not lost_keys, f"no cluster-table item lost ({len(after['keys'])} items)",
                   f"cluster-table items lost: {', '.join(lost_keys)}")
        self.check(not lost_params, f"no SSM parameter lost ({len(after['params'])} under "
                   f"{self.spec.ssm_prefix})", f"SSM parameters lost: {', '.join(lost_params)}")
        plain = sorted(n for n, p in after["params"].items()
                       if "/join/" in n and p["type"] != "SecureString")
        self.check(not plain, "join material only as SecureString",
                   f"join material not SecureString: {', '.join(plain)}")
        self.check(after["initialized_by"] == before["initialized_by"],
                   f"kubeadm init ran once (by {before['initialized_by']})",
                   f"the cluster record changed hands: {before['initialized_by']} -> "
                   f"{after['initialized_by']}")

    def check(self, ok: bool, passed: str, failed: str) -> bool:
        """Record and print one check (``passed`` or ``failed`` text); returns ``ok``."""
        (self.r.checked if ok else self.r.failures).append(passed if ok else failed)
        self.echo(f"drill {self.r.name}: {'ok  ' if ok else 'FAIL'} {passed if ok else failed}")
        return ok

    # -------------------------------------------------------------- faults

    def sync(self) -> None:
        """Make the VMs follow the Auto Scaling groups (``service.sync_local``)."""
        sync_local(self.o, self.clients, self.echo)

    def lifecycle_event(self, instance_id: str) -> dict[str, Any]:
        """The EventBridge event of ``instance_id``'s terminating lifecycle action
        (``lifecycle_event``)."""
        return lifecycle_event(self.spec.name, self.spec.region, instance_id)

    def terminate_control_plane(self, instance_id: str) -> tuple[str, float, dict[str, Any]]:
        """Run the lifecycle hook path for ``instance_id``: the handler gets the deployed
        function's timeout (``bake.launch.LAMBDA_TIMEOUT_SECONDS``) as its context and waits
        its own default ``WAIT_SECONDS`` (the drill sets no environment). Returns (Lambda
        result, epoch of the termination, etcd as seen at completion, before the VM stopped)."""
        from bake.lambdas.etcd_member_cleanup import handler
        from bake.launch import LAMBDA_TIMEOUT_SECONDS

        seen: dict[str, Any] = {}

        def on_complete(done_id: str, _result: str) -> None:
            seen.update(self.etcd_summary(exclude=(done_id,)))
            seen["at"] = time.time()

        group = LifecycleGroup(self.clients.client("autoscaling"), on_complete)
        run = LocalRunCommand(self.sockets())
        context = LambdaContext(LAMBDA_TIMEOUT_SECONDS)
        log = io.StringIO()  # the handler's log line (CloudWatch Logs on AWS)
        with contextlib.redirect_stdout(log):
            out = handler(self.lifecycle_event(instance_id), context,
                          clients=(self.clients.client("ec2"), group, run))
        self.sync()  # the VM of the terminated instance stops; the replacement boots
        self.r.details.setdefault("lambda", []).append(
            {"instance": instance_id, "result": out["result"], "log": log.getvalue().strip(),
             "run_commands": len(run.log), "completed": group.completed})
        return out["result"], seen.get("at", time.time()), seen


def lifecycle_event(cluster: str, region: str, instance_id: str) -> dict[str, Any]:
    """The EventBridge event of a control plane's terminating lifecycle action (EC2 Auto
    Scaling user guide, "Amazon EventBridge events for EC2 Auto Scaling": EC2
    Instance-terminate Lifecycle Action)."""
    return {
        "version": "0", "id": str(uuid.uuid4()),
        "detail-type": "EC2 Instance-terminate Lifecycle Action",
        "source": "aws.autoscaling", "account": EMBEDDED_ACCOUNT_ID,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": region, "resources": [],
        "detail": {"LifecycleActionToken": str(uuid.uuid4()),
                   "AutoScalingGroupName": f"bake-{cluster}-control-plane",
                   "LifecycleHookName": HOOK_NAME, "EC2InstanceId": instance_id,
                   "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
                   "Origin": "AutoScalingGroup", "Destination": "EC2"},
    }


class LambdaContext:
    """The Lambda context's one method the handler uses."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.time() + seconds

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function's timeout."""
        return int(max(0.0, self.deadline - time.time()) * 1000)

