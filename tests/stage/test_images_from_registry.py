"""`bake stage --images-from REGISTRY`: the release's images copied by digest into OCI archives
on the mirror, with an overlay pinning their SHA-256, against a real registry on 127.0.0.1
(tests/stage/conftest.py). The archives then serve `bake render ami` like hand-made ones, and a
real containerd imports them under their upstream names."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
import yaml


def _stage(run_bake, registry, mirror: Path, *extra: str):
    return run_bake(
        "stage", "--k8s", "1.30", "--images-from", registry.url, "--mirror", str(mirror),
        "--catalog", str(registry.digests), *extra,
    )


def test_images_are_copied_by_digest_with_an_overlay(run_bake, local_registry, tmp_path):
    mirror = tmp_path / "mirror"
    result = _stage(run_bake, local_registry, mirror)
    assert result.exit_code == 0, result.stderr
    overlay = mirror / "bake-images" / "catalog-overlay.yaml"
    # kubeadm's 7, flannel's 2, Calico's 3, Cilium's 2, metrics-server's, local-path-provisioner's
    # 2, the autoscaler's, the cloud controller's, the EBS CSI driver's 6, monitoring's 4,
    # ingress-nginx's
    assert f"30 image archives in {mirror / 'bake-images'}; overlay {overlay}" in result.stdout
    doc = yaml.safe_load(overlay.read_text())
    archives = doc["image_archives"]["amd64"]
    assert set(archives) == {i.ref for i in local_registry.release.images}
    for image in local_registry.release.images:
        path = mirror / image.archive_path
        assert hashlib.sha256(path.read_bytes()).hexdigest() == archives[image.ref]
        with tarfile.open(path) as tar:
            index = json.loads(tar.extractfile("index.json").read())
        (manifest,) = index["manifests"]
        assert manifest["annotations"]["io.containerd.image.name"] == image.ref
        digests = yaml.safe_load(local_registry.digests.read_text())["image_digests"]
        assert manifest["digest"] == digests[image.ref]  # the pinned content, nothing else

    # the mirror now serves `bake render ami` with the archives the overlay pins
    out = tmp_path / "render"
    render = run_bake(
        "render", "ami", "--k8s", "1.30", "--mirror", mirror.as_uri(), "--catalog",
        str(local_registry.digests), "--catalog", str(overlay), "-o", str(out),
    )
    assert render.exit_code == 0, render.stderr
    components = "".join(p.read_text() for p in (out / "components").glob("bake-*.yaml"))
    for sha in archives.values():  # kubeadm's in bake-images, each add-on's in its component
        assert sha in components


def test_addons_choose_which_add_on_images_are_copied(run_bake, local_registry, tmp_path):
    """``--addons`` as ``bake ami`` takes it: kubeadm's set always, then only the add-ons
    named; an add-on the catalog does not pin is refused before anything is copied."""
    mirror = tmp_path / "mirror"
    result = run_bake(
        "stage", "--k8s", "1.30", "--images-from", local_registry.url, "--mirror", str(mirror),
        "--catalog", str(local_registry.digests), "--addons", "flannel",
    )
    assert result.exit_code == 0, result.stderr
    assert "9 image archives in" in result.stdout  # kubeadm's 7 and flannel's 2
    overlay = yaml.safe_load((mirror / "bake-images" / "catalog-overlay.yaml").read_text())
    assert not any("metrics-server" in ref for ref in overlay["image_archives"]["amd64"])
    bad = run_bake(
        "stage", "--k8s", "1.30", "--images-from", local_registry.url, "--mirror",
        str(tmp_path / "other"), "--catalog", str(local_registry.digests), "--addons", "weave",
    )
    assert bad.exit_code == 2
    assert "--addons: weave is not an add-on the catalog pins for Kubernetes 1.30" in bad.stderr
    assert not (tmp_path / "other").exists()


def test_a_digest_the_registry_lacks_fails_in_one_line_and_writes_nothing(
    run_bake, local_registry, tmp_path
):
    bad = yaml.safe_load(local_registry.digests.read_text())
    ref = next(iter(sorted(bad["image_digests"])))
    bad["image_digests"][ref] = "sha256:" + "0" * 64
    pins = tmp_path / "bad.yaml"
    pins.write_text(yaml.safe_dump(bad))
    mirror = tmp_path / "mirror"
    result = run_bake(
        "stage", "--k8s", "1.30", "--images-from", local_registry.url, "--mirror", str(mirror),
        "--catalog", str(pins),
    )
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("bake: error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert f"cannot copy {ref}" in errors[0] and "manifest unknown" in errors[0]
    assert "the catalog pins sha256:000" in errors[0]
    assert not (mirror / "bake-images" / "catalog-overlay.yaml").exists()
    assert not list((mirror / "bake-images").rglob("*.tar")) if (mirror / "bake-images").exists() \
        else True


def test_without_pinned_digests_nothing_is_copied(run_bake, local_registry, tmp_path):
    result = run_bake(
        "stage", "--k8s", "1.30.4", "--images-from", local_registry.url, "--mirror",
        str(tmp_path / "m"),
    )
    assert result.exit_code == 2
    assert "no pinned digest for docker.io/flannel/" in result.stderr
    assert "image_digests" in result.stderr
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("value", ["ftp://x", "http://", "not a host", "http://h:99999"])
def test_a_malformed_registry_is_one_line(run_bake, tmp_path, value):
    result = run_bake(
        "stage", "--k8s", "1.30", "--images-from", value, "--mirror", str(tmp_path)
    )
    assert result.exit_code == 2 and result.stderr.startswith("bake: error: --images-from")


@pytest.mark.skipif(os.geteuid() != 0, reason="running containerd needs root")
@pytest.mark.skipif(shutil.which("containerd") is None, reason="containerd is not installed")
def test_containerd_imports_the_archive_under_its_upstream_name(
    run_bake, local_registry, tmp_path
):
    """Debian's containerd, started on a private socket, imports a copied archive exactly as
    bake-images-import.service does on first boot, and pins it."""
    mirror = tmp_path / "mirror"
    assert _stage(run_bake, local_registry, mirror).exit_code == 0
    pause = local_registry.release.image("pause")
    root, state = tmp_path / "root", tmp_path / "state"
    sock = tmp_path / "containerd.sock"
    config = tmp_path / "config.toml"
    config.write_text(
        f'version = 2\nroot = "{root}"\nstate = "{state}"\n[grpc]\n  address = "{sock}"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
    )
    log = (tmp_path / "containerd.log").open("w")
    proc = subprocess.Popen(["containerd", "--config", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert time.monotonic() < deadline and proc.poll() is None, "containerd did not start"
            time.sleep(0.2)
        ctr = ["ctr", "--address", str(sock), "--namespace", "k8s.io"]
        subprocess.run([*ctr, "images", "import", str(mirror / pause.archive_path)], check=True,
                       capture_output=True)
        subprocess.run([*ctr, "images", "label", pause.ref, "io.cri-containerd.pinned=pinned"],
                       check=True, capture_output=True)
        listing = subprocess.run([*ctr, "images", "ls"], check=True, capture_output=True,
                                 text=True).stdout
        line = next(ln for ln in listing.splitlines() if ln.startswith(pause.ref + " "))
        assert "io.cri-containerd.pinned=pinned" in line
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_resolve_digests_pins_what_the_registry_serves_and_records_it(
    run_bake, local_registry, tmp_path
):
    """Trust on first use, asked for explicitly: the digests land in the overlay, so the next
    run is pinned."""
    mirror = tmp_path / "mirror"
    result = run_bake(
        "stage", "--k8s", "1.30", "--images-from", local_registry.url, "--mirror", str(mirror),
        "--resolve-digests",
    )
    assert result.exit_code == 0, result.stderr
    doc = yaml.safe_load((mirror / "bake-images" / "catalog-overlay.yaml").read_text())
    expected = yaml.safe_load(local_registry.digests.read_text())["image_digests"]
    assert doc["image_digests"] == expected
    assert "pinned registry.k8s.io/pause:3.9 to sha256:" in result.stderr
