"""The image-manifest step run for real, on a scratch tree standing in for the image root.

The step's absolute paths are re-rooted under a temporary directory holding stand-in files
(this machine has no real Kubernetes binaries), and a stand-in ``dpkg-query`` answers for the
Debian packages; the JSON it writes must match the contract (schema bake.image-manifest/v1),
with the SHA-256 of each installed file as computed there.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from bake.catalog import load_catalog, resolve
from bake.render import RenderOptions, render_image_documents

PREFIXES = ("/etc/bake", "/usr/bin", "/usr/sbin", "/opt/cni/bin", "/var/lib/bake/images")


def _reroot(text: str, root: Path) -> str:
    for prefix in PREFIXES:
        text = text.replace(f" {prefix}", f" {root}{prefix}").replace(
            f"({prefix}", f"({root}{prefix}"
        )
    return text


def _write_manifest_step(docs) -> str:
    manifest = next(c for c in docs.components if c.name == "bake-image-manifest")
    (step,) = [s for s in manifest.data["phases"][0]["steps"] if s["name"] == "WriteManifest"]
    return "\n".join(step["inputs"]["commands"])


def _write_image_lists(docs, root: Path) -> None:
    """Each set's list and sums under ``root``, as bake-images and each bake-addon-<name>
    write them (their WriteImageList steps' own content)."""
    for component in docs.components:
        for step in component.data["phases"][0]["steps"]:
            if step["name"] == "WriteImageList":
                for f in step["inputs"]:
                    path = root / f["path"].lstrip("/")
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(f["content"])


@pytest.mark.parametrize("os_packages", [False, True])
def test_manifest_step_writes_the_contract(
    tmp_path, images_overlay, os_package_overlay, os_packages
):
    overlays = [images_overlay, os_package_overlay] if os_packages else [images_overlay]
    release = resolve(load_catalog(overlays), "1.30.12", "amd64")
    docs = render_image_documents(release, RenderOptions(mirror="http://127.0.0.1:8999"))
    root = tmp_path / "root"
    installed = {}
    for path in [
        "/usr/bin/kubeadm",
        "/usr/bin/kubelet",
        "/usr/bin/kubectl",
        "/usr/bin/crictl",
        "/usr/bin/containerd",
        "/usr/bin/ctr",
        "/usr/bin/containerd-shim-runc-v2",
        "/usr/sbin/runc",
        "/opt/cni/bin/bridge",
        "/opt/cni/bin/loopback",
        "/usr/bin/etcdctl",
        "/usr/bin/etcdutl",
    ]:
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"stand-in {path}\n")
        installed[path] = hashlib.sha256(target.read_bytes()).hexdigest()
    for image in release.images:
        (root / "var/lib/bake/images").mkdir(parents=True, exist_ok=True)
        (root / f"var/lib/bake/images/{image.name}_{image.tag}.tar").write_text("archive")
    _write_image_lists(docs, root)
    (root / "etc/bake").mkdir(parents=True)
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    (fakebin / "dpkg-query").write_text("#!/bin/sh\necho 1.6.20~ds1-1+b1\n")
    (fakebin / "dpkg-query").chmod(0o755)

    script = _reroot(_write_manifest_step(docs), root)
    env = {**os.environ, "PATH": f"{fakebin}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr

    manifest = json.loads((root / "etc/bake/image-manifest.json").read_text())
    assert manifest["schema"] == "bake.image-manifest/v1"
    assert (
        manifest["kubernetes_version"],
        manifest["minor"],
        manifest["arch"],
        manifest["os"],
    ) == ("1.30.12", "1.30", "amd64", "debian-12")
    by_name = {a["name"]: a for a in manifest["artifacts"]}
    assert list(by_name) == [a.name for a in release.artifacts]
    for artifact in release.artifacts:
        entry = by_name[artifact.name]
        assert (entry["source"], entry["url"], entry["sha256"]) == (
            artifact.source,
            artifact.url,
            artifact.sha256,
        )
        for path, digest in entry["files"].items():
            assert installed[path.removeprefix(str(root))] == digest
    assert by_name["kubeadm"]["files"] == {f"{root}/usr/bin/kubeadm": installed["/usr/bin/kubeadm"]}
    assert len(by_name["cni-plugins"]["files"]) == 2
    expected_runtime = "1.6.20~ds1-1+b1" if os_packages else "1.7.27"
    assert by_name["containerd"]["version"] == expected_runtime
    assert [i["ref"] for i in manifest["images"]] == [i.ref for i in release.images]
    assert all(i["pinned"] is True for i in manifest["images"])
    assert [i["archive"].removeprefix(str(root)) for i in manifest["images"]] == [
        f"/var/lib/bake/images/{i.name}_{i.tag}.tar" for i in release.images
    ]
    assert [i["sha256"] for i in manifest["images"]] == [i.archive_sha256 for i in release.images]
    assert manifest["catalog_sources"] == list(release.catalog_sources)
    # the sidecar lets anyone re-check installed files with sha256sum -c
    sums = (root / "etc/bake/image-manifest.sha256").read_text()
    assert f"{installed['/usr/sbin/runc']}  {root}/usr/sbin/runc" in sums
    # and every image archive, from its set's SHA256SUMS
    for image in release.images:
        assert f"{image.archive_sha256}  /var/lib/bake/images/{image.name}_{image.tag}.tar" in sums


def test_manifest_step_fails_on_a_missing_file(tmp_path):
    docs = render_image_documents(resolve(load_catalog(), "1.30.12", "amd64"), RenderOptions())
    root = tmp_path / "root"
    (root / "etc/bake").mkdir(parents=True)
    script = _reroot(_write_manifest_step(docs), root)
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert result.returncode != 0
    assert "manifest: missing installed file" in result.stderr
    assert not (root / "etc/bake/image-manifest.json").exists()


def test_image_import_script_imports_and_pins_each_image(tmp_path, images_overlay):
    """bake-images-import against a stand-in ``ctr`` that records its calls: each component's
    list (kubeadm's set, then an add-on's) is imported and pinned once; ``.imported`` (the
    first-boot unit's condition) appears only when every list is; with no list given it
    imports the lists not yet imported."""
    release = resolve(load_catalog([images_overlay]), "1.30.12", "amd64")
    docs = render_image_documents(release, RenderOptions(mirror="http://127.0.0.1:8999"))
    images = next(c for c in docs.components if c.name == "bake-images")
    (script,) = [
        i["content"]
        for s in images.data["phases"][0]["steps"]
        if s["action"] == "CreateFile"
        for i in s["inputs"]
        if i["path"] == "/usr/local/sbin/bake-images-import"
    ]

    def lists(doc):
        return {i["path"]: i["content"] for s in doc.data["phases"][0]["steps"]
                if s["name"] == "WriteImageList" for i in s["inputs"]}

    root = tmp_path / "root"
    folder = root / "var/lib/bake/images"
    folder.mkdir(parents=True)
    flannel = next(c for c in docs.components if c.name == "bake-addon-flannel")
    for doc in (images, flannel):
        for path, content in lists(doc).items():
            (root / path.lstrip("/")).write_text(
                content.replace("/var/lib/bake/images", str(folder)))
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    log = tmp_path / "ctr.log"
    (fakebin / "ctr").write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    (fakebin / "ctr").chmod(0o755)
    env = {**os.environ, "PATH": f"{fakebin}:{os.environ['PATH']}"}

    def run(*args):
        result = subprocess.run(["bash", "-c", _reroot(script, root), "import", *args],
                                capture_output=True, text=True, env=env)
        assert result.returncode == 0, result.stderr
        calls = log.read_text().splitlines() if log.exists() else []
        log.unlink(missing_ok=True)
        return calls

    calls = run(str(folder / "kubeadm.images"))
    kubeadm = [i for i in release.images if i.group == "kubeadm"]
    assert len(calls) == 2 * len(kubeadm)
    pause = release.image("pause")
    assert (
        f"--address /run/containerd/containerd.sock --namespace k8s.io images label {pause.ref} "
        "io.cri-containerd.pinned=pinned"
    ) in calls
    assert any(
        c.endswith(f"images import {folder}/pause_{pause.tag}.tar") for c in calls
    )
    assert (folder / "kubeadm.imported").exists()
    assert not (folder / ".imported").exists()  # flannel's list is not imported yet
    calls = run()  # first boot: only what is left
    assert len(calls) == 2 * len(release.addon_images("flannel"))
    assert all("flannel" in c for c in calls)
    assert (folder / ".imported").exists()
    assert run() == []


def test_manifest_step_fails_on_an_image_its_set_did_not_list(tmp_path, images_overlay):
    """An image the manifest names that its set's component did not list (a mismatched build)
    fails the step by name instead of recording an archive nobody checked."""
    release = resolve(load_catalog([images_overlay]), "1.30.12", "amd64", addons=())
    docs = render_image_documents(release, RenderOptions(mirror="http://127.0.0.1:8999"))
    root = tmp_path / "root"
    for path in ("/usr/bin/kubeadm", "/usr/bin/kubelet", "/usr/bin/kubectl", "/usr/bin/crictl",
                 "/usr/bin/containerd", "/usr/bin/ctr", "/usr/bin/containerd-shim-runc-v2",
                 "/usr/sbin/runc", "/opt/cni/bin/bridge", "/opt/cni/bin/loopback",
                 "/usr/bin/etcdctl", "/usr/bin/etcdutl"):
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / path.lstrip("/")).write_text("stand-in\n")
    (root / "etc/bake").mkdir(parents=True)
    images = root / "var/lib/bake/images"
    images.mkdir(parents=True)
    first, *rest = release.images
    (images / "kubeadm.images").write_text(
        "".join(f"/var/lib/bake/images/{i.name}_{i.tag}.tar {i.ref}\n" for i in rest))
    (images / "kubeadm.SHA256SUMS").write_text(
        "".join(f"{i.archive_sha256}  /var/lib/bake/images/{i.name}_{i.tag}.tar\n"
                for i in rest))
    result = subprocess.run(["bash", "-c", _reroot(_write_manifest_step(docs), root)],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert f"manifest: {first.ref} is not in kubeadm.images" in result.stderr
    assert not (root / "etc/bake/image-manifest.json").exists()
