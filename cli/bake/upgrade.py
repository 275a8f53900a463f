"""``bake upgrade``: a cluster to the next Kubernetes minor (or to a newer image of the same
one) by replacing every node, control planes first, one at a time.

1. **Checks** (``plan_upgrade``; nothing changes, each refusal is one line):
   - the stack exists and is not busy;
   - the target minor is in the catalog and is the control planes' own or the next one (the
     version skew policy, kubernetes.io/releases/version-skew-policy: kube-apiservers differ by
     one minor at most, so control planes go one minor at a time; kubelets may lag, never lead,
     so workers go after them);
   - ``bake ami`` published the target's image (``<prefix>/<minor>/<os>/<arch>/image_id``);
   - health: every instance in service reported ``joined``; the etcd members are exactly the
     control planes, none a learner, all healthy (what Cluster API's KubeadmControlPlane checks
     before and between its steps: ``EtcdIsHealthy``/``ControlPlaneIsHealthy``).
2. After one confirmation: the cluster file's ``kubernetes`` (and its image parameter, when in
   bake's layout) becomes the target, then the stack is updated through a change set: the
   launch templates name the new image. CloudFormation replaces no instance (the control-plane
   group carries no rolling-update policy): bake does, below.
3. **Control planes**, KCP's rollout with ``maxSurge: 1`` (controlplane/kubeadm/internal/
   controllers/upgrade.go, ``scaleUpControlPlane`` then ``scaleDownControlPlane``), for each
   old one: the group grows by one (its ``MaxSize`` leaves room for one); the new instance
   boots the new image, raises the cluster's ClusterConfiguration version under the lease and
   joins (``bake_node.upgrade``); gate: its report says joined at the target version and the
   etcd members it recorded are ``count + 1``, healthy, no learner. Then the old one is drained
   (``bake-node drain`` over SSM Run Command on a new control plane), its etcd member removed
   from there with leadership moved away first (``bake-node etcd-remove``: KCP's
   ``ForwardEtcdLeadership`` and ``RemoveEtcdMemberForMachine``; the lifecycle hook's cleanup
   then finds nothing to remove), and it is terminated with the desired capacity decremented;
   gate: the instance is gone, its Node object deleted (``bake-node delete-node``) and etcd,
   recorded by the new control plane at each look (``bake-node etcd-status``), is back at
   ``count`` healthy members.
4. **kube-proxy and CoreDNS** follow (``bake-node upgrade-addons``), as KCP does once no
   machine needs a rollout.
5. **Workers**, one at a time: drained (bounded by ``--drain-timeout``; evictions honour
   PodDisruptionBudgets), terminated without decrementing (the group launches a replacement
   from the new template), the replacement joined at the target version, the old Node object
   deleted.

A failed step stops the roll with the reason and leaves the cluster serving: a surge control
plane that failed to join is terminated (the count goes back). ``bake upgrade`` again resumes:
instances already on the target image are skipped.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bake.aws import autoscaling, dynamodb, ssm
from bake.aws import ec2 as ec2_api
from bake.cluster import ClusterSpec
from bake.errors import BakeError, UsageError

BAKE_NODE = "/usr/sbin/bake-node"  # where the bake-node component installs the agent
GONE = ("Terminating", "Terminating:Wait", "Terminating:Proceed", "Terminated")


class UpgradeError(BakeError):
    """A step of the roll failed; the message names the step, the node and what is left."""


@dataclass(frozen=True)
class UpgradeOptions:
    """What ``bake upgrade`` was asked.

    Attributes:
        target_minor: ``"1.31"``: the cluster file's own for a new image of the same minor.
        node_timeout_s: seconds a new node may take to join (boot included).
        etcd_timeout_s: seconds to wait for etcd to show the expected members (the control
            planes record them on every rotate timer run, every 2 min).
        drain_timeout_s: seconds ``kubectl drain`` may take per node.
        poll_s: seconds between looks at the group and the cluster table.
        workers: roll the workers too (``--control-planes-only`` turns it off).
    """

    target_minor: str
    node_timeout_s: float = 1800.0
    etcd_timeout_s: float = 600.0
    drain_timeout_s: int = 300
    poll_s: float = 10.0
    workers: bool = True


@dataclass(frozen=True)
class Node:
    """One instance of the cluster: id, group role, Node name, image and Kubernetes version
    (its report), and launch time (ISO 8601)."""

    instance_id: str
    role: str
    hostname: str
    image_id: str
    version: str
    launched: str


@dataclass(frozen=True)
class UpgradePlan:
    """What ``plan_upgrade`` found.

    Attributes:
        current: the control planes' Kubernetes version (``1.30.12``; the newest one when a
            resumed roll left some at the target already).
        target: the target cluster (the spec at the target minor).
        image_id: the AMI the target's SSM parameter names.
        control_planes, workers: the instances still on another image, oldest first.
        healthy: the nodes on the target image already (a resumed roll).
    """

    current: str
    target: ClusterSpec
    image_id: str
    control_planes: tuple[Node, ...]
    workers: tuple[Node, ...]
    healthy: tuple[Node, ...]


def minor_of(version: str) -> tuple[int, int]:
    """``(1, 31)`` of ``1.31``, ``v1.31.8`` or ``1.31.8``."""
    major, minor = version.lstrip("v").split(".")[:2]
    return int(major), int(minor)


def _groups(spec: ClusterSpec) -> dict[str, str]:
    return {"control-plane": f"bake-{spec.name}-control-plane",
            "worker": f"bake-{spec.name}-worker"}


def cluster_nodes(spec: ClusterSpec, clients) -> list[Node]:
    """Every in-service instance of the cluster's two groups with its report, oldest first."""
    asg = clients.client("autoscaling")
    found = autoscaling.groups(asg, list(_groups(spec).values()))
    roles = {i["InstanceId"]: ("control-plane" if name.endswith("-control-plane") else "worker")
             for name, g in found.items() for i in g.get("Instances", [])
             if i.get("LifecycleState") not in GONE}
    described = {i["InstanceId"]: i for i in ec2_api.instances(clients.client("ec2"),
                                                               sorted(roles))}
    reports = {r["instance_id"]: r for r in dynamodb.items_with_prefix(
        clients.client("dynamodb"), spec.lock_table, "node#")}
    nodes = []
    for iid, role in roles.items():
        inst, report = described.get(iid, {}), reports.get(iid, {})
        launched = inst.get("LaunchTime", "")
        nodes.append(Node(iid, role, report.get("hostname", ""), inst.get("ImageId", ""),
                          report.get("kubernetes_version", ""),
                          launched.isoformat() if hasattr(launched, "isoformat")
                          else str(launched)))
    return sorted(nodes, key=lambda n: (n.launched, n.instance_id))


