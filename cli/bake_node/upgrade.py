"""Upgrades by node replacement, on the node side: what a control plane of a newer image does
before ``kubeadm join``, and what ``bake upgrade`` asks a control plane to do through SSM Run
Command (drain a node, delete a Node object, update kube-proxy and CoreDNS).

Sources of the steps:

- ``kubeadm join --control-plane`` writes the static pods at the ``kubernetesVersion`` of the
  cluster's ClusterConfiguration (ConfigMap ``kube-system/kubeadm-config``), not at its own, and
  its preflight check ``KubeletVersion`` fails when the kubelet's minor is higher than that
  version ("the kubelet version is higher than the control plane version"; kubeadm
  ``preflight/checks.go``). A node of a newer image therefore raises that version first.
- Cluster API's KubeadmControlPlane does the same before it scales up a machine of the new
  version: ``upgradeControlPlane`` (controlplane/kubeadm/internal/controllers/upgrade.go)
  calls ``UpdateKubernetesVersionInKubeadmConfigMap`` and only then ``scaleUpControlPlane``.
  The ``kubelet-config`` ConfigMap has carried no version in its name since Kubernetes 1.24
  (kubeadm's UnversionedKubeletConfigMap), so it needs no copy for the new minor.
- After the rollout, once no control-plane machine needs one, KCP's ``reconcile`` updates the
  kube-proxy DaemonSet's image (``UpdateKubeProxyImageInfo``) and CoreDNS
  (``UpdateCoreDNS``). The version skew policy says why only then: kube-proxy must not be
  newer than any kube-apiserver (kubernetes.io/releases/version-skew-policy).
- Node replacement drains the old node first (``kubectl drain --ignore-daemonsets
  --delete-emptydir-data``, bounded by ``--timeout``; Cluster API's Machine controller drains
  before it deletes a machine) and deletes its Node object after the instance is gone.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bake_node.errors import ConfigError, NodeError

log = logging.getLogger("bake_node")
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
ADDONS = (("daemonset", "kube-proxy", "kube-proxy"), ("deployment", "coredns", "coredns"))
_VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)")


class SkewError(NodeError):
    """This node's Kubernetes version cannot join the cluster's (the message says why)."""


def parse_version(text: str) -> tuple[int, int, int]:
    """``(major, minor, patch)`` of ``v1.31.2`` or ``1.31.2``.

    Raises:
        ConfigError: not a Kubernetes version.
    """
    m = _VERSION_RE.match(str(text).strip())
    if not m:
        raise ConfigError(f"{text!r} is not a Kubernetes version like v1.31.2")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def join_action(cluster_version: str, mine: str) -> str:
    """What a control plane at ``mine`` must do to join a cluster at ``cluster_version``.

    Returns:
        ``"same"`` (equal versions) or ``"raise"`` (``mine`` is a newer patch of the same minor
        or of the next minor: the ClusterConfiguration goes to ``mine`` first; kubeadm would
        otherwise write static pods of images this image does not hold).

    Raises:
        SkewError: ``mine`` is older than the cluster (the image is stale: a control plane never
            goes back), or more than one minor newer (the version skew policy allows one).
    """
    have, want = parse_version(cluster_version), parse_version(mine)
    if want == have:
        return "same"
    if want < have:
        raise SkewError(
            f"this image is Kubernetes {mine} but the cluster runs {cluster_version}: a control "
            "plane never joins at an older version; the launch template names a stale image "
            "(`bake upgrade` sets the new one)")
    if want[0] != have[0] or want[1] - have[1] > 1:
        raise SkewError(
            f"this image is Kubernetes {mine} but the cluster runs {cluster_version}: control "
            "planes may differ by one minor at most (version skew policy); upgrade one minor at "
            "a time")
    return "raise"


class ClusterApi:
    """kubectl calls with one kubeconfig, through ``bake_node.kubeadm.Kubeadm.run_kubectl``.

    Args:
        kubeadm: the ``Kubeadm`` adapter (its calls are recorded and timed).
        kubeconfig: path of the kubeconfig to use.
    """

    def __init__(self, kubeadm, kubeconfig: str | Path):
        self.k = kubeadm
        self.kubeconfig = str(kubeconfig)

    def run(self, *args: str, timeout: float = 900.0) -> str:
        """``kubectl --kubeconfig <file> <args>``; returns stdout."""
        return self.k.run_kubectl(list(args), self.kubeconfig, timeout=timeout)

    def get(self, kind: str, name: str, namespace: str = "kube-system") -> dict[str, Any]:
        """One object as JSON (``kubectl get <kind> <name> -n <ns> -o json``)."""
        return json.loads(self.run("get", kind, name, "-n", namespace, "-o", "json"))

    def replace(self, obj: dict[str, Any], scratch: Path) -> None:
        """``kubectl replace -f <file>``: the whole object, with its ``resourceVersion`` (the
        API server refuses it when someone changed the object since it was read)."""
        path = scratch / f"{obj['kind'].lower()}-{obj['metadata']['name']}.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f)
        try:
            self.run("replace", "-f", str(path))
        finally:
            path.unlink(missing_ok=True)

    def nodes(self) -> list[dict[str, Any]]:
        """``kubectl get nodes -o json`` items."""
        return json.loads(self.run("get", "nodes", "-o", "json")).get("items", [])


def cluster_configuration(api: ClusterApi) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(kubeadm-config ConfigMap, its parsed ClusterConfiguration)``.

    Raises:
        NodeError: the ConfigMap has no ClusterConfiguration.
    """
    cm = api.get("configmap", "kubeadm-config")
    text = (cm.get("data") or {}).get("ClusterConfiguration")
    if not text:
        raise NodeError("kube-system/kubeadm-config has no ClusterConfiguration")
    return cm, yaml.safe_load(text)


