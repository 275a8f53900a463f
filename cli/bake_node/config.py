"""The config phase's input: /etc/bake/node.yaml (``bake.node/v1``) read into ``NodeConfig``.

Validation runs in two stages, before anything touches AWS or kubeadm: the JSON schema shipped
in ``bake_node/schema/node-config.schema.json`` (the contract with ``bake launch``, see
docs/node-config.md), checked by a small built-in validator because a node has no
``jsonschema`` package; then semantic rules (CIDRs parse, pod and service CIDRs overlap neither
each other nor the VPC, the endpoint port is in 1-65535).
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from bake_node.certs import DEFAULT_RENEW_BEFORE_DAYS
from bake_node.errors import ConfigError
from bake_node.joinmaterial import DEFAULT_TOKEN_TTL
from bake_node.kubelet import KubeletSettings
from bake_node.registry import RegistrySettings
from bake_node.snapshots import SnapshotPolicy

DEFAULT_PATH = Path("/etc/bake/node.yaml")


def load_schema() -> dict[str, Any]:
    """Return the node-config JSON schema (a dict) shipped with the package."""
    text = resources.files("bake_node.schema").joinpath("node-config.schema.json").read_text()
    return json.loads(text)


_TYPES = {"object": dict, "string": str, "integer": int, "array": list, "boolean": bool}


def schema_errors(data: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """Check ``data`` against the subset of JSON schema the node config uses.

    Supports ``type``, ``required``, ``properties``, ``additionalProperties`` (``false`` or a
    schema for the other keys' values), ``propertyNames``, ``enum``, ``pattern``,
    ``minLength``, ``maxLength``, ``minimum`` and ``maximum``. Returns a list of
    one-line findings (``"<path>: <problem>"``), empty when valid. The tests check that it
    agrees with the ``jsonschema`` package on valid and invalid examples.
    """
    path = where or "node.yaml"
    expected = schema.get("type")
    if expected and (not isinstance(data, _TYPES[expected])
                     or (expected == "integer" and isinstance(data, bool))):
        article = "an" if expected[0] in "aeiou" else "a"
        return [f"{path}: must be {article} {expected}, got {type(data).__name__}"]
    errors: list[str] = []
    if "enum" in schema and data not in schema["enum"]:
        errors.append(f"{path}: must be one of {', '.join(map(str, schema['enum']))}, got {data!r}")
    if isinstance(data, str):
        if "pattern" in schema and not re.search(schema["pattern"], data):
            errors.append(f"{path}: {data!r} does not match {schema['pattern']}")
        if len(data) < schema.get("minLength", 0):
            errors.append(f"{path}: must not be empty")
        if "maxLength" in schema and len(data) > schema["maxLength"]:
            errors.append(f"{path}: longer than {schema['maxLength']} characters")
    if isinstance(data, int) and not isinstance(data, bool):
        if "minimum" in schema and data < schema["minimum"]:
            errors.append(f"{path}: must be at least {schema['minimum']}, got {data}")
        if "maximum" in schema and data > schema["maximum"]:
            errors.append(f"{path}: must be at most {schema['maximum']}, got {data}")
    if isinstance(data, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in data:
                errors.append(f"{path}: missing required field {key!r}")
        extra = schema.get("additionalProperties")
        for key, value in data.items():
            sub = f"{where}.{key}" if where else key
            if "propertyNames" in schema:
                errors.extend(schema_errors(key, schema["propertyNames"], sub))
            if key in props:
                errors.extend(schema_errors(value, props[key], sub))
            elif extra is False:
                errors.append(f"{sub}: unknown field (allowed: {', '.join(sorted(props))})")
            elif isinstance(extra, dict):
                errors.extend(schema_errors(value, extra, sub))
    return errors


@dataclass(frozen=True)
class NodeConfig:
    """A validated /etc/bake/node.yaml. Field meanings: docs/node-config.md; ``addons``: the
    enabled add-ons, ``((name, ((setting, value), ...)), ...)`` in name order (hashable);
    ``cloud_provider``: ``"external"`` when an external cloud controller initializes the nodes;
    ``kube_proxy_replacement``: the CNI (Cilium) serves Services, so ``kubeadm init`` installs no
    kube-proxy."""

    cluster_name: str
    role: str  # "control-plane" | "worker"
    region: str
    control_plane_endpoint: str  # host:port
    lock_table: str
    ssm_prefix: str
    kms_key_id: str
    pod_cidr: str
    service_cidr: str
    cni: str
    vpc_cidr: str | None = None
    kubernetes_version: str | None = None
    endpoints: dict[str, str] = field(default_factory=dict)
    bootstrap_token_ttl_s: int = int(DEFAULT_TOKEN_TTL)
    etcd_snapshots: SnapshotPolicy | None = None
    cert_renew_before_days: int = DEFAULT_RENEW_BEFORE_DAYS
    kubelet: KubeletSettings = field(default_factory=KubeletSettings)
    registry: RegistrySettings = field(default_factory=RegistrySettings)
    addons: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    cloud_provider: str | None = None
    kube_proxy_replacement: bool = False

    @property
    def endpoint_host(self) -> str:
        """The control-plane endpoint's host name (the NLB DNS name), without the port."""
        return self.control_plane_endpoint.rsplit(":", 1)[0]

    @property
    def is_control_plane(self) -> bool:
        """True for ``role: control-plane``."""
        return self.role == "control-plane"


def _semantic_errors(data: dict[str, Any]) -> list[str]:
    errors = []
    nets = {}
    for key in ("podCIDR", "serviceCIDR", "vpcCIDR"):
        if key in data:
            try:
                nets[key] = ipaddress.ip_network(data[key], strict=True)
            except ValueError as exc:
                errors.append(f"{key}: {exc} (use the network address, e.g. 10.244.0.0/16)")
    pairs = [("podCIDR", "serviceCIDR"), ("podCIDR", "vpcCIDR"), ("serviceCIDR", "vpcCIDR")]
    for a, b in pairs:
        if a in nets and b in nets and nets[a].overlaps(nets[b]):
            errors.append(
                f"{a} {nets[a]} overlaps {b} {nets[b]}: choose ranges that do not overlap"
            )
    port = int(data["controlPlaneEndpoint"].rsplit(":", 1)[1])
    if not 1 <= port <= 65535:
        errors.append(f"controlPlaneEndpoint: port {port} is outside 1-65535")
    return errors


def parse_config(data: Any, source: str = "node.yaml") -> NodeConfig:
    """Validate parsed YAML and return a ``NodeConfig``.

    Raises:
        ConfigError: one line listing every finding (schema first, then semantic rules).
    """
    errors = schema_errors(data, load_schema())
    if not errors:
        errors = _semantic_errors(data)
    if errors:
        raise ConfigError(f"{source} is invalid: " + "; ".join(errors))
    return NodeConfig(
        cluster_name=data["clusterName"],
        role=data["role"],
        region=data["region"],
        control_plane_endpoint=data["controlPlaneEndpoint"],
        lock_table=data["lockTable"],
        ssm_prefix=data["ssmPrefix"],
        kms_key_id=data["kmsKeyId"],
        pod_cidr=data["podCIDR"],
        service_cidr=data["serviceCIDR"],
        cni=data["cni"],
        vpc_cidr=data.get("vpcCIDR"),
        kubernetes_version=data.get("kubernetesVersion"),
        endpoints=dict(data.get("endpoints", {})),
        bootstrap_token_ttl_s=data.get("bootstrapTokenTTLSeconds", int(DEFAULT_TOKEN_TTL)),
        etcd_snapshots=_snapshot_policy(data.get("etcdSnapshots")),
        cert_renew_before_days=data.get("certificateRenewBeforeDays", DEFAULT_RENEW_BEFORE_DAYS),
        kubelet=KubeletSettings.from_node_yaml(data.get("kubelet")),
        registry=RegistrySettings.from_node_yaml(data.get("registry")),
        addons=tuple((name, tuple(sorted(settings.items())))
                     for name, settings in sorted(data.get("addons", {}).items())),
        cloud_provider=data.get("cloudProvider"),
        kube_proxy_replacement=data.get("kubeProxyReplacement", False),
    )


def _snapshot_policy(data: dict[str, Any] | None) -> SnapshotPolicy | None:
    """``etcdSnapshots`` as a ``SnapshotPolicy`` (defaults: every 30 min, the newest of each
    hour for 48 h and of each day for 30 days), or None when the section is absent."""
    if data is None:
        return None
    d = SnapshotPolicy(bucket=data["bucket"])
    return SnapshotPolicy(
        bucket=data["bucket"],
        prefix=data.get("prefix", d.prefix),
        interval_s=data.get("intervalMinutes", d.interval_s // 60) * 60,
        keep_hourly_h=data.get("keepHourlyHours", d.keep_hourly_h),
        keep_daily_d=data.get("keepDailyDays", d.keep_daily_d),
    )


def load_config(path: Path = DEFAULT_PATH) -> NodeConfig:
    """Read and validate the node config file at ``path``.

    Raises:
        ConfigError: the file is missing, not YAML, or invalid.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror} (user-data writes it)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text: user-data must write YAML there") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}".splitlines()[0]) from None
    return parse_config(data, str(path))
