"""The CNI and add-on manifests baked into the image (manifests/cni/<name>/ and
manifests/addons/<name>/: *.yaml, and *.yaml.j2 templates the agent renders with the cluster's
values and the images baked for it) are valid Kubernetes objects for every supported minor
(kubernetes-validate, strict: unknown fields fail), run only the images the catalog bakes, and
flannel's pod network is the cluster file's podCIDR."""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate
import pytest

from bake.catalog import load_catalog, resolve
from bake.cluster import CNI_NAMES
from bake_node.addons import (
    ADDONS,
    INGRESS_NGINX_NODE_PORTS,
    addon,
    cni_settings,
    manifest_context,
)
from bake_node.kubeadm import render_manifest

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
FILES = sorted([*MANIFESTS.rglob("*.yaml"), *MANIFESTS.rglob("*.yaml.j2")])


# a setting other than the default, per add-on that takes one (bake_node.addons.ADDONS)
EXAMPLE_SETTINGS = {"local-path-provisioner": {"defaultStorageClass": True},
                    "aws-ebs-csi-driver": {"defaultStorageClass": "ebs-encrypted"},
                    "cilium": {"kubeProxyReplacement": True},
                    "monitoring": {"persistentVolume": True, "retentionDays": 30},
                    "ingress-nginx": {"serviceType": "LoadBalancer"}}


def context(path: Path, minor: str = "1.31", settings=None) -> dict:
    """What the agent renders ``path`` with: the cluster's values and the images the catalog
    bakes for the file's CNI or add-on (its folder's name) at ``minor``."""
    kind, group = path.relative_to(MANIFESTS).parts[:2]
    release = resolve(load_catalog(), minor, "amd64")
    images = {i.name: i.ref for i in release.addon_images(group)}
    if kind == "addons":
        settings = addon(group).with_defaults(settings)
    else:  # what the agent passes a CNI (node.yaml kubeProxyReplacement, controlPlaneEndpoint)
        settings = {**cni_settings(kube_proxy_replacement=False,
                                   control_plane_endpoint="api.demo.internal:6443"),
                    **(settings or {})}
    return manifest_context(cluster_name="demo", region="eu-west-1", pod_cidr="10.200.0.0/16",
                            kms_key_id="alias/bake-demo", images=images, settings=settings)


def test_every_cni_has_manifests():
    """The CNIs the cluster file accepts are exactly those the image carries."""
    assert sorted(p.name for p in (MANIFESTS / "cni").iterdir() if p.is_dir()) == sorted(CNI_NAMES)
    for cni in CNI_NAMES:
        folder = MANIFESTS / "cni" / cni
        assert [*folder.glob("*.yaml"), *folder.glob("*.yaml.j2")], f"{folder} has no manifests"


@pytest.mark.parametrize("version", ["1.30.0", "1.31.0", "1.33.0"])
@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(MANIFESTS)) for p in FILES])
def test_manifest_is_valid(path, version):
    minor = version.rsplit(".", 1)[0]
    group = path.relative_to(MANIFESTS).parts[1]
    for settings in ({}, EXAMPLE_SETTINGS.get(group, {})):
        _text, docs = render_manifest(path, **context(path, minor, settings))
        assert docs
        for doc in docs:
            kubernetes_validate.validate(doc, version, strict=True)


def _images(doc) -> list[str]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return [c["image"] for key in ("containers", "initContainers") for c in spec.get(key, [])]


SETS = [("cni", name) for name in CNI_NAMES] + [("addons", a.name) for a in ADDONS]


@pytest.mark.parametrize("minor", ["1.30", "1.33", "1.36"])
@pytest.mark.parametrize(("kind", "name"), SETS, ids=[f"{k}/{n}" for k, n in SETS])
def test_each_cni_and_addon_runs_only_the_images_baked_for_it(kind, name, minor):
    """Every image a CNI's or add-on's pods (and local-path's helper pod) run is one the catalog
    bakes for it at that minor, and every baked image is used: nothing is pulled at boot."""
    import yaml

    folder = MANIFESTS / kind / name
    files = sorted(folder.glob("*.yaml.j2"))
    assert files, f"{folder} has no manifests"
    baked = {i.ref for i in resolve(load_catalog(), minor, "amd64").addon_images(name)}
    used = set()
    for path in files:
        _text, docs = render_manifest(path, **context(path, minor))
        for doc in docs:
            used.update(_images(doc))
            if doc["kind"] == "ConfigMap" and "helperPod.yaml" in doc.get("data", {}):
                used.update(_images({"spec": {"template": yaml.safe_load(
                    doc["data"]["helperPod.yaml"])}}))
    assert used == baked


