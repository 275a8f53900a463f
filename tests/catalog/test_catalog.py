"""The release catalog: resolution, overlays and the errors a user sees."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from bake.catalog import ARCHES, load_catalog, resolve
from bake.errors import CatalogError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "upstream"


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def test_minor_resolves_to_newest_known_patch(catalog):
    release = resolve(catalog, "1.30", "amd64")
    assert release.kubernetes_version == catalog.patches("1.30")[-1]
    assert release.kubernetes_version == "1.30.12"


def test_exact_patch_is_kept(catalog):
    assert resolve(catalog, "v1.30.4", "arm64").kubernetes_version == "1.30.4"


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("minor", ["1.30", "1.31", "1.32", "1.33", "1.34", "1.35", "1.36"])
def test_every_minor_resolves_to_a_complete_release(catalog, minor, arch):
    release = resolve(catalog, minor, arch)
    names = [a.name for a in release.artifacts]
    assert names == [
        "kubeadm", "kubelet", "kubectl", "crictl", "containerd", "runc", "cni-plugins", "etcd"
    ]
    for artifact in release.artifacts:
        assert re.fullmatch(r"[0-9a-f]{64}", artifact.sha256), artifact
        assert artifact.url.startswith("https://")
        assert f"{arch}" in artifact.url
    images = {i.name: i.ref for i in release.images if i.group == "kubeadm"}
    assert set(images) == {
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kube-proxy",
        "etcd",
        "coredns",
        "pause",
    }
    assert (
        images["kube-apiserver"] == f"registry.k8s.io/kube-apiserver:v{release.kubernetes_version}"
    )
    assert images["coredns"].startswith("registry.k8s.io/coredns/coredns:v")
    # the add-ons' images are baked beside kubeadm's set (catalog addons / addon_releases);
    # the Cluster Autoscaler line follows the control plane's minor (autoscaler README)
    addons = {i.name: (i.group, i.ref) for i in release.images if i.group != "kubeadm"}
    cilium = "v1.18.14" if minor in ("1.30", "1.31", "1.32", "1.33") else "v1.19.4"
    # ingress-nginx's last releases: v1.14.5 e2e-tests 1.30-1.34, v1.15.1 1.31-1.35 (README)
    ingress = "v1.14.5" if minor == "1.30" else "v1.15.1"
    # Calico: the newest each kubespray table pins for the minors it covers
    calico = ("v3.29.3" if minor in ("1.30", "1.31", "1.32") else
              "v3.30.7" if minor == "1.33" else "v3.31.7")
    assert addons == {
        "calico-node": ("calico", f"quay.io/calico/node:{calico}"),
        "calico-cni": ("calico", f"quay.io/calico/cni:{calico}"),
        "calico-kube-controllers": ("calico", f"quay.io/calico/kube-controllers:{calico}"),
        "ingress-nginx-controller": ("ingress-nginx",
                                     f"registry.k8s.io/ingress-nginx/controller:{ingress}"),
        "flannel": ("flannel", "docker.io/flannel/flannel:v0.25.6"),
        "flannel-cni-plugin": ("flannel", "docker.io/flannel/flannel-cni-plugin:v1.5.1-flannel2"),
        # Cilium's line: v1.18 e2e-tests 1.30-1.33 (its compatibility page), v1.19 after
        "cilium": ("cilium", f"quay.io/cilium/cilium:{cilium}"),
        "cilium-operator": ("cilium", f"quay.io/cilium/operator-generic:{cilium}"),
        "metrics-server": ("metrics-server",
                           "registry.k8s.io/metrics-server/metrics-server:v0.7.2"),
        "prometheus": ("monitoring", "quay.io/prometheus/prometheus:v2.54.1"),
        "node-exporter": ("monitoring", "quay.io/prometheus/node-exporter:v1.8.2"),
        "kube-state-metrics": (
            "monitoring", "registry.k8s.io/kube-state-metrics/kube-state-metrics:v2.13.0"),
        "grafana": ("monitoring", "docker.io/grafana/grafana:11.2.0"),
        "local-path-provisioner": ("local-path-provisioner",
                                   "docker.io/rancher/local-path-provisioner:v0.0.30"),
        "busybox": ("local-path-provisioner", "docker.io/library/busybox:1.36.1"),
        "cluster-autoscaler": ("cluster-autoscaler",
                               f"registry.k8s.io/autoscaling/cluster-autoscaler:v{minor}.0"),
        "aws-cloud-controller-manager": (
            "aws-cloud-controller-manager",
            f"registry.k8s.io/provider-aws/cloud-controller-manager:v{minor}.0"),
        "aws-ebs-csi-driver": ("aws-ebs-csi-driver",
                               "public.ecr.aws/ebs-csi-driver/aws-ebs-csi-driver:v1.32.0"),
        "csi-provisioner": ("aws-ebs-csi-driver",
                            "registry.k8s.io/sig-storage/csi-provisioner:v5.0.1"),
        "csi-attacher": ("aws-ebs-csi-driver", "registry.k8s.io/sig-storage/csi-attacher:v4.6.1"),
        "csi-resizer": ("aws-ebs-csi-driver", "registry.k8s.io/sig-storage/csi-resizer:v1.11.1"),
        "livenessprobe": ("aws-ebs-csi-driver",
                          "registry.k8s.io/sig-storage/livenessprobe:v2.13.0"),
        "csi-node-driver-registrar": (
            "aws-ebs-csi-driver", "registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.11.0"),
    }
    assert [a for a, _ in release.addons] == sorted({g for g, _ in addons.values()})
    # Calico's CRDs: its release's manifests/crds.yaml, at the SHA-256 kubespray pins for it
    crds = {(f.addon, f.name): f for f in release.addon_files}
    assert list(crds) == [("calico", "crds")]
    # what the node agent applies first is what the image is baked with
    from bake_node.addons import UPSTREAM_FILES
    assert sorted(crds) == sorted((a, n) for a, names in UPSTREAM_FILES.items() for n in names)
    assert crds["calico", "crds"].url == (
        f"https://raw.githubusercontent.com/projectcalico/calico/{calico}/manifests/crds.yaml")
    assert crds["calico", "crds"].sha256 == {
        "v3.29.3": "1620ee6f539de44bbb3ec4aa3c2687b5023d4ee30795b30663ab3423b0c5f5d5",
        "v3.30.7": "b0eb83f6d70afac27e8830f22642cd12b0692e4d1a1b5060caa9231a951e736a",
        "v3.31.7": "1d6d5e523f92ee1e8227a48c016229c668f94035431b82f19139affeb45dbeff"}[calico]


def test_an_addon_version_without_its_images_is_one_line(tmp_path):
    overlay = tmp_path / "o.yaml"
    overlay.write_text("schema: bake.catalog/v1\nkubernetes:\n  '1.30':\n    addons:\n"
                       "      flannel: v0.26.0\n")
    with pytest.raises(CatalogError, match=r"^catalog: Kubernetes 1.30 bakes flannel v0.26.0, "
                       r"but addon_releases.flannel has no 'v0.26.0' entry"):
        resolve(load_catalog([overlay]), "1.30", "amd64")


def test_checksums_match_upstream_reference_data(catalog):
    """Spot-check the derived catalog against kubespray's tables (when shared/ is present)."""
    ref = SHARED / "kubespray-checksums-2025-05-08.yml"
    if not ref.exists():
        pytest.skip(f"reference data not found at {ref}")
    data = yaml.safe_load(ref.read_text())
    release = resolve(catalog, "1.30.12", "arm64")
    assert (
        "sha256:" + release.artifact("kubelet").sha256
        == data["kubelet_checksums"]["arm64"]["1.30.12"]
    )
    assert "sha256:" + release.artifact("runc").sha256 == data["runc_checksums"]["arm64"]["1.2.6"]


