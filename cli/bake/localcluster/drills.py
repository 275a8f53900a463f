"""Failure drills on a local VM cluster (``bake drill --local -f cluster.yaml NAME``).

Each drill breaks the running cluster the way AWS would, lets the product's own code recover
it, and checks the cluster came back: etcd has exactly the expected started members, all
healthy, no learner; every instance of the groups has a joined node agent; nothing was lost
from the cluster table or the SSM parameters. It returns a ``DrillResult`` (what it did, what
it checked, the seconds to recover) that ``bake drill`` prints and writes as JSON.

- ``control-plane-replace``: the terminating lifecycle hook of the control-plane group, as
  EventBridge delivers it, handed to the very Lambda handler bake deploys
  (``bake.lambdas.etcd_member_cleanup``); its SSM Run Command runs on a healthy control-plane
  VM (``runcommand.LocalRunCommand``), its ``complete_lifecycle_action`` lets the group
  terminate the instance and launch a replacement (``runcommand.LifecycleGroup``), which boots
  from the image and joins. The member must be gone before the VM is.
- ``control-plane-roll``: every control plane replaced, one at a time (an AMI roll through the
  group's rolling update), with quorum checked every 2 s throughout.
- ``quorum-guard``: one control plane frozen (its VM paused: down, not gone), then a second one
  terminated: the Lambda must refuse the removal (quorum) and still complete the lifecycle
  action within its bounded wait; the frozen one then resumes, the replacement joins and the
  agent's own reconcile removes the gone member.
- ``stale-learner``: an unstarted etcd learner left by a control plane that died between
  ``member add`` and etcd's start (cluster-api #13221) is cleaned up by the next join (a
  control-plane replacement): its pre-join reconcile removes learners that never started.
- ``leader-dies-mid-init`` (on a new cluster it launches): the control plane holding the lease
  is killed inside ``kubeadm init``; another takes over after the lease expires (reset, init),
  the crashed instance is replaced, the cluster forms.
- ``embedded-aws-outage``: a worker is added and, once its agent runs, the embedded AWS is
  paused for 60 s (SIGSTOP of bake's own moto server): the join resumes on botocore's retries,
  with no second init and no secret written twice.
- ``worker-after-token-expiry``: the first bootstrap token published to SSM has expired (the
  drill waits for it when the cluster is younger than the cluster file's
  ``bootstrapToken.ttlMinutes``); kubeadm on a control plane no longer lists it, the published
  token is a rotated one, and a worker added now still joins.

Etcd is read the way the Lambda reads it: its ``etcdctl`` command, run inside a control-plane
VM through the guest agent. Only processes bake started are signalled, each by recorded PID.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bake.errors import UsageError
from bake.localcluster import DRILLS, FRESH_CLUSTER_DRILLS, vm
from bake.localcluster.guest import GuestAgent, GuestAgentError
from bake.localcluster.runcommand import LifecycleGroup, LocalRunCommand
from bake.localcluster.service import (
    EMBEDDED_ACCOUNT_ID,
    LocalClusterError,
    LocalOptions,
    cluster_dir,
    read_state,
    running_nodes,
    sync_local,
)

Echo = Callable[[str], None]
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


class _Drill:
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
        """The EventBridge event of a terminating lifecycle action (EC2 Auto Scaling user
        guide, "Amazon EventBridge events for EC2 Auto Scaling": EC2 Instance-terminate
        Lifecycle Action)."""
        group = f"bake-{self.spec.name}-control-plane"
        return {
            "version": "0", "id": str(uuid.uuid4()),
            "detail-type": "EC2 Instance-terminate Lifecycle Action",
            "source": "aws.autoscaling", "account": EMBEDDED_ACCOUNT_ID,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "region": self.spec.region, "resources": [],
            "detail": {"LifecycleActionToken": str(uuid.uuid4()), "AutoScalingGroupName": group,
                       "LifecycleHookName": HOOK_NAME, "EC2InstanceId": instance_id,
                       "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
                       "Origin": "AutoScalingGroup", "Destination": "EC2"},
        }

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
        context = _Context(LAMBDA_TIMEOUT_SECONDS)
        log = io.StringIO()  # the handler's log line (CloudWatch Logs on AWS)
        with contextlib.redirect_stdout(log):
            out = handler(self.lifecycle_event(instance_id), context,
                          clients=(self.clients.client("ec2"), group, run))
        self.sync()  # the VM of the terminated instance stops; the replacement boots
        self.r.details.setdefault("lambda", []).append(
            {"instance": instance_id, "result": out["result"], "log": log.getvalue().strip(),
             "run_commands": len(run.log), "completed": group.completed})
        return out["result"], seen.get("at", time.time()), seen


class _Context:
    """The Lambda context's one method the handler uses."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.time() + seconds

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function's timeout."""
        return int(max(0.0, self.deadline - time.time()) * 1000)


