"""The add-ons the node agent applies after the CNI: which exist, in what order, how their
manifest templates (``manifests/addons/<name>/*.yaml.j2``) are rendered, and which of their
objects must become ready.

Shared by the node agent (post phase, on the node that ran ``kubeadm init``) and by
``bake render addons`` (the same templates, rendered from the catalog on the user's machine), so
what a user reviews is what a node applies.

Sources: the add-ons' own documented resources (each template cites its project's page); the
order is the issue's and every peer's (kOps, Cluster API add-on orchestration): the CNI first,
then the cloud controller, then storage, then the rest, so a workload never waits for a network,
a node initialization or a volume that is applied after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bake_node.kubeadm import render_manifest_text


@dataclass(frozen=True)
class GeneratedSecret:
    """A Secret the node agent creates once, with random values, for an add-on: never in a
    manifest, user-data or log (read it with ``kubectl get secret``).

    Attributes:
        namespace, name: the Secret's.
        literals: keys with fixed values (``admin-user: admin``).
        random: keys given 32 random URL-safe characters each (``secrets.token_urlsafe(24)``).
    """

    namespace: str
    name: str
    literals: tuple[tuple[str, str], ...] = ()
    random: tuple[str, ...] = ()


@dataclass(frozen=True)
class AddonInfo:
    """One add-on bake can apply.

    Attributes:
        name: the add-on's name: its catalog key (``kubernetes.<minor>.addons``), its manifest
            folder (``manifests/addons/<name>/``) and its image component
            (``bake-addon-<name>``).
        key: its key in the cluster file's ``addons:`` section (camelCase, as Kubernetes
            fields are).
        settings: the settings it takes beyond on/off: setting -> (type, default); an ``int``
            is a positive whole number.
        description: one line for ``bake init`` and messages.
        generated: the Secrets the agent creates for it once, before its workloads are waited
            for (``GeneratedSecret``).
        choices: the allowed values of its ``str`` settings that are not object names:
            setting -> values (any other ``str`` setting must be a Kubernetes object name).
    """

    name: str
    key: str
    description: str
    settings: dict[str, tuple[type, Any]] = field(default_factory=dict)
    generated: tuple[GeneratedSecret, ...] = ()
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def with_defaults(self, given: dict[str, Any] | None = None) -> dict[str, Any]:
        """``given`` settings over this add-on's defaults (what its templates render with)."""
        return {**{k: default for k, (_t, default) in self.settings.items()}, **(given or {})}


#: Every add-on bake can apply, in the order the agent applies them (after the CNI): the cloud
#: controller first (it initializes the nodes every later pod schedules on), then storage.
ADDONS: tuple[AddonInfo, ...] = (
    AddonInfo("aws-cloud-controller-manager", "awsCloudController",
              "AWS cloud controller manager: nodes from EC2, Services of type LoadBalancer"),
    AddonInfo("aws-ebs-csi-driver", "ebsCsi",
              "EBS CSI driver and an encrypted gp3 StorageClass on the cluster's KMS key",
              {"defaultStorageClass": (str, "gp3")}),
    AddonInfo("local-path-provisioner", "localPath",
              "local-path provisioner: PersistentVolumes on the node's own disk",
              {"defaultStorageClass": (bool, False)}),
    AddonInfo("metrics-server", "metricsServer",
              "metrics-server: the metrics API for kubectl top and autoscaling"),
    AddonInfo("cluster-autoscaler", "clusterAutoscaler",
              "Cluster Autoscaler, wired to the worker group by its discovery tags"),
    AddonInfo("monitoring", "monitoring",
              "Prometheus, node-exporter, kube-state-metrics and Grafana (namespace monitoring)",
              {"retentionDays": (int, 15), "persistentVolume": (bool, False)},
              (GeneratedSecret("monitoring", "grafana-admin", (("admin-user", "admin"),),
                               ("admin-password",)),)),
    AddonInfo("ingress-nginx", "ingressNginx",
              "ingress-nginx: the nginx IngressClass, on NodePorts 30080/30443 or an internal "
              "Network Load Balancer (retired upstream in March 2026)",
              {"serviceType": (str, "NodePort")},
              choices={"serviceType": ("NodePort", "LoadBalancer")}),
)

#: ingress-nginx's NodePorts (HTTP, HTTPS): its Service's (manifests/addons/ingress-nginx/), and
#: what the cluster's node security group admits from the VPC with serviceType NodePort.
INGRESS_NGINX_NODE_PORTS = (30080, 30443)

#: The upstream files a CNI or add-on applies before its own manifests, baked by its image
#: component from the catalog (``addon_releases.<name>.<version>.files``) and listed in the image
#: manifest's ``addon_files``: Calico's CRDs (``crds``: projectcalico/calico manifests/crds.yaml,
#: which bake's manifests/cni/calico/ leaves out; Calico docs, "Install Calico networking and
#: network policy for on-premises deployments", apply it before calico.yaml).
UPSTREAM_FILES: dict[str, tuple[str, ...]] = {"calico": ("crds",)}

