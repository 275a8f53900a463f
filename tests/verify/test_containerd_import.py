"""The stand-in OCI archives are real images to containerd: Debian's containerd imports,
unpacks and pins each one, as bake-images-import.service does on a node's first boot."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="containerd needs root"),
    pytest.mark.skipif(shutil.which("containerd") is None or shutil.which("ctr") is None,
                       reason="Debian's containerd package is not installed (make deb-deps)"),
]


@pytest.fixture
def containerd() -> Iterator[list[str]]:
    """A private containerd (own root, state and socket; CRI plugin off); yields the ``ctr``
    command prefix for namespace k8s.io."""
    work = Path(tempfile.mkdtemp(prefix="ctrd", dir="/tmp"))  # socket paths must stay short
    (work / "config.toml").write_text(
        'version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n')
    sock = work / "sock"
    log = (work / "log").open("w")
    proc = subprocess.Popen(["containerd", "-c", str(work / "config.toml"), "--root",
                             str(work / "root"), "--state", str(work / "state"), "--address",
                             str(sock)], stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.1)
        assert sock.exists(), (work / "log").read_text()[-500:]
        yield ["ctr", "--address", str(sock), "--namespace", "k8s.io"]
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
        subprocess.run(["umount", "-R", str(work / "root")], capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)


def test_ctr_imports_and_pins_every_standin_image(containerd, standin_mirror):
    for image in standin_mirror.release.images:
        archive = standin_mirror.mirror / image.archive_path
        subprocess.run([*containerd, "images", "import", str(archive)], check=True,
                       capture_output=True, text=True)
        subprocess.run([*containerd, "images", "label", image.ref,
                        "io.cri-containerd.pinned=pinned"], check=True, capture_output=True)
    listing = subprocess.run([*containerd, "images", "ls"], check=True, capture_output=True,
                             text=True).stdout
    rows = {ln.split()[0]: ln for ln in listing.splitlines()[1:] if ln.strip()}
    for image in standin_mirror.release.images:
        assert image.ref in rows, f"{image.ref} not imported"
        assert "io.cri-containerd.pinned=pinned" in rows[image.ref]
        assert "linux/amd64" in rows[image.ref]