def test_shipped_catalog_is_what_the_derivation_writes():
    """cli/bake/data/catalog.yaml is generated: it must equal tools/derive_catalog.py's output
    over the reference data, so every value in it has the source the script cites."""
    import subprocess
    import sys

    if not (SHARED / "kubespray-checksums-2026-04-17.yml").exists():
        pytest.skip(f"reference data not found under {SHARED}")
    root = Path(__file__).resolve().parents[2]
    derived = subprocess.run(
        [sys.executable, str(root / "tools" / "derive_catalog.py"), str(SHARED)],
        capture_output=True, text=True, check=True,
    ).stdout
    assert derived == (root / "cli" / "bake" / "data" / "catalog.yaml").read_text(), (
        "regenerate: python tools/derive_catalog.py ../shared/data/upstream > "
        "cli/bake/data/catalog.yaml"
    )


def test_kubernetes_1_33_is_pinned_from_its_reference_table(catalog):
    ref = SHARED / "kubespray-checksums-2026-04-17.yml"
    if not ref.exists():
        pytest.skip(f"reference data not found at {ref}")
    data = yaml.safe_load(ref.read_text())
    assert catalog.patches("1.33")[-1] == "1.33.11"
    for arch in ARCHES:
        release = resolve(catalog, "1.33", arch)
        for name, table in (("kubeadm", "kubeadm_checksums"), ("kubelet", "kubelet_checksums")):
            assert "sha256:" + release.artifact(name).sha256 == str(
                data[table][arch]["1.33.11"]
            ) or release.artifact(name).sha256 == str(data[table][arch]["1.33.11"])