def health_problems(spec: ClusterSpec, clients, nodes: list[Node], count: int) -> list[str]:
    """What keeps the cluster from a safe step (``[]`` when none): a node that has not
    reported joined, etcd members other than ``count`` control planes, a learner, an unhealthy
    member. Reads the node reports and ``etcd-status`` of the cluster table."""
    db = clients.client("dynamodb")
    reports = {r["instance_id"]: r for r in dynamodb.items_with_prefix(db, spec.lock_table,
                                                                       "node#")}
    problems = []
    for n in nodes:
        report = reports.get(n.instance_id, {})
        status = report.get("status", "no report")
        if status != "joined":
            extra = f" in phase {report['failed_phase']}: {report.get('error')}" \
                if status == "failed" else ""
            problems.append(f"{n.instance_id} ({n.role}) is {status}{extra}")
    etcd = dynamodb.item(db, spec.lock_table, "etcd-status")
    members = json.loads(etcd.get("members", "[]")) if etcd else []
    if len(members) != count:
        problems.append(f"etcd has {len(members)} members, expected {count}")
    for m in members:
        if m.get("learner"):
            problems.append(f"etcd member {m.get('name') or m.get('id')} is a learner")
        elif not m.get("healthy"):
            problems.append(f"etcd member {m.get('name') or m.get('id')} is not healthy")
    return problems


