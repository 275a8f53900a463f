"""The CNI and add-on manifests baked into the image (manifests/cni/<name>/*.yaml, and
*.yaml.j2 templates the agent renders with the cluster's values) are valid Kubernetes objects
for every supported minor (kubernetes-validate, strict: unknown fields fail), and flannel's pod
network is the cluster file's podCIDR."""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate
import pytest

from bake.cluster import CNI_NAMES
from bake_node.kubeadm import render_manifest

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
FILES = sorted([*MANIFESTS.rglob("*.yaml"), *MANIFESTS.rglob("*.yaml.j2")])
CONTEXT = {"pod_cidr": "10.200.0.0/16"}  # what the agent passes (node.yaml's podCIDR)


def test_every_cni_has_manifests():
    """The CNIs the cluster file accepts are exactly those the image carries."""
    assert sorted(p.name for p in (MANIFESTS / "cni").iterdir() if p.is_dir()) == sorted(CNI_NAMES)
    for cni in CNI_NAMES:
        folder = MANIFESTS / "cni" / cni
        assert [*folder.glob("*.yaml"), *folder.glob("*.yaml.j2")], f"{folder} has no manifests"


@pytest.mark.parametrize("version", ["1.30.0", "1.31.0", "1.33.0"])
@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(MANIFESTS)) for p in FILES])
def test_manifest_is_valid(path, version):
    _text, docs = render_manifest(path, **CONTEXT)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_flannel_network_is_the_cluster_pod_cidr():
    _text, docs = render_manifest(MANIFESTS / "cni/flannel/kube-flannel.yaml.j2", **CONTEXT)
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    assert json.loads(cm["data"]["net-conf.json"])["Network"] == "10.200.0.0/16"
    json.loads(cm["data"]["cni-conf.json"])


def test_a_template_without_its_value_fails_by_name():
    import jinja2

    with pytest.raises(jinja2.UndefinedError, match="pod_cidr"):
        render_manifest(MANIFESTS / "cni/flannel/kube-flannel.yaml.j2")
