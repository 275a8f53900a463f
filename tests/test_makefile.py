"""The Makefile as a new user meets it: `make help` lists every target, with values expanded."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
def test_make_help_expands_variables():
    out = subprocess.run(
        ["make", "-s", "help", "K8S=1.31"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "$(" not in out, out
    assert "Bake a Kubernetes 1.31 node image" in out
    for target in ("demo", "test", "test-fast", "lint", "golden", "bench"):
        assert f" {target} " in out.replace("\x1b[36m", " ").replace("\x1b[0m", " "), target
