"""``addons`` of the cluster file: which add-ons the node that runs ``kubeadm init`` applies after
the CNI, with their settings, checked on load and handed to the nodes in node.yaml.

```yaml
addons:
  awsCloudController: true
  ebsCsi: {defaultStorageClass: gp3}   # needs awsCloudController
  metricsServer: true
  localPath: true                  # {defaultStorageClass: true} without ebsCsi
  clusterAutoscaler: true          # needs workers.max above workers.min
  monitoring: {retentionDays: 15, persistentVolume: true}   # the volume needs a default
                                                            # StorageClass
  ingressNginx: {serviceType: NodePort}   # or LoadBalancer (needs awsCloudController)
```

The add-ons themselves (names, cluster-file keys, settings, apply order) are
``bake_node.addons.ADDONS``, shared with the node agent; their images are baked by ``bake ami``
(``--addons``, every one by default) and their manifests are ``manifests/addons/<name>/``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from bake_node.addons import ADDONS, AddonInfo


@dataclass(frozen=True)
class AddonsSpec:
    """The enabled add-ons: ``((name, ((setting, value), ...)), ...)`` in apply order, every
    setting present (defaults filled in); hashable, as the cluster spec is frozen."""

    enabled: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()

    def names(self) -> tuple[str, ...]:
        """The enabled add-ons' names, in apply order."""
        return tuple(name for name, _ in self.enabled)

    def has(self, name: str) -> bool:
        """True when the add-on ``name`` (``cluster-autoscaler``) is enabled."""
        return name in self.names()

    def settings(self, name: str) -> dict[str, Any]:
        """The settings of the enabled add-on ``name`` (defaults filled in); ``{}`` when off."""
        return dict(dict(self.enabled).get(name, ()))

    def node_yaml(self) -> dict[str, dict[str, Any]]:
        """node.yaml's ``addons`` mapping: name -> settings ({} when none is enabled)."""
        return {name: dict(settings) for name, settings in self.enabled}


_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")  # a DNS-1123 label


def _by_key() -> dict[str, AddonInfo]:
    return {info.key: info for info in ADDONS}


def parse_addons(data: Any, fail: Callable[[str, str], NoReturn], workers_min: int,
                 workers_max: int) -> AddonsSpec:
    """Validate the cluster file's ``addons`` mapping.

    Args:
        data: the parsed ``addons`` value (``None`` when absent: no add-on).
        fail: raises the cluster file's error for a field (``where``, ``message``), as the
            parser's reader does.
        workers_min, workers_max: the worker group's bounds (the autoscaler needs room).
    Returns:
        the ``AddonsSpec``.
    Raises:
        ClusterFileError: one line naming the field: not a mapping, an unknown add-on, a
            value that is not true/false or a settings mapping, an unknown or mistyped setting
            or choice, or a combination that cannot work.
    """
    if data is None:
        return AddonsSpec()
    if not isinstance(data, dict):
        fail("addons", f"must be a mapping of add-on -> true/false or settings, got {data!r}")
    known = _by_key()
    enabled = {}
    for key, value in data.items():
        where = f"addons.{key}"
        if key not in known:
            fail(where, f"unknown add-on (allowed: {', '.join(sorted(known))})")
        info = known[key]
        if value is None or value is False:
            continue
        if value is True:
            value = {}
        if not isinstance(value, dict):
            fail(where, f"must be true, false or a mapping of settings, got {value!r}")
        for setting, given in value.items():
            if setting not in info.settings:
                allowed = ", ".join(sorted(info.settings)) or "none"
                fail(f"{where}.{setting}", f"unknown setting (allowed: {allowed})")
            kind, _default = info.settings[setting]
            if not isinstance(given, kind) or (kind is int and (isinstance(given, bool)
                                                                 or given < 1)):
                want = {bool: "true or false", int: "a whole number above 0"}.get(
                    kind, kind.__name__)
                fail(f"{where}.{setting}", f"must be {want}, got {given!r}")
            if setting in info.choices:
                if given not in info.choices[setting]:
                    fail(f"{where}.{setting}",
                         f"must be one of {', '.join(info.choices[setting])}, got {given!r}")
            elif kind is str and not _NAME_RE.match(given):
                fail(f"{where}.{setting}", f"must be a Kubernetes object name ([a-z0-9-], at "
                                           f"most 63), got {given!r}")
        enabled[info.name] = info.with_defaults(value)
    if "aws-ebs-csi-driver" in enabled and "aws-cloud-controller-manager" not in enabled:
        fail("addons.ebsCsi", "needs awsCloudController: true (its node plugin reads the "
                              "instance and zone from the Node the cloud controller initializes)")
    local_path_default = enabled.get("local-path-provisioner", {}).get("defaultStorageClass")
    if "aws-ebs-csi-driver" in enabled and local_path_default:
        fail("addons.localPath.defaultStorageClass",
             "the EBS CSI driver's StorageClass is the default already: one default only")
    if (enabled.get("monitoring", {}).get("persistentVolume")
            and "aws-ebs-csi-driver" not in enabled and not local_path_default):
        fail("addons.monitoring.persistentVolume",
             "needs a default StorageClass for Prometheus's volume: ebsCsi, or localPath with "
             "defaultStorageClass: true")
    if (enabled.get("ingress-nginx", {}).get("serviceType") == "LoadBalancer"
            and "aws-cloud-controller-manager" not in enabled):
        fail("addons.ingressNginx.serviceType",
             "LoadBalancer needs awsCloudController: true (the cloud controller creates the "
             "load balancer), or use NodePort")
    if "cluster-autoscaler" in enabled and workers_max <= workers_min:
        fail("addons.clusterAutoscaler",
             f"workers.min and workers.max are both {workers_min}, so there is nothing to "
             "scale: raise workers.max or turn the autoscaler off")
    return AddonsSpec(tuple(
        (info.name, tuple(sorted(enabled[info.name].items())))
        for info in ADDONS if info.name in enabled))
