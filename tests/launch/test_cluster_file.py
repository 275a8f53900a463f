"""The cluster file: `bake init` output, validation messages that name the field, and
`bake validate` without AWS."""

from __future__ import annotations

import pytest
import yaml

from bake.cluster import ClusterFileError, init_text, parse_cluster
from bake.launch import render_cluster


def base() -> dict:
    return yaml.safe_load(init_text())


def test_init_text_is_commented_and_valid():
    text = init_text(name="lab", region="eu-central-1", minor="1.31")
    assert text.count("#") > 15
    spec = parse_cluster(yaml.safe_load(text))
    assert (spec.name, spec.region, spec.kubernetes_minor) == ("lab", "eu-central-1", "1.31")
    assert spec.image_ssm_parameter == "/bake/k8s/1.31/debian-12/amd64/image_id"
    assert spec.control_plane.desired == 3 and spec.network.air_gapped
    assert spec.addons.names() == ("metrics-server", "cluster-autoscaler")


def test_init_local_text_is_valid_with_a_fixed_worker_group():
    """`bake init --local`: two workers that do not scale, so no Cluster Autoscaler (which
    would be refused with workers.min == workers.max)."""
    spec = parse_cluster(yaml.safe_load(init_text(name="lab", local=True)))
    assert (spec.workers.min_size, spec.workers.max_size) == (2, 2)
    assert spec.addons.names() == ("metrics-server",)


def _set(doc: dict, dotted: str, value) -> dict:
    node = doc
    *parents, last = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    if value is ...:
        node.pop(last, None)
    else:
        node[last] = value
    return doc


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("apiVersion", "bake.cluster/v0", "apiVersion: must be bake.cluster/v1"),
        ("name", "Demo_1", "name: must be 2-28 chars"),
        ("name", ..., "name: is required"),
        ("region", "mars-1", "region: must be an AWS region"),
        ("kubernetes", "1.30.4", "kubernetes: must be a Kubernetes minor"),
        ("arch", "s390x", "arch: must be one of amd64, arm64"),
        (
            "controlPlane.count",
            4,
            "controlPlane.count: must be odd (1, 3, 5, 7) to keep etcd quorum, got 4",
        ),
        ("controlPlane.count", 9, "controlPlane.count: must be between 1 and 7"),
        ("controlPlane.count", "three", "controlPlane.count: must be an integer, got 'three'"),
        (
            "controlPlane.instanceType",
            "large",
            "controlPlane.instanceType: must be an EC2 instance type",
        ),
        (
            "workers.desired",
            9,
            "workers.desired: must be between workers.min (1) and workers.max (5), got 9",
        ),
        ("workers.instanceTypes", [], "workers.instanceTypes: needs at least one instance type"),
        ("network.mode", "shared", "network.mode: must be create or existing"),
        ("network.mode", "existing", "network.vpcId: mode existing needs a VPC id"),
        (
            "network.vpcId",
            "vpc-0123456789abcdef0",
            "network.vpcId: only allowed with mode: existing",
        ),
        ("network.vpcCIDR", "10.0.0.0/8", "network.vpcCIDR: prefix must be /16 to /24"),
        ("network.vpcCIDR", "10.0.0.1/16", "network.vpcCIDR: not an IPv4 CIDR"),
        (
            "network.allowedApiCIDRs",
            ["0.0.0.0/0"],
            "network.allowedApiCIDRs[0]: 0.0.0.0/0 would open the API server",
        ),
        ("network.allowedApiCIDRs", [], "network.allowedApiCIDRs: needs at least one CIDR"),
        ("network.airGapped", "yes", "network.airGapped: must be true or false, got 'yes'"),
        ("workers.min", 7, "workers.min: must not be greater than workers.max (5), got 7"),
        (
            "arch",
            "arm64",
            "controlPlane.instanceType: m6i.large runs amd64 but arch is arm64: pick a Graviton "
            "type (e.g. m7g.large) or set arch: amd64",
        ),
        (
            "workers.instanceTypes",
            ["m6i.large", "c7g.large"],
            "workers.instanceTypes[1]: c7g.large runs arm64 but arch is amd64",
        ),
        (
            "kubernetesNetwork.podCIDR",
            "10.0.128.0/17",
            "kubernetesNetwork.podCIDR: 10.0.128.0/17 overlaps network.vpcCIDR",
        ),
        (
            "kubernetesNetwork.podCIDR",
            "10.244.0.0/23",
            "kubernetesNetwork.podCIDR: 10.244.0.0/23 holds 2 node /24s (each node's pods, "
            "flannel) but the cluster can have 8 nodes (controlPlane.count + workers.max): use "
            "a larger range, e.g. /16",
        ),
        (
            "kubernetesNetwork.podCIDR",
            "10.244.0.0/25",
            "kubernetesNetwork.podCIDR: 10.244.0.0/25 holds no node /24s",
        ),
        (
            "kubernetesNetwork.serviceCIDR",
            "10.244.0.0/20",
            "overlaps kubernetesNetwork.serviceCIDR",
        ),
        (
            "kubernetesNetwork.cni",
            "weave",
            "kubernetesNetwork.cni: must be one of flannel, calico, cilium, got 'weave'",
        ),
        ("bootstrapToken.ttlMinutes", 5, "bootstrapToken.ttlMinutes: must be between 15 and "
         "1440, got 5"),
        ("bootstrapToken.ttl", "30m", "bootstrapToken.ttl: unknown field"),
        ("workers.spot", True, "workers.spot: unknown field"),
        ("extra", 1, "extra: unknown field"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 30 else None,
)
def test_invalid_field_is_named(field, value, message):
    with pytest.raises(ClusterFileError) as err:
        parse_cluster(_set(base(), field, value), "cluster.yaml")
    assert message in err.value.format_message()
    assert err.value.format_message().startswith("cluster.yaml: ")