def plan_upgrade(spec: ClusterSpec, target: ClusterSpec, clients) -> UpgradePlan:
    """Step 1 of the module docstring: every check, nothing changed.

    Args:
        spec: the cluster as its file says now; target: the same at the target minor.
        clients: ``bake.aws.session.AwsClients``.

    Raises:
        UsageError: the target skips or goes back a minor, or its image is not published.
        BakeError: no stack, the stack is busy, or the cluster is not healthy (each problem
            named).
    """
    from bake.aws.cloudformation import CloudFormation

    status = CloudFormation(clients.client("cloudformation")).stack_status(spec.stack_name)
    if status is None:
        raise BakeError(f"no stack {spec.stack_name} in {spec.region}: launch the cluster "
                        f"first (`bake launch -f {spec.source}`)")
    if status.endswith("_IN_PROGRESS"):
        raise BakeError(f"stack {spec.stack_name} is busy ({status}); wait for it and retry")
    nodes = cluster_nodes(spec, clients)
    cps = [n for n in nodes if n.role == "control-plane"]
    versions = sorted({n.version for n in cps if n.version}, key=minor_of)
    if not versions:
        raise BakeError(f"no control plane of {spec.name} has reported its version: is the "
                        f"cluster up? (`bake status -f {spec.source}`)")
    current = versions[-1]
    have, want = minor_of(versions[0]), minor_of(target.kubernetes_minor)
    if want < minor_of(current):
        raise UsageError(f"--k8s {target.kubernetes_minor}: the control planes run {current}; "
                         "Kubernetes does not support going back a minor (restore an etcd "
                         "snapshot of the older cluster instead)")
    if want[0] != have[0] or want[1] - have[1] > 1:
        raise UsageError(f"--k8s {target.kubernetes_minor}: the control planes run "
                         f"{versions[0]}; upgrade one minor at a time (version skew policy): "
                         f"--k8s {have[0]}.{have[1] + 1} first")
    param = ssm.get_parameter(clients.client("ssm"), target.image_ssm_parameter)
    if param is None:
        raise UsageError(f"no image at {target.image_ssm_parameter}: bake it first (`bake ami "
                         f"--k8s {target.kubernetes_minor} --os {target.os} --arch "
                         f"{target.arch}`)")
    problems = health_problems(spec, clients, nodes, len(cps))
    if problems:
        raise BakeError(f"{spec.name} is not healthy, so nothing was changed: "
                        f"{'; '.join(problems)} (`bake status -f {spec.source}`)")
    old = [n for n in nodes if n.image_id != param.value]
    return UpgradePlan(
        current=current, target=target, image_id=param.value,
        control_planes=tuple(n for n in old if n.role == "control-plane"),
        workers=tuple(n for n in old if n.role == "worker"),
        healthy=tuple(n for n in nodes if n.image_id == param.value))


def target_spec(spec: ClusterSpec, minor: str) -> ClusterSpec:
    """``spec`` at Kubernetes ``minor``: its image parameter follows when it is in bake's
    layout (``<prefix>/<minor>/<os>/<arch>/image_id``)."""
    param = re.sub(rf"/{re.escape(spec.kubernetes_minor)}/(?=[^/]+/[^/]+/image_id$)",
                   f"/{minor}/", spec.image_ssm_parameter)
    return replace(spec, kubernetes_minor=minor, image_ssm_parameter=param)


def edit_cluster_file(path: Path, spec: ClusterSpec, target: ClusterSpec) -> str:
    """The cluster file's text with ``kubernetes`` (and ``image.ssmParameter``) at the
    target, comments and layout kept: two line edits, checked by parsing the result.

    Returns:
        the new text (not written).

    Raises:
        UsageError: the lines could not be found (the file is not as ``bake init`` writes it:
            edit them by hand).
    """
    import yaml

    from bake.cluster import parse_cluster

    text = Path(path).read_text()
    new, n = re.subn(rf"""^(kubernetes:\s*)(["']?){re.escape(spec.kubernetes_minor)}\2""",
                     rf"\g<1>\g<2>{target.kubernetes_minor}\g<2>", text, count=1, flags=re.M)
    if spec.image_ssm_parameter != target.image_ssm_parameter:
        new = new.replace(spec.image_ssm_parameter, target.image_ssm_parameter)
    try:
        parsed = parse_cluster(yaml.safe_load(new), str(path))
    except Exception:  # noqa: BLE001 - any failure below is the same advice
        parsed = None
    if n != 1 or parsed is None or parsed.kubernetes_minor != target.kubernetes_minor or \
            parsed.image_ssm_parameter != target.image_ssm_parameter:
        raise UsageError(f"{path}: could not set kubernetes: \"{target.kubernetes_minor}\" in "
                         "place; set it (and image.ssmParameter) by hand, then run `bake "
                         "upgrade` again")
    return new


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (temporary file in the same directory, then rename),
    keeping its mode."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.bake-tmp")
    tmp.write_text(text)
    os.chmod(tmp, path.stat().st_mode & 0o777)
    os.replace(tmp, path)