def raise_cluster_version(api: ClusterApi, mine: str, scratch: Path) -> str | None:
    """Before this control plane's ``kubeadm join``: set the ClusterConfiguration's
    ``kubernetesVersion`` to ``mine`` when ``join_action`` says ``raise``.

    Args:
        api: kubectl with the cluster's admin kubeconfig.
        mine: this image's Kubernetes version (``1.31.4``).
        scratch: a private directory for the replaced object's file.

    Returns:
        the cluster's version before (``v1.30.12``) when it was raised, else ``None``.

    Raises:
        SkewError: see ``join_action``; KubeadmError: a kubectl call failed.
    """
    cm, cluster = cluster_configuration(api)
    current = str(cluster.get("kubernetesVersion", ""))
    if join_action(current, mine) == "same":
        return None
    cluster["kubernetesVersion"] = "v" + mine.lstrip("v")
    cm["data"]["ClusterConfiguration"] = yaml.safe_dump(cluster, sort_keys=False)
    api.replace(cm, scratch)
    log.warning("cluster version raised from %s to v%s in kube-system/kubeadm-config before "
                "this control plane's join", current, mine.lstrip("v"))
    return current


def image_refs(image_manifest: Path) -> dict[str, str]:
    """``{image name: reference}`` of this image's baked images
    (``/etc/bake/image-manifest.json``, ``images[].name``/``ref``)."""
    try:
        data = json.loads(Path(image_manifest).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {image_manifest}: {exc}") from None
    return {i["name"]: i["ref"] for i in data.get("images", []) if i.get("ref")}


def upgrade_addons(api: ClusterApi, mine: str, refs: dict[str, str],
                   without_kube_proxy: bool = False) -> list[str]:
    """After the last control plane of a roll: kube-proxy and CoreDNS at this image's images,
    once every control-plane Node runs ``mine`` (kube-proxy is never newer than an API server).

    Args:
        api: kubectl with the admin kubeconfig; mine: this node's version.
        refs: ``image_refs`` of this image.
        without_kube_proxy: node.yaml ``kubeProxyReplacement``: the cluster has no kube-proxy
            (Cilium serves Services), so only CoreDNS follows.

    Returns:
        one line per object changed (``[]`` when both were current).

    Raises:
        NodeError: a control-plane Node runs another version, or the image has no
            kube-proxy/coredns reference; KubeadmError: a kubectl call failed.
    """
    want = "v" + mine.lstrip("v")
    behind = [f"{n['metadata']['name']} ({n['status']['nodeInfo'].get('kubeletVersion')})"
              for n in api.nodes() if CONTROL_PLANE_LABEL in n["metadata"].get("labels", {})
              and n["status"]["nodeInfo"].get("kubeletVersion") != want]
    if behind:
        raise NodeError(f"control planes not at {want} yet: {', '.join(behind)}; kube-proxy and "
                        "CoreDNS follow once every control plane is replaced")
    changed = []
    for kind, name, container in ADDONS:
        if without_kube_proxy and name == "kube-proxy":
            continue
        ref = refs.get(name)
        if not ref:
            raise NodeError(f"this image has no {name} image in its manifest")
        obj = api.get(kind, name)
        current = next((c["image"] for c in obj["spec"]["template"]["spec"]["containers"]
                        if c["name"] == container), None)
        if current == ref:
            continue
        api.run("set", "image", f"{kind}/{name}", f"{container}={ref}", "-n", "kube-system")
        changed.append(f"{kind}/{name}: {current} -> {ref}")
    return changed


def drain(api: ClusterApi, node: str, timeout_s: int) -> str:
    """Cordon and drain ``node`` (``kubectl drain --ignore-daemonsets --delete-emptydir-data
    --timeout=<s>s``: evictions honour PodDisruptionBudgets; past the timeout kubectl fails and
    so does this). Returns kubectl's output."""
    return api.run("drain", node, "--ignore-daemonsets", "--delete-emptydir-data",
                   f"--timeout={int(timeout_s)}s", timeout=timeout_s + 60)


def delete_node(api: ClusterApi, node: str) -> str:
    """``kubectl delete node <node> --ignore-not-found`` (after its instance is gone)."""
    return api.run("delete", "node", node, "--ignore-not-found")


def remove_member(etcd, name: str, keep: str | None = None) -> str:
    """Before a control plane is terminated: remove its etcd member (named after its Node),
    leadership first moved away from it, the way Cluster API's KubeadmControlPlane scales
    down (``scaleDownControlPlane``: ``ForwardEtcdLeadership``, then
    ``RemoveEtcdMemberForMachine``), so that etcd never waits on a member that is going away.
    The lifecycle hook's cleanup then finds nothing left to remove.

    Args:
        etcd: ``bake_node.etcd.EtcdCtl`` pointed at this control plane's member.
        name: the member (Node) name; keep: the member name to hand leadership to (default:
            any other healthy voter).

    Returns:
        one line: what was done.

    Raises:
        NodeError: removing it would leave fewer healthy voters than the quorum of the rest
            (etcd FAQ: n members need floor(n/2)+1).
    """
    members = etcd.members()
    target = next((m for m in members if m.name == name), None)
    if target is None:
        return f"etcd member {name}: already removed"
    rest = [m for m in members if m.id != target.id and not m.is_learner]
    healthy = [m for m in rest if etcd.healthy(m)]
    if len(healthy) < len(rest) // 2 + 1:
        raise NodeError(f"etcd member {name} not removed: only {len(healthy)} of the other "
                        f"{len(rest)} voting members are healthy (quorum {len(rest) // 2 + 1})")
    moved = ""
    if etcd.healthy(target) and etcd.leader(target) == target.id and healthy:
        to = next((m for m in healthy if m.name == keep), healthy[0])
        _retrying(lambda: etcd.move_leader(target, to.id))
        moved = f"leadership moved to {to.name or to.id}; "
    _retrying(lambda: etcd.remove(target.id))
    return f"etcd member {name} ({target.id}) removed; {moved}{len(rest)} members left"


def _retrying(step, timeout_s: float = 60.0) -> None:
    """Run ``step`` until etcd accepts it: etcd refuses a membership change ("etcdserver:
    unhealthy cluster") until every member has been connected for a few seconds (its
    strict reconfiguration check), e.g. right after a join; kubeadm's etcd client retries with
    backoff, so does this, for up to ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return step()
        except NodeError as exc:
            if "unhealthy cluster" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(2.0)


def scratch_dir(state_dir: Path) -> Path:
    """A private (0700) temporary directory under the agent's state directory."""
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="upgrade-", dir=state_dir))
