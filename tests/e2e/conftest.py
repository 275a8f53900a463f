"""Fixtures of the end-to-end tests: the real CLI in subprocesses, one data dir per module.

The data dir is shared by the tests of a module so the Debian rootfs is bootstrapped once
(cold) and reused (warm); its embedded AWS is stopped when the module ends.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


@dataclass(frozen=True)
class BakeCli:
    """Runs ``python -m bake --data-dir <dir> ...`` as a user would, in a subprocess."""

    data_dir: Path

    def __call__(self, *args: str, timeout: float = 900, user: str | None = None,
                 env: dict[str, str] | None = None) -> Run:
        cmd = [sys.executable, "-m", "bake", "--data-dir", str(self.data_dir), *args]
        if user:
            cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
        env = {k: v for k, v in {**os.environ, **(env or {})}.items()
               if not k.startswith("AWS_ENDPOINT_URL")}
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
        )
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def images(self) -> list[dict]:
        """Local image directories and staging leftovers under the data dir."""
        base = self.data_dir / "images"
        return sorted(p.name for p in base.iterdir()) if base.exists() else []


@pytest.fixture(scope="session")
def bake_cli(tmp_path_factory) -> Iterator[BakeCli]:
    """A fresh data dir (one per session: the image baked in it is shared by the bake tests
    and the local cluster's) whose rootfs cache is the suite's shared one (see tests/local)."""
    data = tmp_path_factory.mktemp("e2e-data")
    shared = Path(os.environ.get("BAKE_TEST_DATA_DIR", "/var/tmp/bake-test-data")) / "cache"
    shared.mkdir(parents=True, exist_ok=True)
    (data / "cache").symlink_to(shared, target_is_directory=True)
    cli = BakeCli(data)
    yield cli
    cli("sandbox", "stop", timeout=60)


@pytest.fixture(scope="session")
def baked(bake_cli, standin_factory):
    """One real local bake of Kubernetes 1.30 (Debian's containerd and runc), shared by the
    session: the image tests check it, boot it, and the local cluster test forms a cluster of
    its VMs. Its stand-ins are the cluster flavor (tools/standin_k8s.py, real etcd)."""
    mirror = standin_factory(runtime="os-package", flavor="cluster")
    run = bake_cli(
        "ami", "--k8s", "1.30", "--local", "--mirror", mirror.url, "--catalog",
        str(mirror.overlay), "--output", "json",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run.json(), run.stderr
