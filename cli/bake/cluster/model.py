"""The cluster file's model: ``ClusterSpec`` and its parts as frozen dataclasses, the field
patterns and the names derived from a cluster (stack, SSM prefix, lock table, KMS alias)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from bake.cluster.addons import AddonsSpec
from bake.cluster.kubelet import KubeletSpec
from bake.cluster.registry import RegistrySpec
from bake.errors import UsageError

API_VERSION = "bake.cluster/v1"


NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,26}[a-z0-9]$")


REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]+$")


MINOR_RE = re.compile(r"^1\.[0-9]{2}$")


SSM_RE = re.compile(r"^(/[A-Za-z0-9_.-]+)+$")


INSTANCE_TYPE_RE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")


VPC_ID_RE = re.compile(r"^vpc-[0-9a-f]{8,17}$")


SUBNET_ID_RE = re.compile(r"^subnet-[0-9a-f]{8,17}$")


# the CNIs whose manifests the image carries (manifests/cni/<name>/; a test holds them equal)
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
        kubelet: max pods, reserved resources, eviction, labels, taints (``KubeletSpec``).
    """

    min_size: int
    max_size: int
    desired: int
    instance_types: tuple[str, ...]
    volume_size_gib: int = 40
    kubelet: KubeletSpec = field(default_factory=KubeletSpec)


@dataclass(frozen=True)
class LocalSpec:
    """Settings of the cluster as local VMs (``bake launch --local``); ignored on AWS.

    Attributes:
        vm_memory_mib: memory of each VM, MiB (measured: the default boots a node reliably
            under software emulation; bench/local_cluster.py prints the peak).
    """

    vm_memory_mib: int = 1024


SNAPSHOT_PREFIX = "etcd-snapshots/"


@dataclass(frozen=True)
class EtcdSnapshotSpec:
    """The control planes' etcd snapshots (``etcdSnapshots`` of the cluster file).

    Attributes:
        enabled: take snapshots (an S3 bucket in the stack, a timer on every control plane).
        interval_minutes: minutes between snapshots of the cluster (5-1440; one control plane
            takes each, under the ``etcd-snapshot`` lease).
        keep_hourly_hours: hours during which the newest snapshot of each hour is kept.
        keep_daily_days: days during which the newest snapshot of each day is kept.
    """

    enabled: bool = True
    interval_minutes: int = 30
    keep_hourly_hours: int = 48
    keep_daily_days: int = 30


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
        cni: the CNI manifest set baked into the image (``flannel``, ``calico`` or
            ``cilium``).
        kube_proxy_replacement: Cilium serves Services and kubeadm installs no kube-proxy.
        etcd_snapshots: ``EtcdSnapshotSpec``.
        cert_renew_before_days: control planes renew their kubeadm certificates (one year)
            when the earliest expires within this many days (``certificates.renewBeforeDays``,
            7-300).
        registry: mirrors of upstream registries and their CA (``RegistrySpec``).
        addons: the add-ons applied after the CNI, with their settings (``AddonsSpec``).
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
    kube_proxy_replacement: bool = False
    bootstrap_token_ttl_minutes: int = 30
    local: LocalSpec = field(default_factory=LocalSpec)
    etcd_snapshots: EtcdSnapshotSpec = field(default_factory=EtcdSnapshotSpec)
    cert_renew_before_days: int = 90
    registry: RegistrySpec = field(default_factory=RegistrySpec)
    addons: AddonsSpec = field(default_factory=AddonsSpec)
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
