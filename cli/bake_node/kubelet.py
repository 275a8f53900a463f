"""Per-node-group kubelet settings: max pods, reserved resources, eviction thresholds, labels
and taints, applied by kubeadm when the node registers.

- ``maxPods``, ``kubeReserved``, ``systemReserved`` and ``evictionHard`` go into a
  ``KubeletConfiguration`` merge patch, ``<patches dir>/kubeletconfiguration+merge.yaml``, that
  ``kubeadm init``/``join`` apply to this node's kubelet configuration (kubeadm docs,
  "Customizing components with the kubeadm API", patches: target ``kubeletconfiguration``,
  kubeadm >= 1.25; the Init/JoinConfiguration ``patches.directory`` field). The kubelet's
  deprecated command-line flags are not used.
- labels go to ``nodeRegistration.kubeletExtraArgs`` ``node-labels`` (the kubelet has no
  configuration field for them), taints to ``nodeRegistration.taints``.

When ``kubeReserved`` is not set, it is computed here the way the Amazon EKS AMI does
(amazon-eks-ami ``bootstrap.sh`` and nodeadm's kubelet configuration): memory
``11 * maxPods + 255`` MiB; CPU 6% of the first core, 1% of the second, 0.5% of the third and
fourth, 0.25% of every further core; ephemeral storage 1 GiB.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_MAX_PODS = 110  # the kubelet's own default (KubeletConfiguration maxPods)
CONTROL_PLANE_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
PATCH_FILE = "kubeletconfiguration+merge.yaml"


def cpu_millicores_to_reserve(cpus: int) -> int:
    """kubeReserved CPU in millicores for ``cpus`` cores (the EKS AMI's steps, see the module
    docstring): 1 core -> 60, 2 -> 70, 4 -> 80, 8 -> 90."""
    tenths = 0  # in tenths of a millicore, to stay exact
    for core in range(1, cpus + 1):
        tenths += 600 if core == 1 else 100 if core == 2 else 50 if core <= 4 else 25
    return tenths // 10


def memory_mib_to_reserve(max_pods: int) -> int:
    """kubeReserved memory in MiB for ``max_pods`` pods: ``11 * max_pods + 255`` (EKS AMI)."""
    return 11 * max_pods + 255


@dataclass(frozen=True)
class KubeletSettings:
    """``kubelet`` of node.yaml (every field optional).

    Attributes:
        max_pods: pods this node runs at most.
        kube_reserved, system_reserved: resource name -> quantity (``cpu: 100m``); None:
            kubeReserved computed (module docstring), systemReserved unset.
        eviction_hard: signal -> threshold (``memory.available: 100Mi``); None: the kubelet's.
        labels: label -> value, set at registration.
        taints: ``({key, value?, effect}, ...)``, set at registration.
    """

    max_pods: int = DEFAULT_MAX_PODS
    kube_reserved: dict[str, str] | None = None
    system_reserved: dict[str, str] | None = None
    eviction_hard: dict[str, str] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, str], ...] = ()

    @classmethod
    def from_node_yaml(cls, data: dict[str, Any] | None) -> KubeletSettings:
        """From node.yaml's ``kubelet`` mapping (schema-checked), or defaults when absent."""
        data = data or {}
        return cls(
            max_pods=data.get("maxPods", DEFAULT_MAX_PODS),
            kube_reserved=data.get("kubeReserved"),
            system_reserved=data.get("systemReserved"),
            eviction_hard=data.get("evictionHard"),
            labels=dict(data.get("labels", {})),
            taints=tuple(dict(t) for t in data.get("taints", [])),
        )

    def configuration_patch(self, cpus: int | None = None) -> dict[str, Any]:
        """The KubeletConfiguration merge patch for a node with ``cpus`` cores (default: this
        machine's)."""
        cpus = cpus or os.cpu_count() or 1
        patch: dict[str, Any] = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "maxPods": self.max_pods,
            "kubeReserved": self.kube_reserved or {
                "cpu": f"{cpu_millicores_to_reserve(cpus)}m",
                "memory": f"{memory_mib_to_reserve(self.max_pods)}Mi",
                "ephemeral-storage": "1Gi",
            },
        }
        if self.system_reserved:
            patch["systemReserved"] = dict(self.system_reserved)
        if self.eviction_hard:
            patch["evictionHard"] = dict(self.eviction_hard)
        return patch

    def node_labels(self) -> str:
        """``node-labels`` flag value: ``k=v,k=v`` sorted ('' when none)."""
        return ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))

    def registration_taints(self, control_plane: bool) -> list[dict[str, str]] | None:
        """``nodeRegistration.taints``: None keeps kubeadm's default (a control plane gets
        ``node-role.kubernetes.io/control-plane:NoSchedule``, a worker none); with taints set,
        a control plane keeps its default taint beside them (setting the field replaces
        kubeadm's default)."""
        if not self.taints:
            return None
        taints = [dict(t) for t in self.taints]
        if control_plane and not any(t["key"] == CONTROL_PLANE_TAINT["key"] for t in taints):
            taints.insert(0, dict(CONTROL_PLANE_TAINT))
        return taints

    def write_patch(self, directory: Path, cpus: int | None = None) -> Path:
        """Write the KubeletConfiguration patch into ``directory`` (created); returns the file."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / PATCH_FILE
        path.write_text(yaml.safe_dump(self.configuration_patch(cpus), sort_keys=False))
        return path
