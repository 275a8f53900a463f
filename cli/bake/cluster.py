"""The cluster file (``cluster.yaml``, apiVersion ``bake.cluster/v1``) as frozen dataclasses.

``load_cluster(path)`` reads the YAML, checks its shape (unknown keys, types) and then its
meaning (odd control-plane count, worker min <= desired <= max, CIDRs that parse and do not
overlap, nothing open to 0.0.0.0/0, existing-VPC ids), and returns a ``ClusterSpec``. Every
failure is one ``ClusterFileError`` line that names the field, e.g.
``cluster.yaml: controlPlane.count: must be odd (1, 3, 5, 7) to keep etcd quorum, got 4``.
``init_text()`` is the commented starter file ``bake init`` writes. Nothing here touches AWS.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bake.errors import UsageError

API_VERSION = "bake.cluster/v1"
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,26}[a-z0-9]$")
REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]+$")
MINOR_RE = re.compile(r"^1\.[0-9]{2}$")
SSM_RE = re.compile(r"^(/[A-Za-z0-9_.-]+)+$")
INSTANCE_TYPE_RE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
VPC_ID_RE = re.compile(r"^vpc-[0-9a-f]{8,17}$")
SUBNET_ID_RE = re.compile(r"^subnet-[0-9a-f]{8,17}$")
CNI_NAMES = ("flannel", "calico", "cilium")
ARCHES = ("amd64", "arm64")


class ClusterFileError(UsageError):
    """The cluster file is missing, unreadable, or has an invalid field (exit code 2)."""


@dataclass(frozen=True)
class NetworkSpec:
    """Where the cluster lives.

    Attributes:
        mode: ``"create"`` (a new VPC with 3 private subnets) or ``"existing"``.
        vpc_cidr: the VPC CIDR (``create``) or the existing VPC's CIDR (used for the
            node config's overlap check and the self-referencing security group).
        vpc_id: existing VPC id (``existing`` only), else ``None``.
        subnet_ids: existing private subnet ids, one per AZ (``existing`` only), else ``()``.
        air_gapped: no internet or NAT gateway; VPC endpoints for every service the nodes use.
        allowed_api_cidrs: CIDRs that may reach the API server on TCP 6443 (never 0.0.0.0/0).
    """

    mode: str = "create"
    vpc_cidr: str = "10.0.0.0/16"
    vpc_id: str | None = None
    subnet_ids: tuple[str, ...] = ()
    air_gapped: bool = True
    allowed_api_cidrs: tuple[str, ...] = ("10.0.0.0/8",)


@dataclass(frozen=True)
class NodeGroupSpec:
    """One group of nodes (an Auto Scaling group).

    Attributes:
        min_size, max_size, desired: instance counts (control planes: all three equal).
        instance_types: EC2 instance types; the first is the launch template's type.
        volume_size_gib: root volume size in GiB (gp3, encrypted).
    """

    min_size: int
    max_size: int
    desired: int
    instance_types: tuple[str, ...]
    volume_size_gib: int = 40


@dataclass(frozen=True)
class LocalSpec:
    """Settings of the cluster as local VMs (``bake launch --local``); ignored on AWS.

    Attributes:
        vm_memory_mib: memory of each VM, MiB (measured: the default boots a node reliably
            under software emulation; bench/local_cluster.py prints the peak).
    """

    vm_memory_mib: int = 1024


@dataclass(frozen=True)
class ClusterSpec:
    """A validated cluster file.

    Attributes:
        name: cluster name, ``[a-z0-9-]``, 2-28 chars (prefixes every AWS name).
        region: AWS region.
        kubernetes_minor: e.g. ``"1.30"``.
        os, arch: image OS (``debian-12``) and architecture (``amd64``/``arm64``).
        image_ssm_parameter: the SSM parameter ``bake ami`` published the AMI id to.
        network, control_plane, workers: see their classes.
        pod_cidr, service_cidr: Kubernetes pod and service CIDRs.
        cni: the CNI manifest set baked into the image (``flannel``, ``calico``, ``cilium``).
        bootstrap_token_ttl_minutes: lifetime of every kubeadm bootstrap token the node agent
            creates (``bootstrapToken.ttlMinutes``, 15-1440). The control planes' rotate timer
            (every 2 min, up to 20 s late) replaces a token past half its TTL, and a join
            starts only with 5 min of validity left (kubeadm's discovery timeout,
            ``bake_node.joinmaterial.JOIN_MIN_VALIDITY``): TTL/2 + 2 min 20 s + 5 min <= TTL
            holds from 15 min (14.7) up, so a joiner never waits for a rotation.
        source: the file it was loaded from (for messages), or ``"<memory>"``.
    """

    name: str
    region: str
    kubernetes_minor: str
    os: str
    arch: str
    image_ssm_parameter: str
    network: NetworkSpec
    control_plane: NodeGroupSpec
    workers: NodeGroupSpec
    pod_cidr: str = "10.244.0.0/16"
    service_cidr: str = "10.96.0.0/12"
    cni: str = "flannel"
    bootstrap_token_ttl_minutes: int = 30
    local: LocalSpec = field(default_factory=LocalSpec)
    source: str = field(default="<memory>", compare=False)

    @property
    def stack_name(self) -> str:
        """The CloudFormation stack name: ``bake-<name>``."""
        return f"bake-{self.name}"

    @property
    def ssm_prefix(self) -> str:
        """Where the cluster's parameters live: ``/bake/clusters/<name>``."""
        return f"/bake/clusters/{self.name}"

    @property
    def lock_table(self) -> str:
        """The DynamoDB table of the agent's lease and etcd member registry: ``bake-<name>``."""
        return f"bake-{self.name}"

    @property
    def kms_alias(self) -> str:
        """The KMS key alias: ``alias/bake-<name>``."""
        return f"alias/bake-{self.name}"

    @property
    def shared_prefix(self) -> str:
        """Parameters every node may read (token, CA cert hash): ``<ssm_prefix>/shared``."""
        return f"{self.ssm_prefix}/shared"

    @property
    def control_plane_prefix(self) -> str:
        """Parameters only control planes may read (certificate key, admin kubeconfig):
        ``<ssm_prefix>/control-plane``."""
        return f"{self.ssm_prefix}/control-plane"

    @property
    def kubeconfig_parameter(self) -> str:
        """SSM SecureString of the admin kubeconfig, written by the first control plane."""
        return f"{self.control_plane_prefix}/admin-kubeconfig"


