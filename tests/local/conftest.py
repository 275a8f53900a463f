"""Fixtures for the local builder tests: a tiny chroot-able rootfs, an HTTP server on 127.0.0.1.

The tiny rootfs is the host's ``bash`` plus the shared libraries ``ldd`` lists, copied into a
temporary directory: enough for ``chroot <dir> /bin/bash -e -c`` with shell built-ins, built in
milliseconds without any download. The real Debian rootfs is used only by the slow test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
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
