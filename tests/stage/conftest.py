"""A real registry server on 127.0.0.1 for the `bake stage --images-from` tests.

Debian's ``docker-registry`` (the CNCF distribution registry) runs with its storage in a
temporary directory and listens on a free 127.0.0.1 port; the stand-in images of Kubernetes 1.30
(tiny OCI images from tools/standins.py: registry images cannot be pulled here) are pushed to it
with skopeo, and their manifest digests are pinned in a catalog overlay the way the shipped
catalog pins the real ones. The server is stopped by its PID at the end of the session.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

NEEDS = [shutil.which("docker-registry"), shutil.which("skopeo")]


@dataclass(frozen=True)
class LocalRegistry:
    """``url`` (``http://127.0.0.1:<port>``), the stand-in ``release`` pushed to it, and the
    ``digests`` overlay pinning each image's manifest digest."""

    url: str
    release: object
    digests: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def local_registry(tmp_path_factory) -> LocalRegistry:
    if not all(NEEDS):
        pytest.skip("docker-registry and skopeo are Debian packages the Makefile installs")
    import standins

    from bake.catalog import load_catalog, resolve

    work = tmp_path_factory.mktemp("registry")
    port = _free_port()
    config = work / "config.yml"
    config.write_text(yaml.safe_dump({
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(work / "data")}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }))
    log = (work / "registry.log").open("w")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/v2/", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    log_text = (work / "registry.log").read_text()
                    pytest.fail(f"docker-registry did not start: {log_text}")
                time.sleep(0.2)
        release = resolve(load_catalog(), "1.30", "amd64")
        digests = {}
        for image in release.images:
            archive = work / f"{image.name}.tar"
            archive.write_bytes(standins.oci_archive(image.ref, image.tag, "amd64"))
            repository = image.ref.split("/", 1)[1].rsplit(":", 1)[0]
            digest_file = work / f"{image.name}.digest"
            subprocess.run(
                ["skopeo", "copy", "--dest-tls-verify=false", "--digestfile", str(digest_file),
                 f"oci-archive:{archive}", f"docker://127.0.0.1:{port}/{repository}:{image.tag}"],
                check=True, capture_output=True, text=True,
            )
            digests[image.ref] = digest_file.read_text().strip()
        overlay = work / "digests.yaml"
        overlay.write_text(yaml.safe_dump({"schema": "bake.catalog/v1", "image_digests": digests}))
        yield LocalRegistry(url, release, overlay)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
