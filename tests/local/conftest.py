"""Fixtures for the local builder tests: a tiny chroot-able rootfs, an HTTP server on 127.0.0.1.

The tiny rootfs is the host's ``bash`` plus the shared libraries ``ldd`` lists, copied into a
temporary directory: enough for ``chroot <dir> /bin/bash -e -c`` with shell built-ins, built in
milliseconds without any download. The real Debian rootfs is used only by the slow test.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest


def make_tiny_rootfs(root: Path) -> Path:
    """Copy /bin/bash and its shared libraries into ``root`` (merged-/usr layout)."""
    for d in ("usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "etc", "proc", "sys", "dev", "tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for link, target in (("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"),
                         ("lib64", "usr/lib64")):
        os.symlink(target, root / link)
    bash = Path(shutil.which("bash")).resolve()
    shutil.copy2(bash, root / "usr/bin/bash")
    out = subprocess.run(["ldd", str(bash)], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        lib = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
        if lib.startswith("/"):
            real = Path(lib)
            dest = root / lib.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(real.resolve(), dest)
    return root


@pytest.fixture
def tiny_rootfs(tmp_path: Path) -> Path:
    return make_tiny_rootfs(tmp_path / "rootfs")


class Served:
    def __init__(self, directory: Path, url: str) -> None:
        self.directory = directory
        self.url = url

    def add(self, name: str, data: bytes) -> str:
        (self.directory / name).write_bytes(data)
        return f"{self.url}/{name}"


@pytest.fixture
def http_files(tmp_path: Path) -> Iterator[Served]:
    """An HTTP server on 127.0.0.1 (random port) serving a temporary directory."""
    directory = tmp_path / "www"
    directory.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Served(directory, f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
