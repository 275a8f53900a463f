"""Fixtures for the verify tests: a passing fake image tree built from the stand-ins."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from tests.support.fake_image import build_fake_image

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="testinfra's chroot backend runs `chroot`, which needs root")


@pytest.fixture(scope="session")
def good_image(tmp_path_factory, standin_mirror) -> Path:
    """A fake image root filesystem that passes the whole suite (do not modify: copy it)."""
    root = tmp_path_factory.mktemp("good-image") / "rootfs"
    build_fake_image(root, standin_mirror)
    return root


@pytest.fixture
def image_copy(good_image, tmp_path) -> Path:
    """A private copy of ``good_image`` that a test may break."""
    root = tmp_path / "rootfs"
    shutil.copytree(good_image, root, symlinks=True)
    return root
