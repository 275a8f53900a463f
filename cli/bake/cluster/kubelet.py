"""``kubelet`` of a node group in the cluster file: max pods, reserved resources, eviction
thresholds, labels and taints, checked on load and handed to the node agent in node.yaml.

The rules, and where they come from:

- ``maxPods``: 10-250 (the kubelet's default is 110; Kubernetes "Considerations for large
  clusters" supports at most 110 pods per node, the EKS AMI goes to 250 with prefix delegation).
- ``kubeReserved``/``systemReserved``: resource name (``cpu``, ``memory``,
  ``ephemeral-storage``, ``pid``) -> quantity (Kubernetes "Reserve Compute Resources for
  System Daemons"). Unset ``kubeReserved`` is computed on the node as the EKS AMI does
  (``bake_node.kubelet``).
- ``evictionHard``: eviction signal (``memory.available``, ``nodefs.available``,
  ``nodefs.inodesFree``, ``imagefs.available``, ``imagefs.inodesFree``, ``pid.available``) ->
  quantity or percentage (Kubernetes "Node-pressure Eviction").
- ``labels``: Kubernetes label syntax (a DNS-subdomain prefix, a name of at most 63
  characters, a value of at most 63); the NodeRestriction admission plugin refuses labels a
  kubelet sets on itself under ``kubernetes.io/`` or ``k8s.io/`` unless they are under
  ``kubelet.kubernetes.io/`` or ``node.kubernetes.io/`` (Kubernetes "Admission Controllers",
  NodeRestriction), so those are refused here, on load, instead of at registration.
- ``taints``: ``key[=value]:Effect`` strings or ``{key, value, effect}`` mappings, effect
  ``NoSchedule``, ``PreferNoSchedule`` or ``NoExecute``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

QUANTITY_RE = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
PERCENT_RE = re.compile(r"^[0-9]{1,2}(\.[0-9]+)?%$")
RESOURCES = ("cpu", "memory", "ephemeral-storage", "pid")
EVICTION_SIGNALS = ("memory.available", "nodefs.available", "nodefs.inodesFree",
                    "imagefs.available", "imagefs.inodesFree", "pid.available")
EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_NAME = r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?"
LABEL_KEY_RE = re.compile(r"^(([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}"
                          rf"[a-z0-9])?/)?{_NAME}$")
LABEL_VALUE_RE = re.compile(rf"^({_NAME})?$")
SELF_LABEL_PREFIXES = ("kubelet.kubernetes.io/", "node.kubernetes.io/")
TAINT_RE = re.compile(r"^(?P<key>[^=:]+)(=(?P<value>[^:]*))?:(?P<effect>[A-Za-z]+)$")


@dataclass(frozen=True)
class KubeletSpec:
    """A node group's kubelet settings (``None``/empty: the default)."""

    max_pods: int | None = None
    kube_reserved: dict[str, str] | None = None
    system_reserved: dict[str, str] | None = None
    eviction_hard: dict[str, str] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, str], ...] = ()

    def node_yaml(self) -> dict[str, Any]:
        """node.yaml's ``kubelet`` mapping ({} when every setting is the default)."""
        out: dict[str, Any] = {}
        if self.max_pods is not None:
            out["maxPods"] = self.max_pods
        for key, value in (("kubeReserved", self.kube_reserved),
                           ("systemReserved", self.system_reserved),
                           ("evictionHard", self.eviction_hard)):
            if value:
                out[key] = dict(value)
        if self.labels:
            out["labels"] = dict(self.labels)
        if self.taints:
            out["taints"] = [dict(t) for t in self.taints]
        return out