INIT_TEXT = """\
# bake cluster file (apiVersion bake.cluster/v1). Check it with `bake validate -f cluster.yaml`,
# review the CloudFormation with `bake render cluster -f cluster.yaml -o out/`,
# deploy with `bake launch -f cluster.yaml`.
apiVersion: bake.cluster/v1
name: {name}                       # [a-z0-9-], 2-28 chars; AWS names start with bake-<name>
region: {region}
kubernetes: "{minor}"               # the Kubernetes minor the AMI was baked for
os: debian-12
arch: amd64                        # amd64 | arm64
image:
  # SSM parameter holding the AMI id (`bake ami` publishes <prefix>/<minor>/<os>/<arch>/image_id)
  ssmParameter: /bake/k8s/{minor}/debian-12/amd64/image_id
network:
  mode: create                     # create: new VPC, 3 private subnets | existing: see below
  vpcCIDR: 10.0.0.0/16
  # vpcId: vpc-0123456789abcdef0   # mode: existing only
  # subnetIds: [subnet-0aaa..., subnet-0bbb..., subnet-0ccc...]   # private subnets, 3 AZs
  airGapped: true                  # no internet/NAT gateway; VPC endpoints for AWS APIs
  allowedApiCIDRs:                 # who may reach the API server (TCP 6443); never 0.0.0.0/0
    - 10.0.0.0/8
controlPlane:
  count: 3                         # odd: 1, 3, 5 or 7 (etcd quorum)
  instanceType: m6i.large
  volumeSizeGiB: 40
workers:
  min: 1
  max: 5
  desired: 2
  instanceTypes: [m6i.large]
  volumeSizeGiB: 40
kubernetesNetwork:
  podCIDR: 10.244.0.0/16
  serviceCIDR: 10.96.0.0/12
  cni: flannel                     # flannel | calico | cilium (manifests baked into the image)
bootstrapToken:
  ttlMinutes: 30                   # bootstrap token lifetime (15-1440); rotated at half of it
"""

# `bake init --local`: the same cluster, sized for VMs on one machine (`bake launch --local`)
LOCAL_TEXT = """\
local:                             # `bake launch --local`: this cluster as VMs on this machine
  vmMemoryMiB: 1024                # memory of each VM (ignored on AWS)
"""