@pytest.mark.parametrize(
    ("request_", "pattern"),
    [
        ("1.29", r"Kubernetes 1\.29 is not in the catalog; supported: 1\.30 \(up to 1\.30\.12\)"),
        ("1.30.99", r"Kubernetes 1\.30\.99 is not pinned for amd64 .*--catalog FILE"),
        ("banana", r"malformed Kubernetes version 'banana'.*supported: 1\.30"),
        ("1.30.1.2", r"malformed"),
        ("2.0", r"not in the catalog"),
    ],
    ids=["unknown-minor", "unknown-patch", "garbage", "too-many-parts", "major-2"],
)
def test_bad_versions_fail_listing_what_is_supported(catalog, request_, pattern):
    with pytest.raises(CatalogError) as exc:
        resolve(catalog, request_, "amd64")
    message = exc.value.format_message()
    assert re.search(pattern, message), message
    assert "\n" not in message


def test_unknown_arch(catalog):
    with pytest.raises(CatalogError, match="unknown arch 's390x'; supported: amd64, arm64"):
        resolve(catalog, "1.30", "s390x")


def test_overlay_adds_a_patch_without_a_new_bake(tmp_path, catalog):
    sums = {a: "ab" * 32 for a in ARCHES}
    overlay = tmp_path / "more.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {
                "schema": "bake.catalog/v1",
                "checksums": {n: {"1.30.13": sums} for n in ("kubeadm", "kubelet", "kubectl")},
            }
        )
    )
    merged = load_catalog([overlay])
    release = resolve(merged, "1.30", "amd64")
    assert release.kubernetes_version == "1.30.13"
    assert release.artifact("kubeadm").sha256 == "ab" * 32
    assert release.catalog_sources[-1] == str(overlay)
    # the shipped catalog is untouched
    assert resolve(catalog, "1.30", "amd64").kubernetes_version == "1.30.12"


def test_overlay_can_switch_the_runtime_to_os_packages(tmp_path):
    overlay = tmp_path / "os.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {
                "schema": "bake.catalog/v1",
                "kubernetes": {
                    "1.30": {"containerd": {"source": "os-package", "package": "containerd"}}
                },
            }
        )
    )
    release = resolve(load_catalog([overlay]), "1.30", "amd64")
    containerd = release.artifact("containerd")
    assert (containerd.source, containerd.package, containerd.url) == (
        "os-package",
        "containerd",
        None,
    )


@pytest.mark.parametrize(
    ("doc", "pattern"),
    [
        (
            {
                "schema": "bake.catalog/v1",
                "checksums": {"kubeadm": {"1.30.13": {"amd64": "nothex"}}},
            },
            r"at checksums\.kubeadm\.1\.30\.13\.amd64: 'nothex' does not match",
        ),
        ({"schema": "bake.catalog/v2"}, r"at schema: 'bake.catalog/v1' was expected"),
        ({"schema": "bake.catalog/v1", "checksums": {"kubeadmm": {}}}, r"kubeadmm"),
        (
            {"schema": "bake.catalog/v1", "kubernetes": {"1.30": {"cri": "x"}}},
            r"'cri' was unexpected",
        ),
    ],
    ids=["bad-sha", "bad-schema", "unknown-artifact", "unknown-field"],
)
def test_invalid_overlays_fail_naming_file_and_field(tmp_path, doc, pattern):
    overlay = tmp_path / "bad.yaml"
    overlay.write_text(yaml.safe_dump(doc))
    with pytest.raises(CatalogError) as exc:
        load_catalog([overlay])
    assert str(overlay) in exc.value.format_message()
    assert re.search(pattern, exc.value.format_message()), exc.value.format_message()


def test_overlay_not_yaml_or_missing(tmp_path):
    bad = tmp_path / "x.yaml"
    bad.write_text("schema: [unclosed")
    with pytest.raises(CatalogError, match="not valid YAML"):
        load_catalog([bad])
    with pytest.raises(CatalogError, match="cannot read catalog overlay"):
        load_catalog([tmp_path / "missing.yaml"])


def test_cli_catalog_list(run_bake):
    result = run_bake("catalog", "list")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["MINOR", "LATEST", "PATCHES"]
    assert any(line.startswith("1.30   1.30.12") for line in lines)


def test_cli_catalog_list_json(run_bake, tmp_path):
    result = run_bake("catalog", "list", "--output", "json")
    data = json.loads(result.stdout)
    minors = [r["minor"] for r in data["releases"]]
    assert minors == ["1.30", "1.31", "1.32", "1.33", "1.34", "1.35", "1.36"]
    assert data["releases"][0]["images"]["pause"] == "3.9"