def _member_of(etcd: dict[str, Any], ip: str) -> bool:
    return any(f"//{ip}:" in m["peer"] for m in etcd.get("members", []))


def _replace(d: _Drill, target: dict) -> float | None:
    """One control-plane replacement; returns the seconds from termination to healthy."""
    d.did(f"lifecycle hook for {target['instance_id']} ({target['private_ip']}) -> "
          "EventBridge event -> the etcd member cleanup Lambda")
    result, terminated_at, seen = d.terminate_control_plane(target["instance_id"])
    d.check(result == "removed", "the Lambda removed the member",
            f"the Lambda answered {result!r}")
    d.check(seen.get("reachable") and not _member_of(seen, target["private_ip"]),
            f"member of {target['private_ip']} gone before its VM stopped "
            f"({len(seen.get('members', []))} members left)",
            f"member of {target['private_ip']} still listed when the lifecycle action completed")
    d.did("instance terminated by the group; a replacement boots from the image")
    problems = d.wait_healthy()
    if d.check(not problems, "replacement joined; etcd back to "
               f"{d.spec.control_plane.desired} started, healthy members",
               "; ".join(problems) or "cluster not healthy"):
        return round(time.time() - terminated_at, 1)
    return None


def drill_control_plane_replace(d: _Drill) -> None:
    """The highest-id control plane replaced through the lifecycle hook path."""
    before = d.snapshot()
    cps = sorted(d.nodes("control-plane"), key=lambda n: n["instance_id"])
    d.r.recovery_s = _replace(d, cps[-1])
    d.r.details["etcd_after"] = d.etcd_summary()
    d.nothing_lost(before)