def init_text(
    name: str = "demo", region: str = "us-east-1", minor: str = "1.30", local: bool = False
) -> str:
    """The commented starter ``cluster.yaml`` that ``bake init`` writes.

    Args:
        name, region, minor: values filled in (checked like the file itself).
        local: sized for ``bake launch --local``: 3 control planes and 2 workers of a small
            instance type (t3.medium), plus the ``local`` section.

    Returns:
        YAML text that ``parse_cluster`` accepts.

    Raises:
        ClusterFileError: an argument is invalid (names the field).
    """
    text = INIT_TEXT.format(name=name, region=region, minor=minor)
    if local:
        text = (text.replace("instanceType: m6i.large", "instanceType: t3.medium")
                .replace("instanceTypes: [m6i.large]", "instanceTypes: [t3.medium]")
                .replace("  min: 1\n", "  min: 2\n").replace("  max: 5\n", "  max: 2\n")
                + LOCAL_TEXT)
    parse_cluster(yaml.safe_load(text), "cluster.yaml")
    return text


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
    kn.done()
    bt = top.sub("bootstrapToken")
    token_ttl = _positive(bt, "ttlMinutes", 30, 15, 1440)
    bt.done()
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
        control_plane=NodeGroupSpec(count, count, count, (cp_type,), cp_vol),
        workers=NodeGroupSpec(wmin, wmax, wdes, tuple(types), w_vol),
        pod_cidr=pod,
        service_cidr=svc,
        cni=cni,
        bootstrap_token_ttl_minutes=token_ttl,
        local=LocalSpec(vm_memory_mib=vm_memory),
        source=source,
    )


def _architectures() -> dict[str, Any]:
    from importlib import resources

    text = resources.files("bake.data").joinpath("instance-architectures.yaml").read_text()
    return yaml.safe_load(text)


_INSTANCE_FAMILY_RE = re.compile(r"^(?P<family>[a-z]+)(?P<generation>\d+)(?P<attrs>[a-z-]*)$")


def instance_arch(instance_type: str) -> str | None:
    """The CPU architecture an EC2 instance type runs: ``"amd64"``, ``"arm64"``, or ``None``
    when it cannot be told.

    Follows the processor attribute letter of EC2's instance type naming convention (``g``:
    AWS Graviton, arm64; ``a``: AMD and ``i``: Intel, amd64; none: Intel), from the data table
    ``bake/data/instance-architectures.yaml``, which cites its source.

    Args:
        instance_type: e.g. ``"m7g.large"``.
    """
    table = _architectures()
    family = instance_type.split(".", 1)[0]
    if family in table.get("unchecked_families", ()):
        return None
    if family in table.get("exceptions", {}):
        return table["exceptions"][family]
    match = _INSTANCE_FAMILY_RE.match(family)
    if not match:
        return None
    attrs = match.group("attrs")
    for letter in attrs[:1]:
        if letter in table["processor_attributes"]:
            return table["processor_attributes"][letter]
    return table["no_processor_attribute"]


_IMAGE_PARAMETER_RE = re.compile(
    r"/(?P<minor>\d+\.\d+)/(?P<os>[^/]+)/(?P<arch>[^/]+)/image_id$"
)


def check_cluster(spec: ClusterSpec, catalog) -> list[str]:
    """Checks of a parsed cluster file against the release catalog, all run in one pass.

    Args:
        spec: the parsed cluster.
        catalog: the merged ``bake.catalog.Catalog`` (shipped plus ``--catalog`` overlays).

    Returns:
        one message per finding (empty when all pass), each naming the field: the Kubernetes
        minor must be in the catalog, and an image parameter in bake's layout
        (``<prefix>/<minor>/<os>/<arch>/image_id``) must name the cluster's minor, OS and arch.
    """
    from bake.catalog import supported_summary

    findings = []
    if spec.kubernetes_minor not in catalog.minors():
        findings.append(
            f"{spec.source}: kubernetes: {spec.kubernetes_minor} is not in the catalog; "
            f"supported: {supported_summary(catalog)}"
        )
    match = _IMAGE_PARAMETER_RE.search(spec.image_ssm_parameter)
    if match:
        for key, want in (
            ("minor", spec.kubernetes_minor),
            ("os", spec.os),
            ("arch", spec.arch),
        ):
            if match.group(key) != want:
                findings.append(
                    f"{spec.source}: image.ssmParameter: {spec.image_ssm_parameter} is the "
                    f"image of {key} {match.group(key)}, but the cluster's {key} is {want}"
                )
    return findings


def load_checked_cluster(path: Path, catalogs=()) -> ClusterSpec:
    """``load_cluster`` then ``check_cluster`` against the catalog (shipped + ``catalogs``).

    Raises:
        ClusterFileError: the file is invalid; every catalog finding in one line.
        CatalogError: an overlay is invalid.
    """
    from bake.catalog import load_catalog

    spec = load_cluster(path)
    findings = check_cluster(spec, load_catalog(catalogs))
    if findings:
        raise ClusterFileError("; ".join(findings))
    return spec


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