def test_cli_bad_overlay_is_one_line(run_bake, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema: bake.catalog/v9\n")
    result = run_bake("catalog", "list", "--catalog", str(bad))
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(
        "bake: error: invalid catalog"
    )
    assert "Traceback" not in result.stderr


def test_the_schema_file_holds_the_models_facts():
    """The catalog's JSON Schema is a data file (bake/data/catalog.schema.json); what it names
    of the model (arches, OSes, artifact names, the version and SHA-256 patterns) is the model's."""
    from bake.catalog import (
        ARCHES,
        ARTIFACT_SPECS,
        DEB_FILENAME_RE,
        MINOR_RE,
        OSES,
        PATCH_RE,
        SCHEMA,
        SHA256_RE,
        catalog_schema,
    )

    props = catalog_schema()["properties"]
    assert props["schema"] == {"const": SCHEMA}
    assert props["kubernetes"]["propertyNames"]["pattern"] == MINOR_RE.pattern
    assert props["checksums"]["propertyNames"]["enum"] == sorted(ARTIFACT_SPECS)
    per_arch = props["checksums"]["additionalProperties"]["additionalProperties"]
    assert per_arch["propertyNames"]["enum"] == list(ARCHES)
    assert per_arch["additionalProperties"]["pattern"] == SHA256_RE.pattern
    assert props["image_archives"]["propertyNames"]["enum"] == list(ARCHES)
    assert props["os_packages"]["propertyNames"]["enum"] == list(OSES)
    debs = props["os_packages"]["additionalProperties"]["additionalProperties"]
    assert debs["propertyNames"]["pattern"] == DEB_FILENAME_RE.pattern
    versions = props["kubernetes"]["additionalProperties"]["properties"]
    assert {versions[k]["pattern"] for k in ("crictl", "cni-plugins", "etcd")} == {PATCH_RE.pattern}


def test_the_ecr_credential_provider_is_baked_only_once_an_overlay_pins_it(catalog, tmp_path):
    """bake ships no SHA-256 for the ECR credential provider (no source it can cite), so a
    release carries it only when an overlay pins one: then at the cloud-provider-aws line of
    the minor, from artifacts.k8s.io, into the kubelet's credential provider directory, and
    the bake-kubernetes component downloads, checks and installs it."""
    from bake.render import RenderOptions, render_image_documents

    for minor in catalog.data["kubernetes"]:
        assert not resolve(catalog, minor, "amd64").has_artifact("ecr-credential-provider")
    overlay = tmp_path / "ecr.yaml"
    sha = "ab" * 32
    overlay.write_text(yaml.safe_dump({"schema": "bake.catalog/v1", "checksums": {
        "ecr-credential-provider": {"1.31.0": {"amd64": sha}}}}))
    pinned = load_catalog([overlay])
    release = resolve(pinned, "1.31", "amd64")
    ecr = release.artifact("ecr-credential-provider")
    assert (ecr.version, ecr.sha256, ecr.kind) == ("1.31.0", sha, "binary")
    assert ecr.url == ("https://artifacts.k8s.io/binaries/cloud-provider-aws/v1.31.0/linux/amd64/"
                       "ecr-credential-provider-linux-amd64")
    assert ecr.install == ("/usr/libexec/kubernetes/image-credential-provider/"
                           "ecr-credential-provider")
    assert not resolve(pinned, "1.31", "arm64").has_artifact("ecr-credential-provider")
    assert not resolve(pinned, "1.30", "amd64").has_artifact("ecr-credential-provider")
    docs = render_image_documents(release, RenderOptions())
    text = docs.files()["components/bake-kubernetes.yaml"]
    assert f"checksum: {sha}" in text
    assert f"install -D -m 0755 -o root -g root /var/tmp/bake-downloads/" \
           f"ecr-credential-provider-linux-amd64 {ecr.install}" in text
    assert f"{sha}  {ecr.install}" in text


def test_addons_choose_what_is_baked(catalog):
    """``bake ami --addons``: a subset bakes only those add-ons' images; none bakes kubeadm's set
    alone; an add-on the catalog does not pin is refused naming the choices."""
    every = resolve(catalog, "1.31", "amd64")
    some = resolve(catalog, "1.31", "amd64", addons=["metrics-server", "flannel"])
    assert some.addons == (("flannel", "v0.25.6"), ("metrics-server", "v0.7.2"))
    assert {i.group for i in some.images} == {"kubeadm", "flannel", "metrics-server"}
    assert some.addon_images("metrics-server")[0].ref.endswith("metrics-server:v0.7.2")
    assert some.addon_images("cluster-autoscaler") == ()
    bare = resolve(catalog, "1.31", "amd64", addons=())
    assert bare.addons == () and {i.group for i in bare.images} == {"kubeadm"}
    assert len(every.images) == len(bare.images) + 23
    with pytest.raises(CatalogError, match=r"--addons: weave is not an add-on .* choose from "
                                           r"aws-cloud-controller-manager, aws-ebs-csi-driver, "):
        resolve(catalog, "1.31", "amd64", addons=["weave"])
