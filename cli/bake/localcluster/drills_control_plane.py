"""The control-plane drills: ``control-plane-replace``, ``control-plane-roll``,
``quorum-guard``, ``stale-learner`` and ``leader-dies-mid-init`` (see ``bake.localcluster.drills``
for what each proves)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bake.errors import BakeError
from bake.localcluster import vm
from bake.localcluster.drill import Drill
from bake.localcluster.guest import GuestAgent, GuestAgentError
from bake.localcluster.state import LocalClusterError


def _member_of(etcd: dict[str, Any], ip: str) -> bool:
    return any(f"//{ip}:" in m["peer"] for m in etcd.get("members", []))


def _replace(d: Drill, target: dict) -> float | None:
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


def drill_control_plane_replace(d: Drill) -> None:
    """The highest-id control plane replaced through the lifecycle hook path."""
    before = d.snapshot()
    cps = sorted(d.nodes("control-plane"), key=lambda n: n["instance_id"])
    d.r.recovery_s = _replace(d, cps[-1])
    d.r.details["etcd_after"] = d.etcd_summary()
    d.nothing_lost(before)


@contextlib.contextmanager
def quorum_watch(d: Drill) -> Iterator[None]:
    """Sample etcd's quorum back to back (2 s apart) while the block runs, then check it held
    throughout (the lowest margin and the samples go to the result's details)."""
    low = {"healthy": 99, "quorum": 0}
    samples: list[float] = []
    stop = threading.Event()

    def watch() -> None:
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
    try:
        yield
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


def drill_control_plane_roll(d: Drill) -> None:
    """Every original control plane replaced in turn, with quorum sampled throughout."""
    before = d.snapshot()
    originals = sorted(d.nodes("control-plane"), key=lambda n: n["instance_id"])
    started = time.time()
    with quorum_watch(d):
        for target in originals:
            if _replace(d, target) is None:
                break
    if not d.r.failures:
        d.r.recovery_s = round(time.time() - started, 1)
    d.nothing_lost(before)


def drill_control_plane_upgrade(d: Drill) -> None:
    """``bake upgrade`` of the control planes to the next Kubernetes minor, with quorum
    sampled throughout: each is replaced by a VM of the next minor's local image (one surge
    instance, gated on etcd), then kube-proxy follows; the workers are left for later."""
    from bake.localcluster.upgrade import local_roll
    from bake.upgrade import (
        UpgradeOptions,
        minor_of,
        plan_upgrade,
        stack_deployer,
        target_spec,
        upgrade,
    )

    major, minor = minor_of(d.spec.kubernetes_minor)
    target = target_spec(d.spec, f"{major}.{minor + 1}")
    plan = plan_upgrade(d.spec, target, d.clients)  # UsageError: no such image baked
    before = d.snapshot()
    old_workers = {n["instance_id"] for n in d.nodes("worker")}
    roll = local_roll(d.o, d.clients, d.echo)
    started = time.time()
    with quorum_watch(d):
        try:
            upgrade(plan, d.spec, d.clients,
                    UpgradeOptions(target.kubernetes_minor, node_timeout_s=d.o.timeout_s,
                                   poll_s=d.o.poll_s, workers=False),
                    lambda question: True, d.did,
                    stack_deployer(target, d.clients, d.echo, poll_s=1), Path(d.spec.source),
                    roll.after_resize, run_command=roll.run_command, terminate=roll.terminate)
        except BakeError as exc:  # the roll stopped: a failed check, not a crash of the drill
            d.check(False, "", f"the upgrade stopped: {exc}")
            return
    from bake.aws import dynamodb

    reports = {r["instance_id"]: r for r in dynamodb.items_with_prefix(
        d.clients.client("dynamodb"), d.spec.lock_table, "node#")}
    cps = d.nodes("control-plane")
    versions = sorted({reports.get(n["instance_id"], {}).get("kubernetes_version", "?")
                       for n in cps})
    d.check(len(cps) == d.spec.control_plane.desired and all(
        minor_of(v) == minor_of(target.kubernetes_minor) for v in versions if v != "?")
        and "?" not in versions and not {n.instance_id for n in plan.control_planes}
        & {n["instance_id"] for n in cps},
        f"every control plane replaced, now at {', '.join(versions)}",
        f"control planes not all replaced at {target.kubernetes_minor}: {versions}")
    d.check({n["instance_id"] for n in d.nodes("worker")} == old_workers,
            "the workers were left running (control planes first)",
            "workers changed during the control-plane upgrade")
    if d.spec.kube_proxy_replacement:  # kubeadm installed no kube-proxy: nothing to follow
        d.check(True, "no kube-proxy to follow (Cilium's kube-proxy replacement)", "")
    else:
        proxy = _kube_proxy_image(d, cps)
        d.check(proxy.endswith(":v" + (versions[-1] if versions else "?")),
                f"kube-proxy follows the control planes ({proxy})",
                f"kube-proxy is {proxy or 'unknown'}")
    problems = d.wait_healthy()
    d.check(not problems, f"etcd has {d.spec.control_plane.desired} started, healthy members",
            "; ".join(problems))
    if not d.r.failures:
        d.r.recovery_s = round(time.time() - started, 1)
    d.nothing_lost(before)


def _kube_proxy_image(d: Drill, cps: list[dict]) -> str:
    """The kube-proxy DaemonSet's image, read with kubectl inside a control-plane VM."""
    import json

    for node in cps:
        try:
            out = GuestAgent(vm.VmFiles(Path(node["dir"])).guest_agent).run(
                "kubectl --kubeconfig /etc/kubernetes/admin.conf get daemonset kube-proxy "
                "-n kube-system -o json", 120)
            if out.exit_code == 0:
                return json.loads(out.stdout)["spec"]["template"]["spec"]["containers"][0][
                    "image"]
        except (GuestAgentError, ValueError, KeyError):
            continue
    return ""


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


def drill_quorum_guard(d: Drill) -> None:
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


def _unused_ip(d: Drill, node: dict) -> str:
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


def drill_stale_learner(d: Drill) -> None:
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


def drill_leader_dies_mid_init(d: Drill, launch: Callable[[], Any]) -> None:
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


