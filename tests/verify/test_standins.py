"""tools/standins.py: deterministic stand-ins, valid OCI archives, an overlay bake accepts."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import standins

from bake.catalog import load_catalog, resolve

ROOT = Path(__file__).resolve().parents[2]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_generation_is_deterministic(tmp_path, standin_mirror):
    again = standins.generate("1.30", "amd64", tmp_path / "again")
    assert again.files == standin_mirror.files
    assert again.overlay.read_text() == standin_mirror.overlay.read_text()
    for rel, digest in again.files.items():
        assert sha((again.mirror / rel).read_bytes()) == digest, rel


def test_overlay_resolves_to_the_standins_sums(standin_mirror):
    text = standin_mirror.overlay.read_text()
    header = "".join(ln for ln in text.splitlines() if ln.startswith("#"))
    assert "NOT the real Kubernetes release binaries" in header and "STAND-INS" in header
    release = resolve(load_catalog([standin_mirror.overlay]), "1.30", "amd64")
    assert release.kubernetes_version == standin_mirror.release.kubernetes_version
    for art in release.artifacts:
        path = standin_mirror.mirror / art.url.split("://", 1)[1]
        assert art.sha256 == sha(path.read_bytes()), art.name
    for image in release.images:
        archive = standin_mirror.mirror / image.archive_path
        assert image.archive_sha256 == sha(archive.read_bytes()), image.ref
    # Calico's CRDs: a stand-in at the upstream path, pinned over the real file's SHA-256
    (crds,) = release.addon_files
    data = (standin_mirror.mirror / crds.url.split("://", 1)[1]).read_bytes()
    assert crds.sha256 == sha(data) and b"bake stand-in" in data


def test_oci_archives_are_valid_image_layouts(standin_mirror):
    release = standin_mirror.release
    assert {i.name for i in release.images} == {
        "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "etcd",
        "coredns", "pause", "flannel", "flannel-cni-plugin", "cilium", "cilium-operator",
        "metrics-server", "prometheus", "node-exporter", "kube-state-metrics", "grafana",
        "local-path-provisioner", "busybox", "cluster-autoscaler", "aws-cloud-controller-manager",
        "aws-ebs-csi-driver", "csi-provisioner", "csi-attacher", "csi-resizer", "livenessprobe",
        "csi-node-driver-registrar", "ingress-nginx-controller", "calico-node", "calico-cni",
        "calico-kube-controllers"}
    for image in release.images:
        with tarfile.open(standin_mirror.mirror / image.archive_path) as tar:
            files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
        assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
        for name, data in files.items():
            if name.startswith("blobs/sha256/"):
                assert sha(data) == name.rsplit("/", 1)[1], f"{image.ref}: {name}"
        index = json.loads(files["index.json"])
        (desc,) = index["manifests"]
        assert desc["annotations"] == {"io.containerd.image.name": image.ref,
                                       "org.opencontainers.image.ref.name": image.tag}
        manifest_blob = files["blobs/sha256/" + desc["digest"].removeprefix("sha256:")]
        assert len(manifest_blob) == desc["size"]
        manifest = json.loads(manifest_blob)
        assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
        for d in [manifest["config"], *manifest["layers"]]:
            blob = files["blobs/sha256/" + d["digest"].removeprefix("sha256:")]
            assert len(blob) == d["size"]
        config = json.loads(files["blobs/sha256/" + manifest["config"]["digest"][7:]])
        assert config["architecture"] == "amd64" and config["os"] == "linux"
        layer = files["blobs/sha256/" + manifest["layers"][0]["digest"][7:]]
        assert config["rootfs"]["diff_ids"] == ["sha256:" + sha(gzip.decompress(layer))]
        with tarfile.open(fileobj=io.BytesIO(layer)) as lt:
            assert lt.getnames() == ["etc", "etc/bake-standin"]


@pytest.mark.parametrize(("name", "args", "expected"), [
    ("kubeadm", "version -o short", "v{v}"),
    ("kubelet", "--version", "Kubernetes v{v}"),
    ("kubeadm", "--help", "bake test stand-in, not the real kubeadm"),
    ("kubelet", "--help", "bake test stand-in, not the real kubelet"),
], ids=lambda x: x if isinstance(x, str) and " " not in x else None)
def test_standin_binaries_answer_like_the_real_ones(standin_mirror, name, args, expected):
    art = standin_mirror.release.artifact(name)
    path = standin_mirror.mirror / art.url.split("://", 1)[1]
    out = subprocess.run([str(path), *args.split()], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected.format(v=standin_mirror.release.kubernetes_version)


def test_kubectl_standin_prints_client_version_json(standin_mirror):
    art = standin_mirror.release.artifact("kubectl")
    path = standin_mirror.mirror / art.url.split("://", 1)[1]
    out = subprocess.run([str(path), "version", "--client", "-o", "json"], capture_output=True,
                         text=True, check=True)
    version = json.loads(out.stdout)["clientVersion"]["gitVersion"]
    assert version == "v" + standin_mirror.release.kubernetes_version


def test_tamper_breaks_only_the_named_file(standin_factory, standin_mirror):
    tampered = standin_factory(tamper="kubelet")
    kubelet = tampered.release.artifact("kubelet")
    path = tampered.mirror / kubelet.url.split("://", 1)[1]
    assert sha(path.read_bytes()) != kubelet.sha256
    assert tampered.overlay.read_text() == standin_mirror.overlay.read_text()
    kubeadm = tampered.release.artifact("kubeadm")
    assert sha((tampered.mirror / kubeadm.url.split("://", 1)[1]).read_bytes()) == kubeadm.sha256


def test_os_package_runtime(standin_factory):
    variant = standin_factory(runtime="os-package")
    for name in ("containerd", "runc"):
        art = variant.release.artifact(name)
        assert (art.source, art.kind, art.package, art.url) == ("os-package", "os-package",
                                                                 name, None)
    assert not any("containerd/releases" in rel or "runc/releases" in rel for rel in variant.files)


def test_mirror_serves_the_standins_on_localhost(standin_mirror):
    assert standin_mirror.url.startswith("http://127.0.0.1:")
    art = standin_mirror.release.artifact("kubeadm")
    kubeadm_url = f"{standin_mirror.url}/{art.url.split('://', 1)[1]}"
    with urllib.request.urlopen(kubeadm_url, timeout=10) as resp:
        assert sha(resp.read()) == art.sha256
    pause = standin_mirror.release.image("pause")
    with urllib.request.urlopen(f"{standin_mirror.url}/{pause.archive_path}", timeout=10) as resp:
        assert sha(resp.read()) == pause.archive_sha256
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(standin_mirror.url + "/dl.k8s.io/nope", timeout=10)
    assert err.value.code == 404


def test_command_line_generate_and_serve(tmp_path):
    tool = [sys.executable, str(ROOT / "tools" / "standins.py")]
    gen = subprocess.run([*tool, "generate", "--k8s", "1.30", "--out", str(tmp_path),
                          "--tamper", "pause"], capture_output=True, text=True, check=True)
    assert "NOT the real binaries" in gen.stdout and "tampered: pause" in gen.stdout
    bad = subprocess.run([*tool, "generate", "--k8s", "9.99", "--out", str(tmp_path / "x")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "supported" in bad.stderr
    pidfile = tmp_path / "serve.pid"
    proc = subprocess.Popen([*tool, "serve", str(tmp_path), "--pidfile", str(pidfile)],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = line.strip().rsplit(" ", 1)[1]
        assert url.startswith("http://127.0.0.1:") and int(pidfile.read_text()) == proc.pid
        with urllib.request.urlopen(url + "/bake-images/amd64/pause_3.9.tar", timeout=10) as r:
            assert r.read(64)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