@pytest.mark.parametrize(("kind", "name"), SETS, ids=[f"{k}/{n}" for k, n in SETS])
def test_image_references_come_from_the_image_manifest_only(kind, name):
    """A catalog overlay that moves an add-on to other images (or a mirror's references) reaches
    its pods: every image reference is the image manifest's (images[...]), none is written in
    the template."""
    import yaml

    folder = MANIFESTS / kind / name
    moved = {}
    for path in sorted(folder.glob("*.yaml.j2")):
        ctx = context(path)
        moved = {n: f"mirror.example/{n}:overlay" for n in ctx["images"]}
        _text, docs = render_manifest(path, **{**ctx, "images": moved})
        for doc in docs:
            used = _images(doc)
            if doc["kind"] == "ConfigMap" and "helperPod.yaml" in doc.get("data", {}):
                used += _images({"spec": {"template": yaml.safe_load(
                    doc["data"]["helperPod.yaml"])}})
            assert set(used) <= set(moved.values()), f"{path.name}: {doc['kind']} {used}"


def test_every_addon_folder_is_an_addon_bake_knows():
    """manifests/addons/<name>/ exists exactly for the add-ons of bake_node.addons, and the
    node.yaml schema accepts exactly those names."""

    from bake_node.config import load_schema

    names = sorted(a.name for a in ADDONS)
    assert sorted(p.name for p in (MANIFESTS / "addons").iterdir() if p.is_dir()) == names
    assert sorted(load_schema()["properties"]["addons"]["propertyNames"]["enum"]) == names


def test_local_path_default_storage_class_follows_the_setting():
    path = MANIFESTS / "addons/local-path-provisioner/local-path-storage.yaml.j2"
    for default in (False, True):
        _text, docs = render_manifest(path, **context(path, settings={
            "defaultStorageClass": default}))
        (sc,) = [d for d in docs if d["kind"] == "StorageClass"]
        annotations = sc["metadata"].get("annotations", {})
        assert (annotations.get("storageclass.kubernetes.io/is-default-class") == "true") \
            == default


def test_cluster_autoscaler_discovers_this_clusters_groups():
    path = MANIFESTS / "addons/cluster-autoscaler/cluster-autoscaler.yaml.j2"
    _text, docs = render_manifest(path, **context(path, "1.33"))
    (deploy,) = [d for d in docs if d["kind"] == "Deployment"]
    pod = deploy["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert ("--node-group-auto-discovery=asg:tag=k8s.io/cluster-autoscaler/enabled,"
            "k8s.io/cluster-autoscaler/demo") in container["command"]
    assert {"name": "AWS_REGION", "value": "eu-west-1"} in container["env"]
    # the control-plane instance profile through IMDSv2 at hop limit 1
    assert pod["hostNetwork"] is True
    assert pod["nodeSelector"] == {"node-role.kubernetes.io/control-plane": ""}


def test_flannel_network_is_the_cluster_pod_cidr():
    path = MANIFESTS / "cni/flannel/kube-flannel.yaml.j2"
    _text, docs = render_manifest(path, **context(path))
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    assert json.loads(cm["data"]["net-conf.json"])["Network"] == "10.200.0.0/16"
    json.loads(cm["data"]["cni-conf.json"])


def test_cilium_takes_each_nodes_pods_from_its_pod_cidr_and_waits_for_no_absent_node():
    """Cilium's IPAM is the node's spec.podCIDR (kubeadm's podSubnet, as for flannel), tunnelled
    over VXLAN; its operator runs one replica, so it is ready on the first control plane alone;
    the agent and operator run the baked images of the minor's Cilium line."""
    path = MANIFESTS / "cni/cilium/cilium.yaml.j2"
    for minor, tag in (("1.31", "v1.18.14"), ("1.36", "v1.19.4")):
        _text, docs = render_manifest(path, **context(path, minor))
        (config,) = [d for d in docs if d["kind"] == "ConfigMap"]
        assert {k: config["data"][k] for k in ("ipam", "routing-mode", "tunnel-protocol",
                                                "kube-proxy-replacement")} == {
            "ipam": "kubernetes", "routing-mode": "tunnel", "tunnel-protocol": "vxlan",
            "kube-proxy-replacement": "false"}
        (operator,) = [d for d in docs if d["kind"] == "Deployment"]
        assert operator["spec"]["replicas"] == 1
        assert operator["spec"]["template"]["spec"]["containers"][0]["image"] == \
            f"quay.io/cilium/operator-generic:{tag}"
        (agent,) = [d for d in docs if d["kind"] == "DaemonSet"]
        assert {c["image"] for c in agent["spec"]["template"]["spec"]["initContainers"]} == {
            f"quay.io/cilium/cilium:{tag}"}
        assert "KUBERNETES_SERVICE_HOST" not in json.dumps(docs)  # the Service, via kube-proxy


