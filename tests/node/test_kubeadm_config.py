"""kubeadm configuration rendering: v1beta3 for 1.30, v1beta4 for 1.31+, endpoint in certSANs.

Golden files in tests/node/golden/ (``tests.support.golden``; ``make golden`` regenerates them);
a mismatch shows a unified diff.
"""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest

from bake_node.kubeadm import api_version, new_certificate_key, new_token, render_config

GOLDEN = Path(__file__).parent / "golden"
COMMON = {
    "node_name": "cp-1",
    "advertise_address": "10.0.1.10",
    "control_plane_endpoint": "demo-api.elb.us-east-1.amazonaws.com:6443",
}
INIT = {
    "cluster_name": "demo",
    "pod_cidr": "10.244.0.0/16",
    "service_cidr": "10.96.0.0/12",
    "cert_sans": ["10.0.1.10", "cp-1", "demo-api.elb.us-east-1.amazonaws.com"],
    "certificate_key": "ab" * 32,
    "init_token": "ghijkl.0123456789ghijkl",
    "bootstrap_token_ttl": 1800,
}
JOIN = {
    "token": "abcdef.0123456789abcdef",
    "ca_hash": "sha256:" + "0" * 64,
    "control_plane": True,
    "certificate_key": "ab" * 32,
}


@pytest.mark.parametrize("version", ["1.30.12", "1.31.4"])
@pytest.mark.parametrize("kind", ["init", "join"])
def test_golden_kubeadm_config(kind, version, golden):
    values = INIT if kind == "init" else JOIN
    text, docs = render_config(kind, version, **COMMON, **values)
    api = "kubeadm.k8s.io/" + api_version(version)
    assert {d["apiVersion"] for d in docs} == {api}
    if kind == "init":
        assert [d["kind"] for d in docs] == ["InitConfiguration", "ClusterConfiguration"]
        cluster = docs[1]
        assert "demo-api.elb.us-east-1.amazonaws.com" in cluster["apiServer"]["certSANs"]
        assert cluster["kubernetesVersion"] == "v" + version
    else:
        assert docs[0]["controlPlane"]["certificateKey"] == "ab" * 32
    golden.check(GOLDEN, {f"kubeadm-{kind}-{api_version(version)}.yaml": text})


def test_worker_join_has_no_control_plane_section():
    _text, docs = render_config("join", "1.30.1", **COMMON, **{**JOIN, "control_plane": False})
    assert "controlPlane" not in docs[0]


def test_missing_value_fails_render():
    with pytest.raises(jinja2.UndefinedError):
        render_config("init", "1.30.1", **COMMON)


def test_generated_secrets_have_kubeadm_shapes():
    import re

    assert re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", new_token())
    assert re.fullmatch(r"[0-9a-f]{64}", new_certificate_key())


@pytest.mark.parametrize(("cpus", "millicores"), [(1, 60), (2, 70), (3, 75), (4, 80), (8, 90),
                                                  (96, 310)])
def test_cpu_reserved_follows_the_eks_ami_steps(cpus, millicores):
    from bake_node.kubelet import cpu_millicores_to_reserve

    assert cpu_millicores_to_reserve(cpus) == millicores


@pytest.mark.parametrize(("max_pods", "mib"), [(29, 574), (110, 1465), (250, 3005)])
def test_memory_reserved_follows_the_eks_ami_formula(max_pods, mib):
    from bake_node.kubelet import memory_mib_to_reserve

    assert memory_mib_to_reserve(max_pods) == mib


SETTINGS = {"maxPods": 58, "systemReserved": {"cpu": "100m", "memory": "100Mi"},
            "evictionHard": {"memory.available": "200Mi"},
            "labels": {"node.kubernetes.io/pool": "batch", "team": "data"},
            "taints": [{"key": "dedicated", "value": "batch", "effect": "NoSchedule"}]}


