"""Reading a cluster file: its shape (unknown keys, types) and meaning (odd control-plane
count, worker min <= desired <= max, CIDRs that parse and do not overlap, nothing open to
0.0.0.0/0, existing-VPC ids), one ``ClusterFileError`` line naming the field."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import yaml

from bake.cluster.addons import parse_addons
from bake.cluster.kubelet import parse_kubelet
from bake.cluster.model import (
    API_VERSION,
    ARCHES,
    CNI_NAMES,
    INSTANCE_TYPE_RE,
    MINOR_RE,
    NAME_RE,
    REGION_RE,
    SSM_RE,
    SUBNET_ID_RE,
    VPC_ID_RE,
    ClusterFileError,
    ClusterSpec,
    EtcdSnapshotSpec,
    LocalSpec,
    NetworkSpec,
    NodeGroupSpec,
    instance_arch,
)
from bake.cluster.registry import parse_registry

# how a value's expected type is said in messages ("must be an integer, got 'three'")
_TYPE_NAMES = {
    int: "an integer",
    str: "a string",
    bool: "true or false",
    list: "a list",
    dict: "a mapping",
    float: "a number",
}


class _Reader:
    """Typed access to one mapping of the file; every error names the dotted field path."""

    def __init__(self, data: Any, path: str, source: str) -> None:
        self.source = source
        self.path = path
        if data is None:
            data = {}
        if not isinstance(data, dict):
            self.fail(path or "(top level)", f"must be a mapping, got {type(data).__name__}")
        self.data = data
        self.seen: set[str] = set()

    def fail(self, where: str, message: str):
        raise ClusterFileError(f"{self.source}: {where}: {message}")

    def _name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., required=False):
        self.seen.add(key)
        if key not in self.data or self.data[key] is None:
            if required or default is ...:
                self.fail(self._name(key), "is required")
            return default
        value = self.data[key]
        if kind is int and isinstance(value, bool) or not isinstance(value, kind):
            kinds = kind if isinstance(kind, tuple) else (kind,)
            want = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
            self.fail(self._name(key), f"must be {want}, got {value!r}")
        return value

    def sub(self, key: str) -> _Reader:
        self.seen.add(key)
        return _Reader(self.data.get(key), self._name(key), self.source)

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            self.fail(
                self._name(unknown[0]), f"unknown field (allowed: {', '.join(sorted(self.seen))})"
            )


#: kube-controller-manager's --node-cidr-mask-size for IPv4 (its default; kubeadm keeps it)
NODE_CIDR_MASK = 24


def _cidr(reader: _Reader, where: str, value: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.IPv4Network(value, strict=True)
    except ValueError as exc:
        reader.fail(where, f"not an IPv4 CIDR like 10.0.0.0/16 ({exc})")
    return net


def _str(reader: _Reader, key: str, pattern: re.Pattern, hint: str, default: Any = ...) -> str:
    value = reader.get(key, str, default)
    if not pattern.match(str(value)):
        reader.fail(reader._name(key), f"{hint}, got {value!r}")
    return value


def _positive(reader: _Reader, key: str, default: Any = ..., low: int = 0, high: int = 1000):
    value = reader.get(key, int, default)
    if not low <= value <= high:
        reader.fail(reader._name(key), f"must be between {low} and {high}, got {value}")
    return value


def parse_cluster(data: Any, source: str = "<memory>") -> ClusterSpec:
    """Validate parsed YAML and build a ``ClusterSpec``.

    Args:
        data: the YAML document (a mapping).
        source: file name used in messages.

    Returns:
        the spec.

    Raises:
        ClusterFileError: the first invalid field, named by its dotted path.
    """
    top = _Reader(data, "", source)
    api = top.get("apiVersion", str, required=True)
    if api != API_VERSION:
        top.fail("apiVersion", f"must be {API_VERSION}, got {api!r}")
    name = _str(top, "name", NAME_RE, "must be 2-28 chars of [a-z0-9-], starting with a letter")
    region = _str(top, "region", REGION_RE, "must be an AWS region like us-east-1")
    minor = top.get("kubernetes", (str, float), required=True)
    minor = str(minor)
    if not MINOR_RE.match(minor):
        top.fail("kubernetes", f'must be a Kubernetes minor like "1.30" (quoted), got {minor!r}')
    os_name = top.get("os", str, "debian-12")
    from bake.catalog import OSES

    if os_name not in OSES:
        top.fail("os", f"must be one of {', '.join(OSES)}, got {os_name!r}")
    arch = top.get("arch", str, "amd64")
    if arch not in ARCHES:
        top.fail("arch", f"must be one of {', '.join(ARCHES)}, got {arch!r}")

    image = top.sub("image")
    default_param = f"/bake/k8s/{minor}/{os_name}/{arch}/image_id"
    ssm_param = _str(image, "ssmParameter", SSM_RE, "must be an SSM parameter path", default_param)
    image.done()

    net = top.sub("network")
    mode = net.get("mode", str, "create")
    if mode not in ("create", "existing"):
        net.fail("network.mode", f"must be create or existing, got {mode!r}")
    vpc_cidr = net.get("vpcCIDR", str, "10.0.0.0/16")
    vpc_net = _cidr(net, "network.vpcCIDR", vpc_cidr)
    if not 16 <= vpc_net.prefixlen <= 24:
        net.fail(
            "network.vpcCIDR", f"prefix must be /16 to /24 (3 subnets are carved), got {vpc_cidr}"
        )
    vpc_id = net.get("vpcId", str, None)
    subnet_ids = tuple(net.get("subnetIds", list, []))
    if mode == "existing":
        if not vpc_id or not VPC_ID_RE.match(vpc_id):
            net.fail(
                "network.vpcId",
                f"mode existing needs a VPC id like vpc-0123456789abcdef0, got {vpc_id!r}",
            )
        if len(subnet_ids) < 2 or not all(
            isinstance(s, str) and SUBNET_ID_RE.match(s) for s in subnet_ids
        ):
            net.fail(
                "network.subnetIds",
                "mode existing needs 2 or more private subnet ids (subnet-...) in different AZs",
            )
        if len(set(subnet_ids)) != len(subnet_ids):
            net.fail("network.subnetIds", "lists a subnet twice")
    elif vpc_id or subnet_ids:
        net.fail(
            "network.vpcId" if vpc_id else "network.subnetIds", "only allowed with mode: existing"
        )
    air_gapped = net.get("airGapped", bool, True)
    allowed = net.get("allowedApiCIDRs", list, ["10.0.0.0/8"])
    if not allowed:
        net.fail("network.allowedApiCIDRs", "needs at least one CIDR (e.g. your VPN's)")
    for i, cidr in enumerate(allowed):
        where = f"network.allowedApiCIDRs[{i}]"
        if not isinstance(cidr, str):
            net.fail(where, f"must be a CIDR string, got {cidr!r}")
        if _cidr(net, where, cidr).prefixlen == 0:
            net.fail(where, "0.0.0.0/0 would open the API server to everyone; list your networks")
    net.done()

    cp = top.sub("controlPlane")
    count = _positive(cp, "count", 3, 1, 7)
    if count % 2 == 0:
        cp.fail("controlPlane.count", f"must be odd (1, 3, 5, 7) to keep etcd quorum, got {count}")
    cp_type = _str(
        cp,
        "instanceType",
        INSTANCE_TYPE_RE,
        "must be an EC2 instance type like m6i.large",
        "m6i.large",
    )
    cp_vol = _positive(cp, "volumeSizeGiB", 40, 20, 16384)
    cp_kubelet = parse_kubelet(cp, "controlPlane")
    cp.done()

    wk = top.sub("workers")
    wmin = _positive(wk, "min", 1)
    wmax = _positive(wk, "max", 5)
    wdes = _positive(wk, "desired", 2)
    if wmin > wmax:
        wk.fail("workers.min", f"must not be greater than workers.max ({wmax}), got {wmin}")
    if not wmin <= wdes <= wmax:
        wk.fail(
            "workers.desired",
            f"must be between workers.min ({wmin}) and workers.max ({wmax}), got {wdes}",
        )
    types = wk.get("instanceTypes", list, ["m6i.large"])
    if not types:
        wk.fail("workers.instanceTypes", "needs at least one instance type")
    for i, t in enumerate(types):
        if not isinstance(t, str) or not INSTANCE_TYPE_RE.match(t):
            wk.fail(
                f"workers.instanceTypes[{i}]",
                f"must be an EC2 instance type like m6i.large, got {t!r}",
            )
    w_vol = _positive(wk, "volumeSizeGiB", 40, 20, 16384)
    w_kubelet = parse_kubelet(wk, "workers")
    wk.done()
    for where, itype in [
        ("controlPlane.instanceType", cp_type),
        *((f"workers.instanceTypes[{i}]", t) for i, t in enumerate(types)),
    ]:
        runs = instance_arch(itype)
        if runs is not None and runs != arch:
            top.fail(
                where,
                f"{itype} runs {runs} but arch is {arch}: pick "
                + ("a Graviton type (e.g. m7g.large)" if arch == "arm64" else
                   "an Intel or AMD type (e.g. m6i.large)")
                + f" or set arch: {runs}",
            )

    kn = top.sub("kubernetesNetwork")
    pod = kn.get("podCIDR", str, "10.244.0.0/16")
    svc = kn.get("serviceCIDR", str, "10.96.0.0/12")
    nets = {
        "kubernetesNetwork.podCIDR": _cidr(kn, "kubernetesNetwork.podCIDR", pod),
        "kubernetesNetwork.serviceCIDR": _cidr(kn, "kubernetesNetwork.serviceCIDR", svc),
        "network.vpcCIDR": vpc_net,
    }
    names = list(nets)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if nets[a].overlaps(nets[b]):
                kn.fail(a, f"{nets[a]} overlaps {b} ({nets[b]}); pick disjoint ranges")
    cni = kn.get("cni", str, "flannel")
    if cni not in CNI_NAMES:
        kn.fail("kubernetesNetwork.cni", f"must be one of {', '.join(CNI_NAMES)}, got {cni!r}")
    kpr = kn.get("kubeProxyReplacement", bool, False)
    if kpr and cni != "cilium":
        kn.fail("kubernetesNetwork.kubeProxyReplacement",
                f"needs cni: cilium ({cni} relies on kube-proxy for Services); set it to false "
                "or use cni: cilium")
    # Flannel and Cilium take each node's pods from its spec.podCIDR, a /24 that
    # kube-controller-manager carves out of the pod CIDR (kubeadm passes --allocate-node-cidrs
    # with networking.podSubnet; --node-cidr-mask-size defaults to 24 for IPv4,
    # kube-controller-manager reference). A node with no /24 left gets no podCIDR and its pods
    # never start. Calico's IPAM takes /26 blocks from the same range instead, but the same
    # /24s are still carved for every node, so one bound serves all three.
    per_node = 2 ** max(0, NODE_CIDR_MASK - nets["kubernetesNetwork.podCIDR"].prefixlen)
    if nets["kubernetesNetwork.podCIDR"].prefixlen >= NODE_CIDR_MASK or per_node < count + wmax:
        kn.fail("kubernetesNetwork.podCIDR",
                f"{pod} holds {per_node if per_node > 1 else 'no'} node /{NODE_CIDR_MASK}s "
                f"(each node's pods, {cni}) but the cluster can have {count + wmax} nodes "
                f"(controlPlane.count + workers.max): use a larger range, e.g. /16")
    kn.done()
    bt = top.sub("bootstrapToken")
    token_ttl = _positive(bt, "ttlMinutes", 30, 15, 1440)
    bt.done()
    es = top.sub("etcdSnapshots")
    snapshots = EtcdSnapshotSpec(
        enabled=es.get("enabled", bool, True),
        interval_minutes=_positive(es, "intervalMinutes", 30, 5, 1440),
        keep_hourly_hours=_positive(es, "keepHourlyHours", 48, 0, 720),
        keep_daily_days=_positive(es, "keepDailyDays", 30, 0, 3650),
    )
    es.done()
    registry = parse_registry(top)
    top.seen.add("addons")
    addons = parse_addons(top.data.get("addons"), top.fail, wmin, wmax)
    ce = top.sub("certificates")
    renew_before = _positive(ce, "renewBeforeDays", 90, 7, 300)
    ce.done()
    lo = top.sub("local")
    vm_memory = _positive(lo, "vmMemoryMiB", 1024, 512, 16384)
    lo.done()
    top.done()

    return ClusterSpec(
        name=name,
        region=region,
        kubernetes_minor=minor,
        os=os_name,
        arch=arch,
        image_ssm_parameter=ssm_param,
        network=NetworkSpec(
            mode=mode,
            vpc_cidr=str(vpc_net),
            vpc_id=vpc_id,
            subnet_ids=subnet_ids,
            air_gapped=air_gapped,
            allowed_api_cidrs=tuple(allowed),
        ),
        control_plane=NodeGroupSpec(count, count, count, (cp_type,), cp_vol, cp_kubelet),
        workers=NodeGroupSpec(wmin, wmax, wdes, tuple(types), w_vol, w_kubelet),
        pod_cidr=pod,
        service_cidr=svc,
        cni=cni,
        kube_proxy_replacement=kpr,
        bootstrap_token_ttl_minutes=token_ttl,
        local=LocalSpec(vm_memory_mib=vm_memory),
        etcd_snapshots=snapshots,
        cert_renew_before_days=renew_before,
        registry=registry,
        addons=addons,
        source=source,
    )


def load_cluster(path: Path) -> ClusterSpec:
    """Read and validate a cluster file.

    Args:
        path: the ``cluster.yaml``.

    Returns:
        the ``ClusterSpec``.

    Raises:
        ClusterFileError: missing/unreadable file, invalid YAML, or an invalid field.
    """
    from bake.userfiles import read_text

    if not Path(path).exists():
        raise ClusterFileError(
            f"cannot read cluster file {path}: No such file or directory (create one with "
            "`bake init`)"
        )
    text = read_text(path, "cluster file", ClusterFileError)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ClusterFileError(
            f"{path}:{where} invalid YAML: {getattr(exc, 'problem', exc)}"
        ) from None
    return parse_cluster(data, str(path))