def test_existing_vpc_needs_subnets():
    doc = _set(base(), "network.mode", "existing")
    doc["network"]["vpcId"] = "vpc-0123456789abcdef0"
    doc["network"]["subnetIds"] = ["subnet-0aaaaaaaaaaaaaaaa"]
    with pytest.raises(ClusterFileError, match="network.subnetIds: mode existing needs 2 or more"):
        parse_cluster(doc)


def test_cli_init_validate(run_bake, tmp_path):
    path = tmp_path / "cluster.yaml"
    result = run_bake("init", "-f", str(path), "--name", "lab")
    assert result.exit_code == 0 and path.exists()
    again = run_bake("init", "-f", str(path))
    assert again.exit_code == 2 and "pass --force" in again.stderr
    ok = run_bake("validate", "-f", str(path))
    assert ok.exit_code == 0, ok.stderr
    assert "ok: cluster lab in us-east-1, Kubernetes 1.30, 3 control planes" in ok.stdout
    path.write_text(path.read_text().replace("count: 3", "count: 2"))
    bad = run_bake("validate", "-f", str(path))
    assert bad.exit_code == 2
    assert bad.stderr.strip() == (
        f"bake: error: {path}: controlPlane.count: "
        "must be odd (1, 3, 5, 7) to keep etcd quorum, got 2"
    )


def test_cli_validate_reports_yaml_and_missing_file(run_bake, tmp_path):
    missing = run_bake("validate", "-f", str(tmp_path / "nope.yaml"))
    assert missing.exit_code == 2 and "create one with `bake init`" in missing.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    result = run_bake("validate", "-f", str(broken))
    assert (
        result.exit_code == 2
        and "invalid YAML" in result.stderr
        and "Traceback" not in result.stderr
    )


@pytest.mark.parametrize(
    ("kubelet", "message"),
    [
        ({"maxPods": 5}, "workers.kubelet.maxPods: must be between 10 and 250, got 5"),
        ({"kubeReserved": {"cpu": "lots"}},
         "workers.kubelet.kubeReserved.cpu: must be a quantity like 100m or 512Mi"),
        ({"systemReserved": {"gpu": "1"}},
         "workers.kubelet.systemReserved.gpu: unknown resource (allowed: cpu, memory"),
        ({"evictionHard": {"memory.free": "100Mi"}},
         "workers.kubelet.evictionHard.memory.free: unknown eviction signal"),
        ({"evictionHard": {"nodefs.available": "ten percent"}},
         "must be a quantity (100Mi) or a percentage (10%)"),
        ({"labels": {"node-role.kubernetes.io/worker": ""}},
         "workers.kubelet.labels.node-role.kubernetes.io/worker: a kubelet may not set labels "
         "under kubernetes.io/"),
        ({"labels": {"team": "a b"}}, "value 'a b' is not a label value"),
        ({"taints": ["dedicated=gpu:NoRun"]},
         "workers.kubelet.taints[0]: effect must be one of NoSchedule, PreferNoSchedule, "
         "NoExecute, got 'NoRun'"),
        ({"taints": ["just-a-key"]}, "workers.kubelet.taints[0]: must look like key=value"),
        ({"maxPod": 100}, "workers.kubelet.maxPod: unknown field"),
    ],
)
def test_invalid_kubelet_settings_are_named(kubelet, message):
    with pytest.raises(ClusterFileError) as err:
        parse_cluster(_set(base(), "workers.kubelet", kubelet), "cluster.yaml")
    assert message in str(err.value)
    assert str(err.value).startswith("cluster.yaml: ")