#: The object kinds whose rollout the agent waits for (``kubectl rollout status`` supports them).
WORKLOAD_KINDS = ("Deployment", "DaemonSet", "StatefulSet")


def addon(name: str) -> AddonInfo:
    """The ``AddonInfo`` called ``name``; ``KeyError`` if bake has no such add-on."""
    for info in ADDONS:
        if info.name == name:
            return info
    raise KeyError(name)


def ordered(enabled: dict[str, dict[str, Any]]) -> list[tuple[AddonInfo, dict[str, Any]]]:
    """The enabled add-ons in apply order, each with its settings (defaults filled in).

    Args:
        enabled: add-on name -> its settings (node.yaml ``addons``).
    Returns:
        ``[(AddonInfo, settings)]`` in ``ADDONS`` order.
    Raises:
        KeyError: an add-on bake does not know.
    """
    for name in enabled:
        addon(name)
    return [(info, info.with_defaults(enabled[info.name])) for info in ADDONS
            if info.name in enabled]


@dataclass(frozen=True)
class RenderedManifest:
    """One rendered manifest file of an add-on.

    Attributes:
        name: the file name without ``.j2`` (``metrics-server.yaml``).
        text: the rendered YAML.
        documents: its parsed, non-empty documents.
    """

    name: str
    text: str
    documents: list[dict]

    def workloads(self) -> list[tuple[str, str, str]]:
        """``[(kind, namespace, name)]`` of its Deployments, DaemonSets and StatefulSets (the
        objects whose rollout the agent waits for), in file order."""
        return [
            (d["kind"], d["metadata"].get("namespace", "default"), d["metadata"]["name"])
            for d in self.documents
            if d.get("kind") in WORKLOAD_KINDS
        ]


def render_folder(folder: Path, context: dict[str, Any]) -> list[RenderedManifest]:
    """Render every manifest of ``folder`` (``*.yaml`` as is, ``*.yaml.j2`` with ``context``)
    in name order.

    Args:
        folder: ``manifests/cni/<cni>`` or ``manifests/addons/<name>``.
        context: the template values (``manifest_context``).
    Returns:
        the rendered manifests; none for a missing folder.
    Raises:
        jinja2.UndefinedError: a template needs a value not in ``context``.
        yaml.YAMLError: a rendered file is not YAML.
    """
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yaml.j2")], key=lambda p: p.name)
    return render_templates([(p.name, p.read_text()) for p in files], context)


def render_templates(templates: list[tuple[str, str]], context: dict[str, Any]
                     ) -> list[RenderedManifest]:
    """Render ``[(file name, template text)]`` with ``context``, in the given order (a plain
    ``*.yaml`` renders to itself unless it holds Jinja2 syntax); ``render_folder``'s errors."""
    out = []
    for name, template in templates:
        text, docs = render_manifest_text(template, **context)
        out.append(RenderedManifest(name.removesuffix(".j2"), text, docs))
    return out


def cni_settings(*, kube_proxy_replacement: bool, control_plane_endpoint: str) -> dict[str, Any]:
    """The settings a CNI's templates render with (the agent's and ``bake render addons``'s).

    Args:
        kube_proxy_replacement: node.yaml ``kubeProxyReplacement``: the CNI serves Services
            because ``kubeadm init`` installed no kube-proxy (Cilium only; ``bake validate``).
        control_plane_endpoint: ``host:port`` of the API server (node.yaml
            ``controlPlaneEndpoint``): without kube-proxy the kubernetes Service's ClusterIP
            does not work before the CNI does, so Cilium reaches the API here (Cilium docs,
            "Kubernetes Without kube-proxy": k8sServiceHost and k8sServicePort).
    Returns:
        ``{"kubeProxyReplacement": bool, "apiServerHost": str, "apiServerPort": str}``.
    """
    host, port = control_plane_endpoint.rsplit(":", 1)
    return {"kubeProxyReplacement": kube_proxy_replacement, "apiServerHost": host,
            "apiServerPort": port}


def manifest_context(*, cluster_name: str, region: str, pod_cidr: str, kms_key_id: str,
                     images: dict[str, str], settings: dict[str, Any] | None = None
                     ) -> dict[str, Any]:
    """The values every CNI and add-on template is rendered with (the one place they are made).

    Args:
        cluster_name: the cluster's name (Cluster Autoscaler's discovery tag).
        region: its AWS region.
        pod_cidr: the cluster file's ``podCIDR`` (the CNI's network).
        kms_key_id: the cluster's KMS key (``alias/bake-<name>``, node.yaml ``kmsKeyId``): the
            EBS StorageClass encrypts with it (EC2 CreateVolume takes an alias).
        images: image name -> reference, of the images baked for this add-on (the image
            manifest's ``images`` of its group; ``bake render addons``: the catalog's).
        settings: the add-on's settings (``ordered``), or the CNI's (``cni_settings``); ``{}``
            for none.
    Returns:
        ``{"cluster_name", "region", "pod_cidr", "kms_key_id", "images", "settings"}``.
    """
    return {"cluster_name": cluster_name, "region": region, "pod_cidr": pod_cidr,
            "kms_key_id": kms_key_id, "images": dict(images), "settings": dict(settings or {})}