def _resources(fail, where: str, value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        fail(where, "must be a mapping like {cpu: 100m, memory: 512Mi}")
    out = {}
    for name, qty in value.items():
        if name not in RESOURCES:
            fail(f"{where}.{name}", f"unknown resource (allowed: {', '.join(RESOURCES)})")
        if not QUANTITY_RE.match(str(qty)):
            fail(f"{where}.{name}", f"must be a quantity like 100m or 512Mi, got {qty!r}")
        out[name] = str(qty)
    return out


def _eviction(fail, where: str, value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        fail(where, "must be a mapping like {memory.available: 100Mi, nodefs.available: 10%}")
    out = {}
    for signal, threshold in value.items():
        if signal not in EVICTION_SIGNALS:
            fail(f"{where}.{signal}", f"unknown eviction signal (allowed: "
                                      f"{', '.join(EVICTION_SIGNALS)})")
        text = str(threshold)
        if not (QUANTITY_RE.match(text) or PERCENT_RE.match(text)):
            fail(f"{where}.{signal}", f"must be a quantity (100Mi) or a percentage (10%), got "
                                      f"{threshold!r}")
        out[signal] = text
    return out


def _labels(fail, where: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        fail(where, "must be a mapping of label: value")
    out = {}
    for key, val in value.items():
        key, val = str(key), "" if val is None else str(val)
        if not LABEL_KEY_RE.match(key) or len(key.rsplit("/", 1)[-1]) > 63:
            fail(f"{where}.{key}", "is not a Kubernetes label key (prefix/name, name of at most "
                                   "63 characters: letters, digits, '-', '_', '.')")
        prefix = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
        restricted = prefix.endswith(("kubernetes.io/", "k8s.io/"))
        if restricted and not key.startswith(SELF_LABEL_PREFIXES):
            fail(f"{where}.{key}", "a kubelet may not set labels under kubernetes.io/ or "
                                   "k8s.io/ on its node (NodeRestriction); use "
                                   "node.kubernetes.io/... or your own prefix")
        if not LABEL_VALUE_RE.match(val):
            fail(f"{where}.{key}", f"value {val!r} is not a label value (at most 63 "
                                   "characters: letters, digits, '-', '_', '.')")
        out[key] = val
    return out


def _taints(fail, where: str, value: Any) -> tuple[dict[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        fail(where, "must be a list like [dedicated=gpu:NoSchedule]")
    out = []
    for i, item in enumerate(value):
        here = f"{where}[{i}]"
        if isinstance(item, str):
            m = TAINT_RE.match(item)
            if not m:
                fail(here, f"must look like key=value:NoSchedule, got {item!r}")
            taint = {k: v for k, v in m.groupdict().items() if v is not None}
        elif isinstance(item, dict) and set(item) <= {"key", "value", "effect"}:
            taint = {k: str(v) for k, v in item.items()}
        else:
            fail(here, "must be key=value:Effect or {key, value, effect}")
        if not LABEL_KEY_RE.match(taint.get("key", "")):
            fail(here, f"key {taint.get('key')!r} is not a valid taint key")
        if taint.get("effect") not in EFFECTS:
            fail(here, f"effect must be one of {', '.join(EFFECTS)}, got "
                       f"{taint.get('effect')!r}")
        if taint.get("value") and not LABEL_VALUE_RE.match(taint["value"]):
            fail(here, f"value {taint['value']!r} is not a valid taint value")
        out.append(taint)
    return tuple(out)


def parse_kubelet(reader, group: str) -> KubeletSpec:
    """Read ``<group>.kubelet`` from a ``bake.cluster.parse`` reader of the group's mapping.

    Raises:
        ClusterFileError: a field is invalid (names it, e.g. ``workers.kubelet.maxPods``).
    """
    kr = reader.sub("kubelet")
    where = f"{group}.kubelet"

    def fail(field_path: str, message: str):
        kr.fail(field_path, message)

    max_pods = kr.get("maxPods", int, None)
    if max_pods is not None and not 10 <= max_pods <= 250:
        fail(f"{where}.maxPods", f"must be between 10 and 250, got {max_pods}")
    spec = KubeletSpec(
        max_pods=max_pods,
        kube_reserved=_resources(fail, f"{where}.kubeReserved", kr.get("kubeReserved", dict, None)),
        system_reserved=_resources(fail, f"{where}.systemReserved",
                                   kr.get("systemReserved", dict, None)),
        eviction_hard=_eviction(fail, f"{where}.evictionHard", kr.get("evictionHard", dict, None)),
        labels=_labels(fail, f"{where}.labels", kr.get("labels", dict, None)),
        taints=_taints(fail, f"{where}.taints", kr.get("taints", list, None)),
    )
    kr.done()
    return spec