def test_the_commented_kubelet_example_is_valid_and_reaches_node_yaml(node_schema):
    """Uncommenting the starter file's example gives a valid file; its settings reach the
    workers' node.yaml only, which the node agent's schema accepts."""
    import jsonschema

    from bake.launch import node_config

    text = init_text()
    start = text.index("  # kubelet:")
    block = text[start:text.index("kubernetesNetwork:")]
    import re

    uncommented = re.sub(r"(?m)^  # ", "  ", block)
    spec = parse_cluster(yaml.safe_load(text.replace(block, uncommented)))
    kubelet = spec.workers.kubelet
    assert kubelet.max_pods == 110 and kubelet.labels == {"node.kubernetes.io/pool": "general"}
    assert kubelet.taints == ({"key": "dedicated", "value": "batch", "effect": "NoSchedule"},)
    worker = node_config(spec, "worker", "api.example", "bucket-1")
    jsonschema.validate(worker, node_schema)
    assert worker["kubelet"]["evictionHard"] == {"memory.available": "100Mi",
                                                 "nodefs.available": "10%"}
    assert "kubelet" not in node_config(spec, "control-plane", "api.example", "bucket-1")


def test_os_is_one_bake_bakes():
    doc = _set(base(), "os", "debian-13")
    doc["image"].pop("ssmParameter")
    spec = parse_cluster(doc, "cluster.yaml")
    assert spec.image_ssm_parameter == "/bake/k8s/1.30/debian-13/amd64/image_id"
    doc = _set(base(), "os", "ubuntu-24.04")
    doc["image"].pop("ssmParameter")
    spec = parse_cluster(doc, "cluster.yaml")
    assert spec.image_ssm_parameter == "/bake/k8s/1.30/ubuntu-24.04/amd64/image_id"
    with pytest.raises(ClusterFileError, match="cluster.yaml: os: must be one of al2023, "
                       "debian-12, debian-13, ubuntu-22.04, ubuntu-24.04, got 'windows-11'"):
        parse_cluster(_set(base(), "os", "windows-11"), "cluster.yaml")


CA = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"


