"""The CNI and add-on manifests baked into the image (manifests/cni/<name>/*.yaml) are valid
Kubernetes objects for every supported minor (kubernetes-validate, strict: unknown fields fail),
and flannel's pod network matches node.yaml's default podCIDR."""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
FILES = sorted(p for p in MANIFESTS.rglob("*.yaml"))


def test_every_cni_has_manifests():
    assert (MANIFESTS / "cni" / "flannel").is_dir()
    for cni in (MANIFESTS / "cni").iterdir():
        assert list(cni.glob("*.yaml")), f"{cni} has no manifests"


@pytest.mark.parametrize("version", ["1.30.0", "1.31.0"])
@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(MANIFESTS)) for p in FILES])
def test_manifest_is_valid(path, version):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_flannel_network_is_the_default_pod_cidr():
    docs = list(yaml.safe_load_all((MANIFESTS / "cni/flannel/kube-flannel.yaml").read_text()))
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    assert json.loads(cm["data"]["net-conf.json"])["Network"] == "10.244.0.0/16"
    json.loads(cm["data"]["cni-conf.json"])