def test_cilium_without_kube_proxy_reaches_the_api_at_the_control_plane_endpoint():
    """kubeProxyReplacement: Cilium serves Services, and every Cilium container that talks to
    the API server before Cilium works (agent, its config and clean-state init containers, the
    operator) goes to the control-plane endpoint instead of the kubernetes Service."""
    path = MANIFESTS / "cni/cilium/cilium.yaml.j2"
    _text, docs = render_manifest(path, **context(path, "1.33", {"kubeProxyReplacement": True}))
    (config,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert config["data"]["kube-proxy-replacement"] == "true"
    endpoint = [{"name": "KUBERNETES_SERVICE_HOST", "value": "api.demo.internal"},
                {"name": "KUBERNETES_SERVICE_PORT", "value": "6443"}]
    (agent,) = [d for d in docs if d["kind"] == "DaemonSet"]
    (operator,) = [d for d in docs if d["kind"] == "Deployment"]
    pods = [agent["spec"]["template"]["spec"], operator["spec"]["template"]["spec"]]
    talks_to_api = {"cilium-agent", "config", "clean-cilium-state", "cilium-operator"}
    for pod in pods:
        for c in [*pod["containers"], *pod.get("initContainers", [])]:
            if c["name"] in talks_to_api:
                assert all(e in c["env"] for e in endpoint), c["name"]
                talks_to_api.discard(c["name"])
    assert not talks_to_api


def test_monitoring_keeps_its_data_as_asked_and_no_password_in_any_manifest():
    """Prometheus keeps retentionDays days, on an emptyDir or (persistentVolume) a claim of
    the default StorageClass; Grafana reads its admin password from the Secret the node agent
    generates (bake_node.addons: monitoring/grafana-admin), never from the manifest."""
    path = MANIFESTS / "addons/monitoring/monitoring.yaml.j2"
    for settings, volume in (({}, {"emptyDir": {}}),
                             ({"persistentVolume": True, "retentionDays": 30},
                              {"persistentVolumeClaim": {"claimName": "prometheus-data"}})):
        text, docs = render_manifest(path, **context(path, "1.31", settings))
        prometheus = next(d for d in docs if d["kind"] == "Deployment"
                          and d["metadata"]["name"] == "prometheus")
        pod = prometheus["spec"]["template"]["spec"]
        days = settings.get("retentionDays", 15)
        assert f"--storage.tsdb.retention.time={days}d" in pod["containers"][0]["args"]
        (data,) = [v for v in pod["volumes"] if v["name"] == "data"]
        assert {k: v for k, v in data.items() if k != "name"} == volume
        claims = [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
        assert len(claims) == (1 if settings else 0)
        assert not [d for d in docs if d["kind"] == "Secret"]
        grafana = next(d for d in docs if d["kind"] == "Deployment"
                       and d["metadata"]["name"] == "grafana")
        env = {e["name"]: e for e in grafana["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["GF_SECURITY_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "grafana-admin", "key": "admin-password"}
        # the kubelets' metrics with nodes/metrics, never the API server's node proxy
        (role,) = [d for d in docs if d["kind"] == "ClusterRole"
                   and d["metadata"]["name"] == "bake-monitoring-prometheus"]
        resources = {r for rule in role["rules"] for r in rule.get("resources", [])}
        assert "nodes/metrics" in resources and "nodes/proxy" not in resources
        import yaml

        config = yaml.safe_load(next(d for d in docs if d["kind"] == "ConfigMap" and d[
            "metadata"]["name"] == "prometheus-config")["data"]["prometheus.yml"])
        jobs = {j["job_name"]: j for j in config["scrape_configs"]}
        assert {"kubernetes-apiservers", "kubernetes-nodes", "kubernetes-cadvisor",
                "node-exporter", "kube-state-metrics"} <= set(jobs)
        assert "proxy" not in json.dumps(jobs)
        secret = addon("monitoring").generated[0]
        assert (secret.namespace, secret.name, secret.random) == (
            "monitoring", "grafana-admin", ("admin-password",))
        # nothing is exposed outside the cluster: every Service is a ClusterIP one
        assert {d["spec"].get("type", "ClusterIP") for d in docs if d["kind"] == "Service"} \
            == {"ClusterIP"}


def test_ingress_nginx_serves_the_default_class_on_node_ports_or_an_internal_nlb():
    """The nginx IngressClass is the default; its Service is a NodePort one on the ports the
    node security group opens (INGRESS_NGINX_NODE_PORTS), or an internal NLB (cloud-provider-aws
    annotations) that keeps client addresses; no admission webhook (CVE-2025-1974), no snippet
    annotations, and the controller passes the "restricted" Pod Security Standard."""
    path = MANIFESTS / "addons/ingress-nginx/ingress-nginx.yaml.j2"
    for service_type in ("NodePort", "LoadBalancer"):
        _text, docs = render_manifest(path, **context(path, "1.31",
                                                      {"serviceType": service_type}))
        kinds = {d["kind"] for d in docs}
        assert not kinds & {"ValidatingWebhookConfiguration", "Job"}
        (ingress_class,) = [d for d in docs if d["kind"] == "IngressClass"]
        assert ingress_class["metadata"]["annotations"] == {
            "ingressclass.kubernetes.io/is-default-class": "true"}
        (service,) = [d for d in docs if d["kind"] == "Service"]
        assert service["spec"]["type"] == service_type
        assert tuple(p["nodePort"] for p in service["spec"]["ports"]) == INGRESS_NGINX_NODE_PORTS
        annotations = service["metadata"].get("annotations", {})
        if service_type == "LoadBalancer":
            assert annotations["service.beta.kubernetes.io/aws-load-balancer-internal"] == "true"
            assert service["spec"]["externalTrafficPolicy"] == "Local"
        else:
            assert annotations == {}
        (namespace,) = [d for d in docs if d["kind"] == "Namespace"]
        assert namespace["metadata"]["labels"] == {
            "pod-security.kubernetes.io/enforce": "restricted"}
        (config,) = [d for d in docs if d["kind"] == "ConfigMap"]
        assert config["data"]["allow-snippet-annotations"] == "false"
        (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert not [a for a in container["args"] if a.startswith("--validating-webhook")]
        assert ("--publish-service=$(POD_NAMESPACE)/ingress-nginx-controller"
                in container["args"]) == (service_type == "LoadBalancer")
        security = container["securityContext"]
        assert security["capabilities"] == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
        assert security["runAsNonRoot"] and not security["allowPrivilegeEscalation"]


def test_a_template_without_its_value_fails_by_name():
    import jinja2

    with pytest.raises(jinja2.UndefinedError, match="pod_cidr"):
        render_manifest(MANIFESTS / "cni/flannel/kube-flannel.yaml.j2")


def test_ebs_volumes_are_encrypted_with_the_cluster_key_and_tagged_for_the_cluster():
    """The StorageClass is gp3, encrypted with the cluster's KMS key, the default, named by the
    setting; the controller tags every volume for the cluster (what IAM requires) and runs on
    the control planes' host network (their instance profile, IMDSv2 hop limit 1)."""
    path = MANIFESTS / "addons/aws-ebs-csi-driver/aws-ebs-csi-driver.yaml.j2"
    _text, docs = render_manifest(path, **context(path, "1.31", {"defaultStorageClass": "gp3"}))
    (sc,) = [d for d in docs if d["kind"] == "StorageClass"]
    assert sc["metadata"]["name"] == "gp3"
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    assert sc["parameters"] == {"type": "gp3", "encrypted": "true", "kmsKeyId": "alias/bake-demo",
                                "csi.storage.k8s.io/fstype": "ext4"}
    (controller,) = [d for d in docs if d["kind"] == "Deployment"]
    pod = controller["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["nodeSelector"] == {"node-role.kubernetes.io/control-plane": ""}
    plugin = next(c for c in pod["containers"] if c["name"] == "ebs-plugin")
    assert "--extra-tags=kubernetes.io/cluster/demo=owned" in plugin["args"]