def drill_control_plane_roll(d: _Drill) -> None:
    """Every original control plane replaced in turn, with quorum sampled throughout."""
    before = d.snapshot()
    originals = sorted(d.nodes("control-plane"), key=lambda n: n["instance_id"])
    low = {"healthy": 99, "quorum": 0}
    samples: list[float] = []
    stop = threading.Event()

    def watch() -> None:  # quorum, sampled back to back (2 s apart) for the whole roll
        while not stop.wait(2.0):
            etcd = d.etcd_summary()
            samples.append(time.time())
            if not etcd.get("reachable"):
                low["unreachable"] = low.get("unreachable", 0) + 1
                continue
            voters = [m for m in etcd["members"] if not m["learner"]]
            healthy = sum(1 for m in voters if m["healthy"])
            if healthy - (len(voters) // 2 + 1) < low["healthy"] - low["quorum"]:
                low.update(healthy=healthy, quorum=len(voters) // 2 + 1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.time()
    try:
        for target in originals:
            if _replace(d, target) is None:
                break
    finally:
        stop.set()
        watcher.join()
    d.r.details["lowest_margin"] = low
    gaps = [b - a for a, b in zip(samples, samples[1:], strict=False)]
    d.r.details["quorum_samples"] = {"count": len(samples),
                                     "max_gap_s": round(max(gaps, default=0.0), 1)}
    d.check(low["healthy"] >= low["quorum"] and not low.get("unreachable"),
            f"quorum held throughout ({len(samples)} samples, at most "
            f"{max(gaps, default=0.0):.0f} s apart; lowest: {low['healthy']} healthy, "
            f"quorum {low['quorum']})",
            f"quorum lost during the roll (lowest: {low})")
    if not d.r.failures:
        d.r.recovery_s = round(time.time() - started, 1)
    d.nothing_lost(before)


def _signal_vm(node: dict, sig: int) -> bool:
    """Send ``sig`` to ``node``'s qemu when its recorded pid is still our VM; True if sent."""
    if not vm.is_our_qemu(node["pid"], vm.VmFiles(Path(node["dir"]))):
        return False
    os.kill(int(node["pid"]), sig)
    return True


def _freeze(node: dict, on: bool) -> None:
    """Pause (SIGSTOP) or resume (SIGCONT) one of our VMs (pid checked first)."""
    _signal_vm(node, signal.SIGSTOP if on else signal.SIGCONT)


def _clock(node: dict) -> str:
    """``node``'s wall clock against this host's, read through its guest agent: "<offset> s
    (<clocksource>)", or why it could not be read. A VM whose clock fell behind while paused
    rejects certificates made after the pause as not yet valid (see ``vm.KERNEL_ARGS``)."""
    script = "date +%s.%N; cat /sys/devices/system/clocksource/clocksource0/current_clocksource"
    try:
        before = time.time()
        out = GuestAgent(vm.VmFiles(Path(node["dir"])).guest_agent, timeout_s=10).run(
            script, 30).stdout.split()
        after = time.time()
        offset = float(out[0]) - (before + after) / 2
    except (GuestAgentError, ValueError, IndexError) as exc:
        return f"unread ({exc})"
    return f"{offset:+.1f} s against this host ({out[1] if len(out) > 1 else '?'})"


def drill_quorum_guard(d: _Drill) -> None:
    """One control plane frozen, a second one's removal refused; the cluster heals after."""
    before = d.snapshot()
    cps = sorted(d.nodes("control-plane"), key=lambda n: n["instance_id"])
    down, target = cps[0], cps[-1]
    d.did(f"control plane {down['instance_id']} ({down['private_ip']}) frozen (VM paused)")
    _freeze(down, True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            etcd = d.etcd_summary(exclude=(down["instance_id"],))
            if any(not m["healthy"] for m in etcd.get("members", [])):
                break
            time.sleep(2)
        from bake.launch import LAMBDA_TIMEOUT_SECONDS

        started = time.time()
        d.did(f"lifecycle hook for a second control plane, {target['instance_id']}")
        result, _, seen = d.terminate_control_plane(target["instance_id"])
        took = time.time() - started
        d.r.details["lambda_seconds"] = round(took, 1)
        d.check(result == "quorum-would-be-lost", "the Lambda refused the removal (quorum)",
                f"the Lambda answered {result!r}")
        d.check(took <= LAMBDA_TIMEOUT_SECONDS, f"the lifecycle action completed after "
                f"{took:.0f} s (within the function's {LAMBDA_TIMEOUT_SECONDS} s timeout)",
                f"the lifecycle action took {took:.0f} s, past the function's timeout")
        want = d.spec.control_plane.desired
        d.check(_member_of(seen, target["private_ip"]) and len(seen.get("members", [])) == want,
                f"nothing half-removed: {want} members listed when the action completed",
                f"members at completion: {seen.get('members')}")
    finally:
        d.did(f"control plane {down['instance_id']} resumed")
        _freeze(down, False)
    resumed = time.time()
    d.did(f"clock of {down['instance_id']} after the pause: {_clock(down)}")
    problems = d.wait_healthy()
    if d.check(not problems, "replacement joined (its agent removed the gone member); etcd "
               f"back to {d.spec.control_plane.desired} healthy members",
               "; ".join(problems) or "cluster not healthy"):
        d.r.recovery_s = round(time.time() - resumed, 1)
    d.nothing_lost(before)


def _unused_ip(d: _Drill, node: dict) -> str:
    """An address of ``node``'s subnet that no instance, router or endpoint uses (from the top,
    below the endpoint and load balancer addresses the plan keeps there)."""
    import ipaddress

    from bake.aws import ec2

    client = d.clients.client("ec2")
    subnet = ec2.instances(client, [node["instance_id"]])[0]["SubnetId"]
    cidr = ec2.subnets(client, [subnet])[0]["CidrBlock"]
    taken = {n["private_ip"] for n in d.nodes()}
    net = ipaddress.ip_network(cidr)
    for offset in range(16, 64):
        ip = str(net[-offset])
        if ip not in taken:
            return ip
    raise LocalClusterError(f"no free address in {net} for the stale learner")


def drill_stale_learner(d: _Drill) -> None:
    """A control plane that died between ``member add --learner`` and its etcd's first start
    leaves an unstarted learner (etcd allows one learner at a time, so it blocks the next join:
    cluster-api #13221). The next control plane's pre-join reconcile must remove it."""
    from bake.lambdas.etcd_member_cleanup import ETCDCTL

    before = d.snapshot()
    cps = sorted(d.nodes("control-plane"), key=lambda n: n["instance_id"])
    ghost = _unused_ip(d, cps[0])
    out = GuestAgent(vm.VmFiles(Path(cps[0]["dir"])).guest_agent, timeout_s=10).run(
        ETCDCTL + f"member add bake-stale-learner --learner --peer-urls=https://{ghost}:2380",
        60)
    d.did(f"learner for {ghost} added through {cps[0]['instance_id']} and never started "
          "(a control plane that died between member add and etcd's start)")
    etcd = d.etcd_summary()
    stale = [m for m in etcd.get("members", []) if m["learner"] and not m["started"]]
    if not d.check(len(stale) == 1, f"the cluster holds an unstarted learner ({stale[0]['id']})"
                   if stale else "", f"no unstarted learner after member add: {out.stderr}"):
        return
    d.r.details["stale_learner"] = stale[0]
    d.r.recovery_s = _replace(d, cps[-1])
    etcd = d.etcd_summary()
    d.r.details["etcd_after"] = etcd
    d.check(not _member_of(etcd, ghost), "the next join removed the stale learner",
            f"the learner for {ghost} is still listed")
    d.nothing_lost(before)


def drill_leader_dies_mid_init(d: _Drill, launch: Callable[[], Any]) -> None:
    """A new cluster is launched; the control plane that takes the lease and starts kubeadm
    init is killed inside init (its VM, SIGKILL: a crashed instance). Another one must take
    over once the lease expires (reset, then its own init), the group replaces the crashed
    instance (the lifecycle hook path) and the cluster forms with every instance joined."""
    from bake.aws import dynamodb

    db = d.clients.client("dynamodb")
    launch()
    d.did("a new cluster launched: its control planes race for the lease")
    deadline = time.monotonic() + d.o.timeout_s
    cluster: dict[str, Any] = {}
    while time.monotonic() < deadline:
        cluster = dynamodb.item(db, d.spec.lock_table, "cluster") or {}
        if cluster.get("state") == "initializing" and cluster.get("init_started_by"):
            break
        time.sleep(0.5)
    leader_id = cluster.get("init_started_by")
    if not d.check(bool(leader_id), f"{leader_id} took the lease and started kubeadm init",
                   "no control plane started kubeadm init"):
        return
    leader = next(n for n in d.nodes() if n["instance_id"] == leader_id)
    if not _signal_vm(leader, signal.SIGKILL):  # at once: init takes about 90 s here
        raise LocalClusterError(f"pid {leader['pid']} is not {leader_id}'s VM; not killing it")
    killed = time.time()
    cluster = dynamodb.item(db, d.spec.lock_table, "cluster") or {}
    if not d.check(cluster.get("state") == "initializing", f"{leader_id} was killed inside "
                   "init (the cluster record still says initializing)",
                   f"init finished before the kill: {cluster.get('state')}"):
        return
    d.did(f"control plane {leader_id} ({leader['private_ip']}) killed inside kubeadm init "
          "(its VM, SIGKILL)")
    while time.monotonic() < deadline:
        cluster = dynamodb.item(db, d.spec.lock_table, "cluster") or {}
        if cluster.get("state") == "initialized":
            break
        time.sleep(d.o.poll_s)
    taker = cluster.get("initialized_by")
    d.r.details["takeover"] = {"leader": leader_id, "initialized_by": taker,
                               "seconds": round(time.time() - killed, 1)}
    if not d.check(bool(taker) and taker != leader_id,
                   f"{taker} took over after the lease expired and initialized "
                   f"({time.time() - killed:.0f} s after the kill)",
                   f"no takeover: the cluster record is {cluster}"):
        return
    taker_node = next(n for n in d.nodes() if n["instance_id"] == taker)
    text = vm.VmFiles(Path(taker_node["dir"])).console.read_text(errors="replace")
    d.check("resetting and taking over" in text, f"{taker}'s agent reset and took over (its "
            "log: an init by ... did not finish (lease expired))",
            f"{taker}'s console does not show the takeover")
    before = d.snapshot()
    d.did(f"the group replaces the crashed {leader_id} (failed EC2 health check): lifecycle "
          "hook -> the etcd member cleanup Lambda")
    result, _, _ = d.terminate_control_plane(leader_id)
    # the crashed leader's one-member etcd never joined the new cluster: the Lambda must remove
    # nothing; when no peer answers in time (a peer still joining) it completes the lifecycle
    # action all the same, which is what lets the group replace the instance
    d.check(result == "already-removed" or result.startswith(("no-peer-answered",
                                                               "no-healthy-peer")),
            f"the Lambda removed nothing and completed the lifecycle action ({result})",
            f"the Lambda answered {result!r}")
    problems = d.wait_healthy()
    if d.check(not problems, "the cluster formed: every instance joined, etcd has "
               f"{d.spec.control_plane.desired} started, healthy members",
               "; ".join(problems) or "cluster not healthy"):
        d.r.recovery_s = round(time.time() - killed, 1)
    d.r.details["etcd_after"] = d.etcd_summary()
    d.nothing_lost(before)


def drill_embedded_aws_outage(d: _Drill) -> None:
    """A worker added and the embedded AWS paused for ``OUTAGE_S`` while its agent runs."""
    from bake.aws import autoscaling
    from bake.sandbox import require_running
    from bake.sandbox.server import is_moto_server

    before = d.snapshot()
    group = f"bake-{d.spec.name}-worker"
    asg = d.clients.client("autoscaling")
    desired = autoscaling.groups(asg, [group])[group]["DesiredCapacity"]
    known = {n["instance_id"] for n in d.nodes()}
    d.did(f"worker group {group}: desired {desired} -> {desired + 1}")
    autoscaling.set_desired_capacity(asg, group, desired + 1)
    d.sync()
    new = [n for n in d.nodes("worker") if n["instance_id"] not in known]
    if not d.check(len(new) == 1, "one worker VM booted for the new instance",
                   f"{len(new)} new worker VMs"):
        return
    console = vm.VmFiles(Path(new[0]["dir"])).console
    deadline = time.monotonic() + d.o.timeout_s
    while time.monotonic() < deadline:
        text = console.read_bytes().decode(errors="replace") if console.exists() else ""
        if "phase config: start" in text:
            break
        time.sleep(1)
    sandbox = require_running(d.o.data_dir)
    if not is_moto_server(sandbox.pid):
        raise LocalClusterError(f"pid {sandbox.pid} is not bake's embedded AWS; not pausing it")
    d.did(f"embedded AWS (pid {sandbox.pid}) paused for {OUTAGE_S:.0f} s while the agent runs")
    outage = time.time()
    os.kill(sandbox.pid, signal.SIGSTOP)
    try:
        time.sleep(OUTAGE_S)
    finally:
        os.kill(sandbox.pid, signal.SIGCONT)
    resumed = time.time()
    d.did("embedded AWS resumed")
    problems = d.wait_healthy()
    if d.check(not problems, "the worker joined after the outage; all nodes joined",
               "; ".join(problems) or "cluster not healthy"):
        d.r.recovery_s = round(time.time() - resumed, 1)
    from bake.aws import dynamodb

    report = dynamodb.item(d.clients.client("dynamodb"), d.spec.lock_table,
                           f"node#{new[0]['instance_id']}") or {}
    started, joined = float(report.get("agent_started", 0)), float(report.get("joined_at", 0))
    d.r.details["outage"] = {"start": round(outage, 3), "end": round(resumed, 3),
                             "worker": new[0]["instance_id"], "agent_started": started,
                             "kubeadm_started": float(report.get("kubeadm_started", 0)),
                             "joined_at": joined}
    d.check(0 < started < resumed < joined,
            f"the worker's agent ran through the outage (started {resumed - started:.0f} s "
            f"before it ended, joined {joined - resumed:.0f} s after)",
            f"the outage did not fall inside the worker's join (agent started {started}, "
            f"joined {joined}, outage {outage:.0f}-{resumed:.0f})")
    from bake.aws import ssm

    twice = []
    for name in before["params"]:  # the ca-cert-hash is the same value at every rotation
        if not name.endswith(("/join/token", "/join/certificate-key")):
            continue
        values = [h.value for h in ssm.history(d.clients.client("ssm"), name, decrypt=True)]
        if len(values) != len(set(values)):
            twice.append(name)
    d.check(not twice, "no secret written twice (parameter histories hold distinct values)",
            f"a secret was written twice: {', '.join(twice)}")
    d.nothing_lost(before)
    d.did(f"worker group back to desired {desired}")
    autoscaling.set_desired_capacity(asg, group, desired)
    d.sync()


def _token_history(d: _Drill) -> list[dict[str, Any]]:
    """The published bootstrap tokens, oldest first: ``[{"id": token id (the public half),
    "version": SSM parameter version, "issued", "expires": epoch seconds}]``. The secret half
    never leaves this function (it is not printed, logged or written to the result)."""
    from bake.aws import ssm

    name = f"{d.spec.shared_prefix}/join/token"
    rows = []
    for h in ssm.history(d.clients.client("ssm"), name, decrypt=True):
        data = json.loads(h.value)
        rows.append({"id": data["value"].split(".", 1)[0], "version": h.version,
                     "issued": data.get("issued"), "expires": data.get("expires")})
    return rows


def _kubeadm_tokens(d: _Drill) -> dict[str, float] | None:
    """Token id -> expiry (epoch seconds) as ``kubeadm token list -o json`` prints them inside
    a control-plane VM (one JSON object per token), or None when no control plane answered
    with a readable list (the drill then fails its check instead of raising)."""
    import calendar

    for node in d.nodes("control-plane"):
        try:
            out = GuestAgent(vm.VmFiles(Path(node["dir"])).guest_agent, timeout_s=10).run(
                "kubeadm token list -o json", 90)
        except GuestAgentError:
            continue
        if out.exit_code != 0:
            continue
        tokens, decoder, text = {}, json.JSONDecoder(), out.stdout.strip()
        try:
            while text:
                doc, end = decoder.raw_decode(text)
                text = text[end:].lstrip()
                expires = calendar.timegm(time.strptime(doc["expires"], "%Y-%m-%dT%H:%M:%SZ"))
                tokens[doc["token"].split(".", 1)[0]] = float(expires)
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # not kubeadm's JSON (a half-written answer): ask the next control plane
        return tokens
    return None


def drill_worker_after_token_expiry(d: _Drill) -> None:
    """The first published bootstrap token expires (waited for if need be, at most its TTL);
    the cluster no longer has it, the rotated one is published, and a new worker joins."""
    from bake.aws import autoscaling, dynamodb

    before = d.snapshot()
    history = _token_history(d)
    if not d.check(bool(history), f"{len(history)} bootstrap token(s) published so far",
                   "no bootstrap token was ever published"):
        return
    first, ttl = history[0], d.spec.bootstrap_token_ttl_minutes * 60
    d.r.details["tokens"] = {"ttl_s": ttl, "published": history}
    wait = first["expires"] + 5 - time.time()
    if wait > 0:
        d.did(f"waiting {wait:.0f} s for the first token ({first['id']}, TTL {ttl} s) to "
              "expire")
        time.sleep(wait)
    else:
        d.did(f"the first token ({first['id']}) expired {-wait:.0f} s ago")
    listed = _kubeadm_tokens(d)
    if not d.check(listed is not None, "kubeadm token list answered on a control plane",
                   "no control plane answered kubeadm token list"):
        return
    now = time.time()
    live = {t for t, exp in listed.items() if exp > now}
    d.check(first["id"] not in live, f"the expired token {first['id']} is no longer valid in "
            "the cluster (kubeadm token list)",
            f"the expired token {first['id']} is still listed as valid")
    current = _token_history(d)[-1]
    d.check(current["id"] != first["id"] and current["id"] in live
            and current["expires"] - now > 0,
            f"the published token is a rotated one ({current['id']}, version "
            f"{current['version']}, valid {current['expires'] - now:.0f} s more)",
            f"the published token ({current['id']}) is not a live rotated token")
    group = f"bake-{d.spec.name}-worker"
    asg = d.clients.client("autoscaling")
    desired = autoscaling.groups(asg, [group])[group]["DesiredCapacity"]
    known = {n["instance_id"] for n in d.nodes()}
    d.did(f"worker group {group}: desired {desired} -> {desired + 1}")
    added = time.time()
    autoscaling.set_desired_capacity(asg, group, desired + 1)
    d.sync()
    new = [n for n in d.nodes("worker") if n["instance_id"] not in known]
    if d.check(len(new) == 1, "one worker VM booted for the new instance",
               f"{len(new)} new worker VMs"):
        problems = d.wait_healthy()
        if d.check(not problems, "the worker added after the expiry joined; all nodes joined",
                   "; ".join(problems) or "cluster not healthy"):
            d.r.recovery_s = round(time.time() - added, 1)
        report = dynamodb.item(d.clients.client("dynamodb"), d.spec.lock_table,
                               f"node#{new[0]['instance_id']}") or {}
        joined = float(report.get("joined_at", 0))
        d.r.details["worker"] = {"instance_id": new[0]["instance_id"], "joined_at": joined,
                                 "first_token_expired": first["expires"]}
        d.check(joined > first["expires"],
                f"it joined {joined - first['expires']:.0f} s after the first token expired",
                "the worker's join does not postdate the first token's expiry")
    d.nothing_lost(before)
    d.did(f"worker group back to desired {desired}")
    autoscaling.set_desired_capacity(asg, group, desired)
    d.sync()


_RUNNERS = {  # the drills on a running cluster, in the order of DRILLS
    "control-plane-replace": drill_control_plane_replace,
    "control-plane-roll": drill_control_plane_roll,
    "quorum-guard": drill_quorum_guard,
    "stale-learner": drill_stale_learner,
    "embedded-aws-outage": drill_embedded_aws_outage,
    "worker-after-token-expiry": drill_worker_after_token_expiry,
}


def run_drill(options: LocalOptions, clients, echo: Echo, name: str,
              launch: Callable[[], Any] | None = None) -> DrillResult:
    """Run drill ``name`` against the running local cluster and write its result.

    Args:
        options: the cluster (``LocalOptions``; ``timeout_s`` bounds each wait for joins).
        clients: the embedded AWS's ``AwsClients``.
        echo: one line of progress.
        name: one of ``DRILLS``.
        launch: for ``leader-dies-mid-init`` (``FRESH_CLUSTER_DRILLS``), which needs a cluster
            that is still forming: deploys the stack and boots the VMs without waiting
            (``service.launch_local(wait=False)``); no cluster may be running.

    Returns:
        the ``DrillResult`` (also written to ``<cluster dir>/drills/<name>-<time>.json``).

    Raises:
        UsageError: unknown drill, or no local cluster, or the cluster is not healthy before
            the drill (it would prove nothing).
    """
    if name not in DRILLS:
        raise UsageError(f"unknown drill {name!r}; drills: {', '.join(DRILLS)}")
    result = DrillResult(name)
    d = _Drill(options, clients, echo, result)
    fresh = name in FRESH_CLUSTER_DRILLS
    if fresh:
        if read_state(options.data_dir, options.spec.name) is not None or launch is None:
            raise UsageError(f"drill {name} forms a new cluster: `bake destroy --local -f "
                             f"{options.spec.source}` first")
    else:
        d.state()
        problems = d.healthy()
        if problems:
            raise UsageError(f"the cluster is not healthy before the drill "
                             f"({'; '.join(problems)}): `bake status --local` shows why")
        d.check(True, "healthy before the drill", "")
    started = time.monotonic()
    try:
        if fresh:
            drill_leader_dies_mid_init(d, launch)
        else:
            _RUNNERS[name](d)
    finally:
        result.passed = not result.failures and result.recovery_s is not None
        result.details["drill_seconds"] = round(time.monotonic() - started, 1)
        out = d.base / "drills" / f"{name}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result.to_json(), indent=2) + "\n")
        result.details["result_file"] = str(out)
    return result