@pytest.mark.parametrize(
    ("registry", "message"),
    [
        ({"mirrors": {"Docker.IO": ["https://m.example"]}},
         "registry.mirrors.Docker.IO: is not a registry host"),
        ({"mirrors": {"docker.io": []}}, "registry.mirrors.docker.io: must be a list of mirror"),
        ({"mirrors": {"docker.io": ["ftp://m.example"]}},
         "registry.mirrors.docker.io[0]: must be an https:// (or http://) URL"),
        ({"mirrors": {"docker.io": ["https://user:pw@m.example"]}},
         "registry.mirrors.docker.io[0]: must not hold credentials"),
        ({"mirrors": {"docker.io": ["https://m.example"]},
          "caBundle": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"},
         "registry.caBundle: holds a private key"),
        ({"mirrors": {"docker.io": ["https://m.example"]}, "caBundle": "not a certificate"},
         "registry.caBundle: must be PEM certificates"),
        ({"caBundle": CA}, "registry.caBundle: is set but registry.mirrors is empty"),
        ({"mirror": {}}, "registry.mirror: unknown field"),
    ],
)
def test_invalid_registry_is_named(registry, message):
    with pytest.raises(ClusterFileError) as err:
        parse_cluster(_set(base(), "registry", registry), "cluster.yaml")
    assert message in str(err.value)


def test_registry_mirrors_reach_every_node_yaml(node_schema):
    import jsonschema

    from bake.launch import node_config

    spec = parse_cluster(_set(base(), "registry", {
        "mirrors": {"docker.io": "https://m.example", "quay.io": ["https://q.example:5000"]},
        "caBundle": CA.rstrip("\n")}), "cluster.yaml")
    for role in ("control-plane", "worker"):
        node = node_config(spec, role, "api.example", "bucket-1")
        jsonschema.validate(node, node_schema)
        assert node["registry"] == {
            "mirrors": {"docker.io": ["https://m.example"], "quay.io": ["https://q.example:5000"]},
            "caBundle": CA}
    assert "registry" not in node_config(parse_cluster(base()), "worker", "api.example", "b")


def test_ecr_credential_provider_reaches_every_node_with_pull_rights_and_endpoints(node_schema):
    """registry.ecrCredentialProvider: every node.yaml carries it; both node roles may get a
    pull token and pull (or import through a pull-through cache) from this account's
    repositories in this region, nothing else; an air-gapped cluster gets the ecr.api and
    ecr.dkr interface endpoints (layers come through the S3 gateway endpoint)."""
    import jsonschema

    from bake.launch import node_config

    repositories = {"Fn::Sub": "arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:"
                               "repository/*"}
    for air_gapped in (True, False):
        data = _set(_set(base(), "registry", {"ecrCredentialProvider": True}),
                    "network.airGapped", air_gapped)
        spec = parse_cluster(data, "cluster.yaml")
        for role in ("control-plane", "worker"):
            node = node_config(spec, role, "api.example", "bucket-1")
            jsonschema.validate(node, node_schema)
            assert node["registry"] == {"ecrCredentialProvider": True}
        resources = render_cluster(spec).template_data["Resources"]
        for role in ("ControlPlaneRole", "WorkerRole"):
            statements = {s.get("Sid"): s for p in resources[role]["Properties"]["Policies"]
                          for s in p["PolicyDocument"]["Statement"]}
            assert statements["EcrAuthorizationToken"]["Action"] == ["ecr:GetAuthorizationToken"]
            pull = statements["EcrPullFromThisAccount"]
            assert pull["Resource"] == repositories
            assert all(a.startswith("ecr:") and not a.startswith(("ecr:Put", "ecr:Delete"))
                       for a in pull["Action"])
        endpoints = {r["Properties"]["ServiceName"]["Fn::Sub"].split("}.", 1)[1]
                     for r in resources.values() if r["Type"] == "AWS::EC2::VPCEndpoint"}
        assert {"ecr.api", "ecr.dkr"} <= endpoints if air_gapped else not endpoints
    plain = render_cluster(parse_cluster(base(), "cluster.yaml")).template_data["Resources"]
    assert "EndpointEcrApi" not in plain
    assert not [s for p in plain["WorkerRole"]["Properties"]["Policies"]
                for s in p["PolicyDocument"]["Statement"] if "'ecr:" in str(s.get("Action"))]
    with pytest.raises(ClusterFileError, match=r"registry.ecrCredentialProvider: must be true or "
                                               r"false, got 'yes'"):
        parse_cluster(_set(base(), "registry", {"ecrCredentialProvider": "yes"}), "cluster.yaml")


@pytest.mark.parametrize(
    ("addons", "message"),
    [
        ("metrics", "addons: must be a mapping of add-on -> true/false or settings"),
        ({"metricServer": True},
         "addons.metricServer: unknown add-on (allowed: awsCloudController, clusterAutoscaler, "
         "ebsCsi, ingressNginx, localPath, metricsServer, monitoring)"),
        ({"ingressNginx": {"serviceType": "ClusterIP"}},
         "addons.ingressNginx.serviceType: must be one of NodePort, LoadBalancer, got "
         "'ClusterIP'"),
        ({"ingressNginx": {"serviceType": "LoadBalancer"}},
         "addons.ingressNginx.serviceType: LoadBalancer needs awsCloudController: true"),
        ({"monitoring": {"retentionDays": 0}},
         "addons.monitoring.retentionDays: must be a whole number above 0, got 0"),
        ({"monitoring": {"retentionDays": "15d"}},
         "addons.monitoring.retentionDays: must be a whole number above 0, got '15d'"),
        ({"monitoring": {"retentionDays": True}},
         "addons.monitoring.retentionDays: must be a whole number above 0, got True"),
        ({"metricsServer": "yes"}, "addons.metricsServer: must be true, false or a mapping"),
        ({"localPath": {"default": True}},
         "addons.localPath.default: unknown setting (allowed: defaultStorageClass)"),
        ({"localPath": {"defaultStorageClass": "yes"}},
         "addons.localPath.defaultStorageClass: must be true or false, got 'yes'"),
        # combinations that cannot work together
        ({"ebsCsi": True}, "addons.ebsCsi: needs awsCloudController: true"),
        ({"awsCloudController": True, "ebsCsi": True, "localPath": {"defaultStorageClass": True}},
         "addons.localPath.defaultStorageClass: the EBS CSI driver's StorageClass is the default"),
        ({"awsCloudController": True, "ebsCsi": {"defaultStorageClass": "GP3"}},
         "addons.ebsCsi.defaultStorageClass: must be a Kubernetes object name"),
        ({"monitoring": {"persistentVolume": True}, "localPath": True},
         "addons.monitoring.persistentVolume: needs a default StorageClass for Prometheus's "
         "volume: ebsCsi, or localPath with defaultStorageClass: true"),
    ],
)
def test_invalid_addons_are_named(addons, message):
    with pytest.raises(ClusterFileError) as err:
        parse_cluster(_set(base(), "addons", addons), "cluster.yaml")
    assert message in str(err.value)


def test_monitoring_with_a_volume_on_the_default_storage_class():
    """Prometheus's volume is a claim of the default StorageClass: accepted with either default
    (EBS CSI's gp3, or local-path's), with the settings filled in for node.yaml."""
    for storage in ({"awsCloudController": True, "ebsCsi": True},
                    {"localPath": {"defaultStorageClass": True}}):
        spec = parse_cluster(_set(base(), "addons", {
            **storage, "monitoring": {"persistentVolume": True}}), "cluster.yaml")
        assert spec.addons.node_yaml()["monitoring"] == {"persistentVolume": True,
                                                         "retentionDays": 15}
        assert spec.addons.names()[-1] == "monitoring"


def test_ingress_nginx_on_node_ports_or_an_internal_load_balancer():
    """NodePort (the default) opens 30080/30443 to the VPC in the node security group;
    LoadBalancer leaves the rules to the cloud controller, which it needs."""
    for addons, service_type, rules in (
            ({"ingressNginx": True}, "NodePort", {30080, 30443}),
            ({"ingressNginx": {"serviceType": "LoadBalancer"}, "awsCloudController": True},
             "LoadBalancer", set())):
        spec = parse_cluster(_set(base(), "addons", addons), "cluster.yaml")
        assert spec.addons.node_yaml()["ingress-nginx"] == {"serviceType": service_type}
        template = render_cluster(spec).template_data
        opened = {r["Properties"]["FromPort"]: r["Properties"]
                  for r in template["Resources"].values()
                  if r["Type"] == "AWS::EC2::SecurityGroupIngress"
                  and r["Properties"].get("CidrIp") == spec.network.vpc_cidr}
        assert set(opened) == rules
        assert all(p["ToPort"] == p["FromPort"] and p["IpProtocol"] == "tcp"
                   for p in opened.values())


def test_the_autoscaler_needs_room_to_scale():
    data = _set(_set(base(), "workers.min", 2), "workers.max", 2)
    data = _set(_set(data, "workers.desired", 2), "addons", {"clusterAutoscaler": True})
    with pytest.raises(ClusterFileError, match="addons.clusterAutoscaler: workers.min and "
                                               "workers.max are both 2, so there is nothing"):
        parse_cluster(data, "cluster.yaml")


def test_addons_reach_the_control_planes_node_yaml_in_apply_order(node_schema):
    """Only control planes get ``addons`` (the one that runs init applies them), storage before
    the rest, every setting filled in; the starter file's choice is what `bake init` says."""
    import jsonschema

    from bake.launch import node_config

    spec = parse_cluster(_set(base(), "addons", {
        "clusterAutoscaler": True, "metricsServer": True,
        "localPath": {"defaultStorageClass": True}}), "cluster.yaml")
    assert spec.addons.names() == ("local-path-provisioner", "metrics-server",
                                   "cluster-autoscaler")
    node = node_config(spec, "control-plane", "api.example", "bucket-1")
    jsonschema.validate(node, node_schema)
    assert node["addons"] == {"local-path-provisioner": {"defaultStorageClass": True},
                              "metrics-server": {}, "cluster-autoscaler": {}}
    assert "addons" not in node_config(spec, "worker", "api.example", "bucket-1")
    off = parse_cluster(_set(base(), "addons", {"metricsServer": False}), "cluster.yaml")
    assert off.addons.names() == ()
    assert "addons" not in node_config(off, "control-plane", "api.example", "bucket-1")
    assert parse_cluster(base()).addons.names() == ("metrics-server", "cluster-autoscaler")


def test_an_addon_the_catalog_does_not_bake_is_named():
    """A minor whose catalog entry pins no such add-on (an overlay's new minor) is refused at
    validate, naming the field, not at boot."""
    from bake.catalog import load_catalog
    from bake.cluster.check import check_cluster

    catalog = load_catalog()
    spec = parse_cluster(base(), "cluster.yaml")
    assert check_cluster(spec, catalog) == []
    del catalog.data["kubernetes"][spec.kubernetes_minor]["addons"]["metrics-server"]
    (finding,) = check_cluster(spec, catalog)
    assert (f"addons.metricsServer: the catalog bakes no metrics-server with Kubernetes "
            f"{spec.kubernetes_minor}") in finding


def test_the_cloud_controller_makes_every_kubelet_external(node_schema):
    """addons.awsCloudController: every node's node.yaml says cloudProvider: external (kubelet
    defers node initialization to it); the control planes apply it first after the CNI."""
    import jsonschema

    from bake.launch import node_config

    spec = parse_cluster(_set(base(), "addons", {"awsCloudController": True,
                                                 "metricsServer": True}), "cluster.yaml")
    assert spec.addons.names() == ("aws-cloud-controller-manager", "metrics-server")
    for role in ("control-plane", "worker"):
        node = node_config(spec, role, "api.example", "bucket-1")
        jsonschema.validate(node, node_schema)
        assert node["cloudProvider"] == "external"
    assert "cloudProvider" not in node_config(parse_cluster(base()), "worker", "api.example", "b")


def test_cilium_kube_proxy_replacement_reaches_the_control_planes_node_yaml(node_schema):
    """kubernetesNetwork.kubeProxyReplacement with cni: cilium: the control planes' node.yaml
    says so (the one that runs kubeadm init skips kube-proxy and renders Cilium with it);
    workers join as always. With flannel it is refused by name."""
    import jsonschema

    from bake.launch import node_config

    doc = _set(_set(base(), "kubernetesNetwork.cni", "cilium"),
               "kubernetesNetwork.kubeProxyReplacement", True)
    spec = parse_cluster(doc, "cluster.yaml")
    assert (spec.cni, spec.kube_proxy_replacement) == ("cilium", True)
    control_plane = node_config(spec, "control-plane", "api.example", "bucket-1")
    worker = node_config(spec, "worker", "api.example", "bucket-1")
    for node in (control_plane, worker):
        jsonschema.validate(node, node_schema)
        assert node["cni"] == "cilium"
    assert control_plane["kubeProxyReplacement"] is True
    assert "kubeProxyReplacement" not in worker
    with pytest.raises(ClusterFileError) as err:
        parse_cluster(_set(base(), "kubernetesNetwork.kubeProxyReplacement", True), "c.yaml")
    assert ("kubernetesNetwork.kubeProxyReplacement: needs cni: cilium (flannel relies on "
            "kube-proxy for Services)") in err.value.format_message()


def test_ebs_csi_with_the_cloud_controller_is_applied_after_it():
    spec = parse_cluster(_set(base(), "addons", {
        "ebsCsi": {"defaultStorageClass": "ebs-gp3"}, "awsCloudController": True,
        "localPath": True}), "cluster.yaml")
    assert spec.addons.names() == ("aws-cloud-controller-manager", "aws-ebs-csi-driver",
                                   "local-path-provisioner")
    assert spec.addons.node_yaml()["aws-ebs-csi-driver"] == {"defaultStorageClass": "ebs-gp3"}
