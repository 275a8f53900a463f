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
