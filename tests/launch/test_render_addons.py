"""``bake render addons``: the CNI and add-on manifests the first control plane applies, rendered
from the cluster file with the images the catalog bakes; golden files per example cluster
(every add-on and the CNI appear in one of them), valid for the minor (kubernetes-validate,
strict), and the same text the node agent renders for the same values."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from bake.addons import addon_manifests
from bake.catalog import load_catalog, resolve
from bake.cluster import CNI_NAMES
from bake_node.addons import ADDONS

GOLDEN = Path(__file__).parent / "golden-addons"
VARIANTS = ["airgapped", "nat", "existing-vpc"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_golden_addon_manifests(specs, variant, golden):
    """tests/launch/golden-addons/<variant>/ (``make golden``)."""
    golden.check(GOLDEN / variant, addon_manifests(specs[variant]), complete=True)


def test_every_addon_and_every_cni_is_in_a_golden_variant(specs):
    seen = {p.split("/")[2] for v in VARIANTS for p in addon_manifests(specs[v])}
    assert seen == {*CNI_NAMES, *(a.name for a in ADDONS)}


@pytest.mark.parametrize("variant", VARIANTS)
def test_rendered_manifests_are_valid_for_the_minor_and_run_baked_images(specs, variant):
    spec = specs[variant]
    release = resolve(load_catalog(), spec.kubernetes_minor, spec.arch, spec.os)
    baked = {i.ref for i in release.images}
    for path, text in addon_manifests(spec).items():
        if not path.endswith(".yaml"):  # UPSTREAM-FILES.txt: what the image applies first
            continue
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            kubernetes_validate.validate(doc, f"{spec.kubernetes_minor}.0", strict=True)
            pod = doc.get("spec", {}).get("template", {}).get("spec", {})
            for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
                assert container["image"] in baked, (path, container["image"])


def test_cli_writes_the_cni_and_the_enabled_addons_in_apply_order(run_bake, tmp_path):
    from bake.cluster import init_text

    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(init_text(name="lab", minor="1.31").replace(
        "localPath: false", "localPath: {defaultStorageClass: true}"))
    out = tmp_path / "out"
    result = run_bake("render", "addons", "-f", str(cluster), "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert [Path(p).relative_to(out).as_posix() for p in result.stdout.splitlines()] == [
        "manifests/cni/flannel/kube-flannel.yaml",
        "manifests/addons/local-path-provisioner/local-path-storage.yaml",
        "manifests/addons/metrics-server/metrics-server.yaml",
        "manifests/addons/cluster-autoscaler/cluster-autoscaler.yaml",
    ]
    text = (out / "manifests/addons/cluster-autoscaler/cluster-autoscaler.yaml").read_text()
    assert "registry.k8s.io/autoscaling/cluster-autoscaler:v1.31.0" in text
    assert "k8s.io/cluster-autoscaler/lab" in text
    bad = run_bake("render", "addons", "-f", str(tmp_path / "missing.yaml"), "-o", str(out))
    assert bad.exit_code == 2 and "missing.yaml" in bad.stderr


def test_calico_names_the_crds_the_image_applies_first(specs):
    """Calico's CRDs are not bake's template but the upstream file baked into the image: the
    review names it with the URL and SHA-256 the image is baked from."""
    files = addon_manifests(specs["nat"])
    note = files["manifests/cni/calico/UPSTREAM-FILES.txt"]
    assert ("crds: https://raw.githubusercontent.com/projectcalico/calico/v3.29.3/manifests/"
            "crds.yaml\n  sha256 1620ee6f539de44bbb3ec4aa3c2687b5023d4ee30795b30663ab3423b0c5f5d5"
            in note)
    assert list(files).index("manifests/cni/calico/UPSTREAM-FILES.txt") < list(files).index(
        "manifests/cni/calico/calico.yaml")