def test_the_kubelet_patch_computes_kube_reserved_when_unset(tmp_path):
    import yaml

    from bake_node.kubelet import PATCH_FILE, KubeletSettings

    settings = KubeletSettings.from_node_yaml(SETTINGS)
    path = settings.write_patch(tmp_path / "patches", cpus=2)
    assert path.name == PATCH_FILE == "kubeletconfiguration+merge.yaml"  # kubeadm's naming
    patch = yaml.safe_load(path.read_text())
    assert patch == {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "maxPods": 58,
        "kubeReserved": {"cpu": "70m", "memory": "893Mi", "ephemeral-storage": "1Gi"},
        "systemReserved": {"cpu": "100m", "memory": "100Mi"},
        "evictionHard": {"memory.available": "200Mi"}}
    given = KubeletSettings.from_node_yaml({"kubeReserved": {"cpu": "1"}})
    assert given.configuration_patch(cpus=8)["kubeReserved"] == {"cpu": "1"}
    assert KubeletSettings().configuration_patch(cpus=1)["maxPods"] == 110


@pytest.mark.parametrize("version", ["1.30.12", "1.31.4"])
def test_golden_worker_join_with_node_settings(version, golden):
    from bake_node.kubelet import KubeletSettings

    settings = KubeletSettings.from_node_yaml(SETTINGS)
    text, docs = render_config(
        "join", version, **COMMON, **{**JOIN, "control_plane": False},
        patches_dir="/var/lib/bake-node/patches", node_labels=settings.node_labels(),
        taints=settings.registration_taints(control_plane=False))
    reg = docs[0]["nodeRegistration"]
    assert reg["taints"] == SETTINGS["taints"]
    assert docs[0]["patches"] == {"directory": "/var/lib/bake-node/patches"}
    args = reg["kubeletExtraArgs"]
    labels = (args["node-labels"] if isinstance(args, dict)
              else {a["name"]: a["value"] for a in args}["node-labels"])
    assert labels == "node.kubernetes.io/pool=batch,team=data"
    golden.check(GOLDEN, {f"kubeadm-join-worker-settings-{api_version(version)}.yaml": text})


def test_control_plane_taints_keep_the_control_plane_taint():
    from bake_node.kubelet import KubeletSettings

    settings = KubeletSettings.from_node_yaml({"taints": SETTINGS["taints"]})
    assert settings.registration_taints(control_plane=True) == [
        {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
        *SETTINGS["taints"]]
    assert KubeletSettings().registration_taints(control_plane=True) is None  # kubeadm's own


@pytest.mark.parametrize("version", ["1.30.12", "1.31.4"])
@pytest.mark.parametrize("kind", ["init", "join"])
def test_an_external_cloud_controller_sets_kubelets_cloud_provider(kind, version):
    """addons.awsCloudController: every kubelet runs with --cloud-provider=external (kubeadm
    docs, "Cloud provider integrations"), in each config API version's kubeletExtraArgs form;
    without it the flag is absent."""
    values = INIT if kind == "init" else JOIN

    def args(**extra):
        _text, docs = render_config(kind, version, **COMMON, **values, **extra)
        found = docs[0]["nodeRegistration"]["kubeletExtraArgs"]
        return found if isinstance(found, dict) else {a["name"]: a["value"] for a in found}

    assert args(cloud_provider="external")["cloud-provider"] == "external"
    assert "cloud-provider" not in args()
    # more kubelet flags (registry.ecrCredentialProvider's), in the same form
    flags = {"image-credential-provider-config": "/etc/kubernetes/icp/config.json",
             "image-credential-provider-bin-dir": "/usr/libexec/kubernetes/icp"}
    assert {k: args(kubelet_flags=flags)[k] for k in flags} == flags
    assert not set(flags) & set(args())


@pytest.mark.parametrize("version", ["1.30.12", "1.33.1"])
def test_kube_proxy_replacement_skips_kubeadms_kube_proxy_addon(version):
    """node.yaml kubeProxyReplacement (Cilium serves Services): kubeadm init skips its
    addon/kube-proxy phase (InitConfiguration skipPhases, kubeadm reference "kubeadm init
    phases"); without it kubeadm installs kube-proxy as always. Joins never install add-ons."""
    _text, docs = render_config("init", version, **COMMON, **INIT, skip_kube_proxy=True)
    assert docs[0]["kind"] == "InitConfiguration"
    assert docs[0]["skipPhases"] == ["addon/kube-proxy"]
    _text, docs = render_config("init", version, **COMMON, **INIT)
    assert "skipPhases" not in docs[0]
