"""The service behind ``bake launch --local``, ``bake status --local``, ``bake logs --local`` and
``bake destroy --local``.

``launch_local`` checks everything before it changes anything (root, the Debian tools, a local
image of the cluster's minor and arch, free memory), deploys the cluster stack into the embedded
AWS through the very change-set path of ``bake launch``, reads back the Auto Scaling groups'
instances and their launch templates' user-data, builds the segment (``plan``), starts the
gateway, dnsmasq and haproxy inside it, boots one VM per instance (all at once), and follows
them until every node agent reports ``joined`` in the cluster table, or one reports a failure.
Progress per node comes from the VMs' consoles; the final figures come from the agents' own
reports (``node#<instance id>`` items), read over the network like on AWS.

State: ``<data dir>/clusters/<name>/local.json`` (pids of everything started, the nodes),
beside the VMs' directories and the cluster's CA. ``destroy_local`` stops only processes whose
``/proc/<pid>/cmdline`` shows they are the ones recorded, deletes the namespace (and with it
the bridge and taps) and the overlays; the baked image is never written.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bake.cluster import ClusterSpec
from bake.errors import EnvironmentProblem, UsageError
from bake.localcluster import netns, vm
from bake.localcluster.boot import (
    instances_file,
    prepare_vm,
    progress_marker,
    start_vm,
    vendor_data,
)
from bake.localcluster.hostnet import (
    build_network,
    dnsmasq_config,
    spawn,
    start_haproxy,
    wait_listening,
    write_hosts,
)
from bake.localcluster.plan import LocalNode, mac_for, network_for, subnet_of
from bake.localcluster.state import (
    LocalClusterError,
    cluster_dir,
    is_ours,
    read_state,
    running_nodes,
    state_path,
    stop_recorded,
    write_state,
)

Echo = Callable[[str], None]
#: Debian packages a local cluster uses: command -> package
TOOLS = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "cloud-localds": "cloud-image-utils",
    "dnsmasq": "dnsmasq-base",
    "haproxy": "haproxy",
    "ip": "iproute2",
    "openssl": "openssl",
}
HEADROOM_MIB = 512  # host memory left free beyond the VMs'
EMBEDDED_ACCOUNT_ID = "123456789012"  # the account moto answers for (its default)
STANDIN_NOTE = ("stand-ins, said plainly: kubeadm, kubelet and kubectl in these VMs are bake's "
                "test stand-ins (tools/standin_k8s.py) running the REAL etcd; the API endpoint "
                "on 6443 is a stand-in health endpoint, not kube-apiserver")


@dataclass(frozen=True)
class LocalOptions:
    """What ``bake launch --local`` was asked to do.

    Attributes:
        spec: the cluster.
        data_dir: bake's data dir (the cluster's state goes to ``clusters/<name>/``).
        memory_mib: memory of each VM, MiB.
        timeout_s: seconds to wait for every node to join.
        poll_s: seconds between looks at the nodes.
        boot_script: a shell script every VM runs before its launch template's user-data (the
            two as one MIME multi-part user-data, ``vm.with_boot_script``); ``None`` (what
            ``bake launch --local`` does) boots with the launch template's user-data byte for
            byte. ``bench/boot_join.py`` boots its runtime-install baseline with it.
    """

    spec: ClusterSpec
    data_dir: Path
    memory_mib: int = 1024
    timeout_s: float = 1800.0
    poll_s: float = 5.0
    boot_script: str | None = None


@dataclass
class NodeResult:
    """One node as ``bake launch --local`` and ``bake status`` show it."""

    node: LocalNode
    status: str = "booting"
    report: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        r = self.report
        phases = json.loads(r.get("phases", "{}")) if r.get("phases") else {}
        boot_to_joined = (r["joined_at"] - r["boot_epoch"]) if "joined_at" in r else None
        overhead = (r["kubeadm_started"] - r["agent_started"]) if "kubeadm_started" in r else None
        return {
            "instance_id": self.node.instance_id,
            "hostname": self.node.hostname,
            "role": self.node.role,
            "private_ip": self.node.private_ip,
            "status": self.status,
            "mode": r.get("mode", ""),
            "boot_to_joined_s": round(boot_to_joined, 1) if boot_to_joined else None,
            "agent_overhead_s": round(overhead, 2) if overhead is not None else None,
            "phases": {k: v.get("seconds") for k, v in phases.items()},
            "failed_phase": r.get("failed_phase"),
            "error": r.get("error"),
        }


# ---------------------------------------------------------------- paths and state


# ---------------------------------------------------------------- checks before any change


def preflight(options: LocalOptions, node_count: int) -> None:
    """Everything a local cluster needs, checked before anything is started.

    Raises:
        EnvironmentProblem: not root, a tool missing (names the Debian packages), an arch
            this host cannot run, or not enough free memory for the VMs (names the figures).
        UsageError: a VM memory below what boots reliably.
    """
    if os.geteuid() != 0:
        raise EnvironmentProblem("a local cluster makes a network namespace and tap devices: "
                                 "run as root (sudo)")
    missing = sorted({pkg for cmd, pkg in TOOLS.items() if shutil.which(cmd) is None})
    if missing:
        raise EnvironmentProblem(f"a local cluster needs {', '.join(missing)}: apt-get install "
                                 f"{' '.join(missing)} (or make deb-deps)")
    if options.spec.arch != "amd64":
        raise EnvironmentProblem(f"local clusters run amd64 images on this host (qemu "
                                 f"x86_64); the cluster file says arch: {options.spec.arch}")
    if options.memory_mib < 512:
        raise UsageError(f"local.vmMemoryMiB {options.memory_mib} is below 512 MiB, too small to "
                         "boot a node")
    need = node_count * options.memory_mib + HEADROOM_MIB
    available = _mem_available_mib()
    if available < need:
        raise EnvironmentProblem(
            f"{node_count} VMs of {options.memory_mib} MiB need {need} MiB of free memory "
            f"(with {HEADROOM_MIB} MiB headroom); this machine has {available} MiB available: "
            "lower local.vmMemoryMiB or the node counts"
        )


def _mem_available_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0


def local_image(clients, spec: ClusterSpec) -> Path:
    """The local image directory the cluster's image parameter points to.

    The parameter (``image.ssmParameter``) holds an AMI of the embedded AWS; a local bake tags
    it ``bake:local-path`` with the image directory (disk, kernel, initrd).

    Raises:
        UsageError: no such parameter or AMI, or the AMI is not a local image (names how to
            bake one).
    """
    from bake.aws import ec2, ssm

    hint = (f"bake one with `bake ami --k8s {spec.kubernetes_minor} --local` (or `make demo` "
            "for 1.30)")
    param = ssm.get_parameter(clients.client("ssm"), spec.image_ssm_parameter)
    if param is None:
        raise UsageError(f"no local image for Kubernetes {spec.kubernetes_minor} ({spec.arch}): "
                         f"{spec.image_ssm_parameter} is not set in the embedded AWS; {hint}")
    image = ec2.describe_image(clients.client("ec2"), param.value)
    tags = ec2.tags_to_dict((image or {}).get("Tags"))
    path = tags.get("bake:local-path")
    if not path:
        raise UsageError(f"{spec.image_ssm_parameter} points to {param.value}, which is not a "
                         f"local image (no bake:local-path tag); {hint}")
    directory = Path(path)
    for name in ("disk.raw", "vmlinuz", "initrd.img"):
        if not (directory / name).is_file():
            raise UsageError(f"local image {directory} lacks {name}; {hint}")
    return directory


def image_dir_of(clients, image_id: str) -> Path | None:
    """The local image directory of AMI ``image_id`` (its ``bake:local-path`` tag, with the
    disk, kernel and initrd there), or ``None`` when it is not a complete local image."""
    from bake.aws import ec2

    if not image_id:
        return None
    tags = ec2.tags_to_dict((ec2.describe_image(clients.client("ec2"), image_id) or {})
                            .get("Tags"))
    path = tags.get("bake:local-path")
    if not path or not all((Path(path) / n).is_file() for n in ("disk.raw", "vmlinuz",
                                                                "initrd.img")):
        return None
    return Path(path)


# ---------------------------------------------------------------- the stack's instances


def stack_nodes(clients, spec: ClusterSpec, network_cidrs: list[str] | None = None
                ) -> tuple[list[LocalNode], list[str]]:
    """The instances of the cluster's two Auto Scaling groups, with their user-data.

    Returns:
        ``(nodes, subnet CIDRs)``: control planes first, each in instance-id order.
    """
    from bake.aws import autoscaling, ec2

    names = {f"bake-{spec.name}-control-plane": "control-plane",
             f"bake-{spec.name}-worker": "worker"}
    groups = autoscaling.groups(clients.client("autoscaling"), list(names))
    ec2c = clients.client("ec2")
    user_data = {role: ec2.launch_template_user_data(ec2c, f"bake-{spec.name}-{role}")
                 for role in ("control-plane", "worker")}
    ids = {i["InstanceId"]: names[g] for g, grp in groups.items()
           for i in grp.get("Instances", []) if i.get("LifecycleState", "InService")
           not in ("Terminating", "Terminated")}
    described = {i["InstanceId"]: i for i in ec2.instances(ec2c, sorted(ids))}
    subnet_ids = sorted({i["SubnetId"] for i in described.values() if i.get("SubnetId")})
    subnets = ec2.subnets(ec2c, subnet_ids)
    cidrs = network_cidrs or sorted({s["CidrBlock"] for s in subnets})
    with_routers = tuple((c, str(ipaddress.IPv4Network(c).network_address + 1)) for c in cidrs)
    order = sorted(ids, key=lambda i: (ids[i] != "control-plane", i))
    nodes = []
    for index, instance_id in enumerate(order):
        inst = described[instance_id]
        ip = inst["PrivateIpAddress"]
        cidr, router = subnet_of(ip, with_routers)
        profile = inst.get("IamInstanceProfile", {}).get("Arn", "")
        nodes.append(LocalNode(
            instance_id=instance_id,
            role=ids[instance_id],
            private_ip=ip,
            hostname=inst.get("PrivateDnsName") or f"ip-{ip.replace('.', '-')}",
            subnet_cidr=cidr,
            gateway=router,
            mac=mac_for(ip),
            availability_zone=inst.get("Placement", {}).get("AvailabilityZone", ""),
            instance_type=inst.get("InstanceType", ""),
            image_id=inst.get("ImageId", ""),
            profile_role=profile.rsplit("/", 1)[-1] or f"bake-{spec.name}-{ids[instance_id]}",
            user_data=user_data[ids[instance_id]],
            index=index,
        ))
    return nodes, cidrs


# ---------------------------------------------------------------- the segment


# ---------------------------------------------------------------- launch


def launch_local(options: LocalOptions, clients, echo: Echo, deploy: Callable[[], Any],
                 wait: bool = True) -> list[NodeResult]:
    """Deploy the stack into the embedded AWS and boot its instances as VMs.

    Args:
        options: see ``LocalOptions``.
        clients: ``bake.aws.session.AwsClients`` of the embedded AWS.
        echo: one line of progress.
        deploy: deploys (or updates) the stack; the change-set path of ``bake launch``.
        wait: follow the nodes until all joined; False returns once the VMs are booting (a
            drill that breaks the cluster while it forms follows it itself).

    Returns:
        one ``NodeResult`` per node, all joined ([] when not ``wait``).

    Raises:
        EnvironmentProblem, UsageError: before anything was started (see ``preflight``,
            ``local_image``).
        LocalClusterError: a node failed or did not join in time (names node, phase, log);
            the VMs are left running for ``bake logs --local``; ``bake destroy --local`` ends
            them.
    """
    spec = options.spec
    node_count = spec.control_plane.desired + spec.workers.desired
    preflight(options, node_count)
    image_dir = local_image(clients, spec)
    state = read_state(options.data_dir, spec.name)
    if state is not None:
        return _relaunch(options, clients, echo, state)
    deploy()
    from bake.aws import elb
    from bake.sandbox import require_running

    nodes, cidrs = stack_nodes(clients, spec)
    if options.boot_script is not None:
        nodes = [dataclasses.replace(n, user_data=vm.with_boot_script(n.user_data,
                                                                      options.boot_script))
                 for n in nodes]
    if len(nodes) != node_count:
        raise LocalClusterError(f"the stack's groups have {len(nodes)} instances, the cluster "
                                f"file asks for {node_count}: check `bake status --local`")
    net = network_for(spec.name, spec.region, spec.network.vpc_cidr, cidrs)
    nlb_dns = elb.load_balancer_dns(clients.client("elbv2"), f"bake-{spec.name}-api")
    if not nlb_dns:
        raise LocalClusterError(f"the stack has no load balancer bake-{spec.name}-api")
    base = cluster_dir(options.data_dir, spec.name)
    base.mkdir(parents=True, exist_ok=True)
    sandbox = require_running(options.data_dir)
    from bake.localcluster.pki import endpoint_certificate

    cert, key = endpoint_certificate(base / "pki", spec.name, spec.region)
    ca_pem = (base / "pki" / "ca.crt").read_text()
    state = {"cluster": spec.name, "netns": net.netns, "image_dir": str(image_dir),
             "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "memory_mib": options.memory_mib, "nlb_dns": nlb_dns, "nlb_ip": net.nlb_ip,
             "pids": {}, "nodes": []}
    write_state(options.data_dir, spec.name, state)  # from here on, destroy can clean up
    started = time.monotonic()
    try:
        echo(f"network: namespace {net.netns}, bridge {net.bridge}, subnets "
             f"{', '.join(c for c, _ in net.subnets)}, DNS {net.dns_ip}, endpoints "
             f"{net.endpoints_ip}, NLB {net.nlb_ip} ({nlb_dns})")
        build_network(net, nodes)
        instances = base / "instances.json"
        instances.write_text(json.dumps(instances_file(nodes, spec.region, EMBEDDED_ACCOUNT_ID)))
        config = base / "gateway.json"
        config.write_text(json.dumps({
            "netns": net.netns, "imds_ip": net.imds_ip, "endpoints_ip": net.endpoints_ip,
            "cert": str(cert), "key": str(key), "instances": str(instances),
            "upstream_host": "127.0.0.1", "upstream_port": sandbox.port}))
        state["pids"]["gateway"] = spawn(
            [sys.executable, "-m", "bake.localcluster.gateway", str(config)], base / "gateway.log")
        dns_conf = base / "dnsmasq.conf"
        write_hosts(base, nodes)
        dns_conf.write_text(dnsmasq_config(net, base, nlb_dns))
        state["pids"]["dnsmasq"] = spawn(netns.exec_argv(net.netns, [
            "dnsmasq", f"--conf-file={dns_conf}", "--keep-in-foreground",
            f"--pid-file={base / 'dnsmasq.pid'}"]), base / "dnsmasq.log")
        state["pids"]["haproxy"] = start_haproxy(net, base, nodes)
        write_state(options.data_dir, spec.name, state)
        wait_listening(net, base)
        vendor = vendor_data(ca_pem)
        for node in nodes:
            prepare_vm(node, base, image_dir, vendor)
        for node in nodes:  # all at once: qemu detaches right away
            start_vm(node, base, image_dir, net, options.memory_mib, state, echo)
        write_state(options.data_dir, spec.name, state)
    except BaseException:
        write_state(options.data_dir, spec.name, state)
        raise
    echo(STANDIN_NOTE)
    if not wait:
        return []
    return follow(options, clients, nodes, base, echo, started)


@dataclass(frozen=True)
class SyncResult:
    """What ``sync_local`` changed: the nodes booted (``LocalNode``) and the instance ids whose
    VMs were stopped because their instances are gone."""

    booted: tuple[LocalNode, ...] = ()
    stopped: tuple[str, ...] = ()


def sync_local(options: LocalOptions, clients, echo: Echo) -> SyncResult:
    """Make the VMs follow the Auto Scaling groups, as EC2 does for a group's instances.

    Instances the groups gained (a replacement after a termination, a higher desired
    capacity) are booted as VMs with their launch template's user-data; VMs of instances that
    left the groups or were terminated are stopped (their overlay is removed, their console is
    kept). dnsmasq re-reads the hosts (SIGHUP), the gateway's IMDS re-reads the instances file,
    and haproxy reloads softly when the control planes changed.

    Returns:
        ``SyncResult``.

    Raises:
        LocalClusterError: no local cluster is recorded.
    """
    spec = options.spec
    state = read_state(options.data_dir, spec.name)
    if state is None:
        raise LocalClusterError(f"no local cluster {spec.name} is running: `bake launch --local "
                                f"-f {spec.source}`")
    base = cluster_dir(options.data_dir, spec.name)
    image_dir = Path(state["image_dir"])
    nodes, cidrs = stack_nodes(clients, spec)
    current = {n.instance_id for n in nodes}
    known = {n["instance_id"]: n for n in running_nodes(state)}
    stopped = []
    for instance_id, rec in known.items():
        if instance_id in current:
            continue
        files = vm.VmFiles(Path(rec["dir"]))
        vm.stop(rec["pid"], files)
        files.overlay.unlink(missing_ok=True)
        rec["terminated"] = time.time()
        stopped.append(instance_id)
        echo(f"{instance_id} {rec['role']:<13} {rec['private_ip']:<15} VM stopped (instance "
             "terminated)")
    # every node ever recorded keeps its index (its tap device); new ones get the next free
    indexed = {n["instance_id"]: int(n.get("index", i))
               for i, n in enumerate(state.get("nodes", []))}
    next_index = max(indexed.values(), default=-1) + 1
    placed = []
    for node in nodes:
        if node.instance_id not in indexed:
            indexed[node.instance_id], next_index = next_index, next_index + 1
        placed.append(dataclasses.replace(node, index=indexed[node.instance_id]))
    fresh = [n for n in placed if n.instance_id not in known]
    if stopped or fresh:
        net = network_for(spec.name, spec.region, spec.network.vpc_cidr, cidrs)
        build_network(net, placed)
        (base / "instances.json").write_text(
            json.dumps(instances_file(placed, spec.region, EMBEDDED_ACCOUNT_ID)))
        write_hosts(base, placed)
        dns_pid = state.get("pids", {}).get("dnsmasq")
        if is_ours(dns_pid, str(base / "dnsmasq.conf")):
            os.kill(int(dns_pid), signal.SIGHUP)
        roles = {known[i]["role"] for i in stopped} | {n.role for n in fresh}
        if "control-plane" in roles:
            state["pids"]["haproxy"] = start_haproxy(net, base, placed,
                                                      state["pids"].get("haproxy"))
        vendor = vendor_data((base / "pki" / "ca.crt").read_text())
        for node in fresh:
            # the image its launch template named when it launched (`bake upgrade` moves it)
            own = image_dir_of(clients, node.image_id) or image_dir
            prepare_vm(node, base, own, vendor)
            start_vm(node, base, own, net, state.get("memory_mib", options.memory_mib),
                      state, echo)
        write_state(options.data_dir, spec.name, state)
    return SyncResult(tuple(fresh), tuple(stopped))


def follow(options: LocalOptions, clients, nodes: list[LocalNode], base: Path, echo: Echo,
           started: float) -> list[NodeResult]:
    """Follow the nodes until each agent reports joined (or one fails, or time runs out)."""
    from bake.aws import dynamodb

    results = {n.instance_id: NodeResult(n) for n in nodes}
    table = options.spec.lock_table
    db = clients.client("dynamodb")
    deadline = time.monotonic() + options.timeout_s
    while True:
        reports = {r["instance_id"]: r for r in dynamodb.items_with_prefix(db, table, "node#")
                   if "instance_id" in r}
        for result in results.values():
            node = result.node
            report = reports.get(node.instance_id)
            files = vm.VmFiles(base / "vms" / node.instance_id)
            before = result.status
            if report:
                result.report = report
                result.status = str(report.get("status"))
            else:
                result.status = progress_marker(files.console)
            if result.status != before:
                elapsed = time.monotonic() - started
                detail = ""
                if result.status == "joined":
                    row = result.row()
                    detail = f" ({row['mode']}; boot to joined {row['boot_to_joined_s']} s)"
                echo(f"{elapsed:6.0f} s  {node.instance_id} {node.role:<13} "
                     f"{result.status}{detail}")
            if result.status == "failed":
                r = result.report
                raise LocalClusterError(
                    f"node {node.instance_id} ({node.role}, {node.private_ip}) failed in phase "
                    f"{r.get('failed_phase')}: {r.get('error')}; read its log: bake logs --local "
                    f"{node.instance_id} ({files.console})")
        if all(r.status == "joined" for r in results.values()):
            return [results[n.instance_id] for n in nodes]
        if time.monotonic() > deadline:
            late = [r for r in results.values() if r.status != "joined"]
            first = late[0]
            files = vm.VmFiles(base / "vms" / first.node.instance_id)
            raise LocalClusterError(
                f"{len(late)} node(s) did not join within {options.timeout_s:.0f} s; "
                f"{first.node.instance_id} ({first.node.role}) is at '{first.status}'; read its "
                f"log: bake logs --local {first.node.instance_id} ({files.console})")
        time.sleep(options.poll_s)


def _relaunch(options: LocalOptions, clients, echo: Echo, state: dict) -> list[NodeResult]:
    """A second launch of a running cluster boots the instances the groups gained and stops
    the VMs of instances they lost (``sync_local``); when both match it changes nothing. A
    cluster whose VMs died is refused (destroy it first)."""
    base = cluster_dir(options.data_dir, options.spec.name)
    live = running_nodes(state)
    dead = [n["instance_id"] for n in live
            if not vm.is_our_qemu(n["pid"], vm.VmFiles(Path(n["dir"])))]
    if dead or not live:
        recorded = state_path(options.data_dir, options.spec.name)
        raise LocalClusterError(
            f"local cluster {options.spec.name} is recorded in {recorded} but "
            f"{', '.join(dead) or 'no VM'} is not running: run `bake destroy --local -f "
            f"{options.spec.source}` first")
    started = time.monotonic()
    changed = sync_local(options, clients, echo)
    if not (changed.booted or changed.stopped):
        echo(f"local cluster {options.spec.name} is running ({len(live)} VMs): nothing changed")
    nodes, _ = stack_nodes(clients, options.spec)
    return follow(options, clients, nodes, base, echo, started)


# ---------------------------------------------------------------- destroy, logs


def destroy_local(data_dir: Path, name: str, echo: Echo) -> bool:
    """Stop what the launch started (by recorded pid, each checked), delete the namespace and the
    VMs' overlays. Returns False when nothing was recorded. The baked image is untouched."""
    state = read_state(data_dir, name)
    if state is None:
        return False
    base = cluster_dir(data_dir, name)
    stopped = 0
    for node in state.get("nodes", []):
        if vm.stop(node["pid"], vm.VmFiles(Path(node["dir"]))):
            stopped += 1
    pids = state.get("pids", {})
    stop_recorded(pids.get("haproxy"), str(base / "haproxy.cfg"))
    stop_recorded(pids.get("dnsmasq"), str(base / "dnsmasq.conf"))
    stop_recorded(pids.get("gateway"), str(base / "gateway.json"))
    netns.delete(state["netns"])
    for node in state.get("nodes", []):
        vm.remove(vm.VmFiles(Path(node["dir"])))
    shutil.rmtree(base, ignore_errors=True)
    echo(f"stopped {stopped} VMs, the gateway, dnsmasq and haproxy of {name}; removed "
         f"namespace {state['netns']} and the overlays (the image {state['image_dir']} is "
         "untouched)")
    return True


