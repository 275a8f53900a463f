"""The join drills: ``embedded-aws-outage`` and ``worker-after-token-expiry`` (see
``bake.localcluster.drills`` for what each proves)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from bake.localcluster import vm
from bake.localcluster.drill import OUTAGE_S, Drill
from bake.localcluster.guest import GuestAgent, GuestAgentError
from bake.localcluster.state import LocalClusterError


def drill_embedded_aws_outage(d: Drill) -> None:
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


def _token_history(d: Drill) -> list[dict[str, Any]]:
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


def _kubeadm_tokens(d: Drill) -> dict[str, float] | None:
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


def drill_worker_after_token_expiry(d: Drill) -> None:
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


