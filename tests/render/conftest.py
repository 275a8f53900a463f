"""Fixtures for the rendering tests: releases from the shipped catalog and test overlays.

The image-archive overlay gives every image of the kubeadm set a made-up SHA-256 (the SHA-256 of
its reference): this machine cannot pull registry images, and rendering only needs the digests.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from bake.catalog import ARCHES, load_catalog, resolve


def image_archive_overlay(path: Path, minor_versions=("1.30.12", "1.34")) -> Path:
    """Write a catalog overlay with an archive SHA-256 for every image of the given releases."""
    base = load_catalog()
    archives: dict[str, dict[str, str]] = {}
    for arch in ARCHES:
        for request in minor_versions:
            release = resolve(base, request, arch)
            for image in release.images:
                archives.setdefault(arch, {})[image.ref] = hashlib.sha256(
                    f"{arch}/{image.ref}".encode()
                ).hexdigest()
    path.write_text(yaml.safe_dump({"schema": "bake.catalog/v1", "image_archives": archives}))
    return path


@pytest.fixture(scope="session")
def images_overlay(tmp_path_factory) -> Path:
    """A catalog overlay holding image archive SHA-256s for 1.30.12 and 1.34 (both arches)."""
    return image_archive_overlay(tmp_path_factory.mktemp("overlay") / "images.yaml")


@pytest.fixture(scope="session")
def os_package_overlay(tmp_path_factory) -> Path:
    """A catalog overlay switching 1.30's containerd and runc to Debian's packages."""
    path = tmp_path_factory.mktemp("overlay") / "os-packages.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "schema": "bake.catalog/v1",
                "kubernetes": {
                    "1.30": {
                        "containerd": {"source": "os-package", "package": "containerd"},
                        "runc": {"source": "os-package", "package": "runc"},
                    }
                },
            }
        )
    )
    return path