def stack_deployer(target: ClusterSpec, clients, echo: Callable[[str], None],
                   timeout_s: float = 3600, poll_s: float = 5) -> Callable[[], Any]:
    """The stack update of step 2 as a callable: ``bake launch``'s change set for ``target``,
    applied without a second question (the upgrade asked once), allowed to change the
    Kubernetes minor."""
    from bake.aws.cloudformation import CloudFormation
    from bake.launch import LaunchOptions, launch, stack_parameters

    def deploy():
        return launch(LaunchOptions(spec=target, yes=True, timeout_seconds=timeout_s,
                                    poll_seconds=poll_s, change_minor=True),
                      CloudFormation(clients.client("cloudformation")), echo=echo,
                      confirm=lambda question: True,
                      parameters=stack_parameters(target, clients.client("ec2")))

    return deploy


class Roller:
    """Steps 3-5 of the module docstring, with injected waits.

    Args:
        spec: the target cluster; clients: ``AwsClients``; options: ``UpgradeOptions``.
        echo: one line of progress; after_resize: called after every change of a group
            (``--local``: the VMs follow); sleep: the wait between looks (tests simulate the
            nodes there).
        run_command: the SSM client Run Commands go to (default the account's; ``--local``:
            ``ClusterRunCommand``, the VMs' guest agents).
        terminate: ``(instance id, role, decrement)`` ends an instance through its group
            (default ``TerminateInstanceInAutoScalingGroup``, whose lifecycle hook runs the
            etcd member cleanup; ``--local`` runs that hook's Lambda itself).
    """

    def __init__(self, spec: ClusterSpec, clients, options: UpgradeOptions,
                 echo: Callable[[str], None], after_resize: Callable[[], None] = lambda: None,
                 sleep: Callable[[float], None] = time.sleep, run_command=None,
                 terminate: Callable[[str, str, bool], None] | None = None):
        self.spec, self.clients, self.o = spec, clients, options
        self.echo, self.after_resize, self.sleep = echo, after_resize, sleep
        self.asg = clients.client("autoscaling")
        self.db = clients.client("dynamodb")
        self.groups = _groups(spec)
        self.run_command = run_command or clients.client("ssm")
        self._terminate = terminate or (lambda instance_id, _role, decrement:
                                        autoscaling.terminate(self.asg, instance_id, decrement))

    # -- looks -------------------------------------------------------------------------------
    def _instances(self, role: str, leaving: Collection[str]) -> list[str]:
        """The ids of the ``role`` group's instances whose lifecycle state is not in
        ``leaving`` (Auto Scaling ``DescribeAutoScalingGroups``)."""
        group = autoscaling.groups(self.asg, [self.groups[role]]).get(self.groups[role], {})
        return [i["InstanceId"] for i in group.get("Instances", [])
                if i.get("LifecycleState") not in leaving]

    def _in_service(self, role: str) -> list[str]:
        """The group's instances that are not on their way out (``GONE``)."""
        return self._instances(role, GONE)

    def _listed(self, role: str) -> list[str]:
        """Every instance the group still lists, whatever its lifecycle state (one that
        finished terminating leaves the list)."""
        return self._instances(role, {"Terminated"})

    def _report(self, instance_id: str) -> dict[str, Any]:
        return dynamodb.item(self.db, self.spec.lock_table, f"node#{instance_id}") or {}

    def _wait(self, what: str, check: Callable[[], Any], timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise UpgradeError(f"timed out after {timeout_s:.0f} s waiting for {what}")
            self.sleep(self.o.poll_s)

    def _new_instance(self, role: str, known: set[str]) -> str:
        return self._wait(f"the {self.groups[role]} group to launch an instance",
                          lambda: next((i for i in self._in_service(role) if i not in known),
                                       None), self.o.node_timeout_s)

    def _joined(self, instance_id: str, role: str) -> dict[str, Any]:
        """Wait for the node's report: joined at the target minor. A failed report is not the
        end (the agent's unit restarts it after 30 s, and a half-done join is reset first): it
        is shown once, and named if the node has not joined by the deadline.

        Raises:
            UpgradeError: not joined within ``node_timeout_s`` (with its last failure), or
                joined at another minor.
        """
        failures: list[str] = []

        def check():
            report = self._report(instance_id)
            if report.get("status") == "failed":
                why = (f"{role} {instance_id} failed in phase {report.get('failed_phase')}: "
                       f"{report.get('error')}")
                if why not in failures:
                    failures.append(why)
                    self.echo(f"{why} (its agent retries)")
            if report.get("status") == "joined":
                version = report.get("kubernetes_version", "")
                if minor_of(version) != minor_of(self.spec.kubernetes_minor):
                    raise UpgradeError(f"{role} {instance_id} joined at {version}, not "
                                       f"{self.spec.kubernetes_minor}: its image is not the "
                                       "target's")
                return report
            return None
        try:
            return self._wait(f"{role} {instance_id} to join", check, self.o.node_timeout_s)
        except UpgradeError as exc:
            raise UpgradeError(f"{failures[-1]} (and it had not joined after "
                               f"{self.o.node_timeout_s:.0f} s)" if failures else str(exc)
                               ) from None

    def _etcd(self, count: int, since: float, record_on: str | None = None
              ) -> list[dict[str, Any]]:
        """Wait until etcd, as recorded after ``since`` (epoch seconds), has ``count``
        members, all started, healthy and voting. With ``record_on`` (a control plane), each
        look first has it record etcd now (``bake-node etcd-status``) instead of waiting for
        the rotate timer's next record."""
        def check():
            if record_on:
                self._run(record_on, "etcd-status")
            item = dynamodb.item(self.db, self.spec.lock_table, "etcd-status") or {}
            if item.get("observed_at", 0) < since:
                return None
            members = json.loads(item.get("members", "[]"))
            ok = len(members) == count and all(m.get("healthy") and not m.get("learner")
                                               for m in members)
            return members if ok else None
        return self._wait(f"etcd to have {count} healthy members", check,
                          self.o.etcd_timeout_s)

    def _run(self, on: str, *args: str) -> str:
        return ssm.run_shell(self.run_command, on, " ".join((BAKE_NODE, *args)),
                             self.o.drain_timeout_s + 60, sleep=self.sleep)

    # -- steps -------------------------------------------------------------------------------
    def control_plane(self, old: Node, index: int, total: int) -> str:
        """Replace one control plane (surge, gate, drain, terminate, gate). Returns the new
        instance id (a control plane to run later commands on)."""
        count = self.spec.control_plane.desired
        group = self.groups["control-plane"]
        known = set(self._in_service("control-plane"))
        started = time.time()
        autoscaling.set_desired_capacity(self.asg, group, count + 1)
        self.after_resize()
        new = self._new_instance("control-plane", known)
        self.echo(f"control plane {index}/{total}: {new} launched to replace {old.instance_id} "
                  f"({old.hostname or 'no name'}, {old.version or '?'})")
        try:
            report = self._joined(new, "control plane")
            self._etcd(count + 1, started)
        except UpgradeError as exc:
            self._terminate(new, "control-plane", True)
            self.after_resize()
            raise UpgradeError(f"{exc}; the roll stopped: {new} is terminated, the cluster "
                               f"keeps its {count} control planes (`bake status -f "
                               f"{self.spec.source}`)") from None
        self.echo(f"control plane {index}/{total}: {new} ({report.get('hostname')}) joined at "
                  f"{report.get('kubernetes_version')}; etcd has {count + 1} healthy members")
        left = time.time()
        self._leave(old, on=new, decrement=True)
        self._etcd(count, left, record_on=new)
        self.echo(f"control plane {index}/{total}: {old.instance_id} drained and terminated; "
                  f"etcd is back at {count} healthy members")
        return new

    def _leave(self, old: Node, on: str, decrement: bool) -> None:
        """Drain ``old`` from control plane ``on``, terminate it, wait until it is gone, then
        delete its Node object."""
        if old.hostname:
            self._run(on, "drain", old.hostname, "--timeout", str(self.o.drain_timeout_s))
        if old.hostname and old.role == "control-plane":
            # KCP's scale-down: leadership moved away, then the member removed, before the
            # machine goes (the lifecycle hook's cleanup then finds nothing to remove)
            self.echo(self._run(on, "etcd-remove", old.hostname).strip())
        self._terminate(old.instance_id, old.role, decrement)
        self.after_resize()
        # gone from the group, not only Terminating: its lifecycle hook (the etcd member
        # cleanup) has completed by then
        self._wait(f"{old.instance_id} to terminate", lambda: old.instance_id not in
                   self._listed(old.role), self.o.node_timeout_s)
        if old.hostname:
            self._run(on, "delete-node", old.hostname)

    def worker(self, old: Node, on: str, index: int, total: int) -> None:
        """Replace one worker: drain, terminate (the group launches its replacement), wait
        until the replacement joined."""
        known = set(self._in_service("worker"))
        self._leave(old, on=on, decrement=False)
        new = self._new_instance("worker", known)
        report = self._joined(new, "worker")
        self.echo(f"worker {index}/{total}: {old.instance_id} ({old.hostname or 'no name'}) "
                  f"drained and replaced by {new} ({report.get('hostname')}, "
                  f"{report.get('kubernetes_version')})")

    def addons(self, on: str) -> None:
        """kube-proxy and CoreDNS at the new control planes' images, then the CNI and add-ons
        re-applied from the new image (``bake-node upgrade-addons``)."""
        out = self._run(on, "upgrade-addons").strip()
        self.echo(f"add-ons: {'; '.join(out.splitlines())}" if out
                  else "add-ons: kube-proxy and CoreDNS current")


def upgrade(plan: UpgradePlan, spec: ClusterSpec, clients, options: UpgradeOptions,
            confirm: Callable[[str], bool], echo: Callable[[str], None],
            deploy: Callable[[], Any], cluster_file: Path | None = None,
            after_resize: Callable[[], None] = lambda: None,
            sleep: Callable[[float], None] = time.sleep, run_command=None,
            terminate: Callable[[str, str, bool], None] | None = None) -> bool:
    """Steps 2-5 of the module docstring for a checked ``plan``.

    Args:
        plan: from ``plan_upgrade``; spec: the cluster as its file says now.
        confirm: asked once before anything changes; deploy: the change-set update of the
            stack for ``plan.target`` (``bake launch``'s).
        cluster_file: the file to set to the target minor (``None``: leave it).
        after_resize, sleep, run_command, terminate: see ``Roller``.

    Returns:
        False when the user declined (nothing changed), True when the roll finished.

    Raises:
        UpgradeError: a step failed (the message says what is left as it was).
        LaunchError: the stack update failed (the cluster file is put back).
    """
    target = plan.target
    cps, workers = list(plan.control_planes), list(plan.workers) if options.workers else []
    moving = minor_of(target.kubernetes_minor) != minor_of(plan.current)
    what = (f"from {plan.current} to Kubernetes {target.kubernetes_minor}" if moving
            else f"to the newest {target.kubernetes_minor} image")
    echo(f"upgrade {spec.name} {what} ({plan.image_id}): {len(cps)} control plane(s), then "
         f"{len(workers)} worker(s), one at a time")
    if not confirm(f"Upgrade {spec.name} {what}? Every node on another image is drained and "
                   "replaced."):
        echo("nothing changed")
        return False
    old_text = None
    if target.kubernetes_minor != spec.kubernetes_minor and cluster_file is not None:
        new_text = edit_cluster_file(cluster_file, spec, target)
        old_text = Path(cluster_file).read_text()
        write_atomically(cluster_file, new_text)
        echo(f"{cluster_file}: kubernetes: \"{target.kubernetes_minor}\", image.ssmParameter: "
             f"{target.image_ssm_parameter}")
    try:
        deploy()
    except BaseException:
        if old_text is not None:
            write_atomically(cluster_file, old_text)
            echo(f"{cluster_file}: put back (the stack update did not complete)")
        raise
    for role in ("control-plane", "worker"):
        named = ec2_api.launch_template_image(clients.client("ec2"), f"bake-{spec.name}-{role}")
        if named != plan.image_id:
            raise UpgradeError(f"the {role} launch template names {named}, not "
                               f"{plan.image_id}, after the stack update; nothing was replaced")
    roller = Roller(target, clients, options, echo, after_resize, sleep, run_command, terminate)
    newest = next((n.instance_id for n in plan.healthy if n.role == "control-plane"), None)
    for i, old in enumerate(cps, 1):
        newest = roller.control_plane(old, i, len(cps))
    if newest is None:
        raise UpgradeError("no control plane runs the target image")
    roller.addons(newest)
    for i, old in enumerate(workers, 1):
        roller.worker(old, newest, i, len(workers))
    echo(f"{spec.name}: every node runs {plan.image_id} (Kubernetes {target.kubernetes_minor})"
         + ("" if options.workers else "; workers not rolled (--control-planes-only)"))
    return True
