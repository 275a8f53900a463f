"""The local builder as a ``bake.builders.contract.Builder``: ``OnThisMachine``.

``LocalBuilder`` (builder.py) knows chroots, staging directories and disks; ``OnThisMachine``
gives its work the shape every builder has: ``build(documents) -> BuiltImage`` (one AMI for
``bake.publish.publish`` to register in the embedded AWS, the manifest, the logs), ``commit``
(``build.json`` written, staging renamed into ``<data_dir>/images/<build_id>``) and ``discard``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bake.builders.contract import BuiltImage
from bake.builders.local.builder import LocalBuilder, LocalImage


def new_build_id(release: Any, now: datetime | None = None) -> str:
    """``<kubernetes_version>-<arch>-<YYYYmmddTHHMMSSZ>`` (UTC) of a ``bake.catalog.Release``."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{release.kubernetes_version}-{release.arch}-{stamp}"


def manifest_sha256(path: Path) -> str:
    """SHA-256 hex of the image manifest file at ``path``."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def local_paths(image: LocalImage) -> dict[str, str]:
    """A local image's paths: ``directory``, ``rootfs_archive``, ``disk``, ``kernel``,
    ``initrd``, ``manifest`` (what ``bake ami --local --output json`` prints as ``local``)."""
    return {
        "directory": str(image.directory),
        "rootfs_archive": str(image.rootfs_archive),
        "disk": str(image.disk),
        "kernel": str(image.kernel),
        "initrd": str(image.initrd),
        "manifest": str(image.manifest_path),
    }


class OnThisMachine:
    """Bakes with a ``LocalBuilder`` (a ``bake.builders.contract.Builder``).

    Args:
        builder: the configured ``LocalBuilder``.
        build_id: the build id to use (default: ``new_build_id`` of the documents' release).
    """

    name = "local"

    def __init__(self, builder: LocalBuilder, build_id: str | None = None) -> None:
        self.builder = builder
        self.build_id = build_id

    def preflight(self) -> None:
        """Root, tools and free disk space (``LocalBuilder.preflight``)."""
        self.builder.preflight()

    def build(self, documents: Any) -> BuiltImage:
        """Build and test ``documents`` in staging.

        Returns:
            a ``BuiltImage`` with one AMI to register (``image_id`` ``None``), the manifest and
            its SHA-256, ``local_path`` and ``logs`` where ``commit`` will put them, and the
            staged ``LocalImage`` as ``handle``.

        Raises:
            as ``LocalBuilder.build`` (staging removed).
        """
        release = documents.release
        build_id = self.build_id or new_build_id(release)
        staged = self.builder.build(documents, build_id)
        final = self.builder.final_directory(build_id)
        return BuiltImage.of(
            release,
            build_id,
            manifest_sha256=manifest_sha256(staged.manifest_path),
            local_path=str(final),
            logs=str(final / staged.logs_dir.relative_to(staged.directory)),
            manifest=staged.manifest,
            details={"content_hash": documents.content_hash, "local": local_paths(staged)},
            handle=staged,
        )

    def commit(self, image: BuiltImage, publications: Sequence[Any]) -> BuiltImage:
        """Write ``build.json`` (release, content hash, manifest digest, the published AMI and
        parameter) and move the image into ``<data_dir>/images/<build_id>``.

        Returns:
            ``image`` with the final paths in ``details["local"]`` and as ``handle``.

        Raises:
            BuildError: the final directory exists already.
        """
        home = publications[0]
        build_info = {
            "build_id": image.build_id,
            "kubernetes_version": image.kubernetes_version,
            "minor": image.minor,
            "arch": image.arch,
            "os": image.os,
            "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "content_hash": image.details.get("content_hash", ""),
            "manifest_sha256": image.manifest_sha256,
            "image_id": home.image_id,
            "ssm_parameter": home.ssm_parameter,
        }
        final = self.builder.commit(image.handle, build_info)
        return replace(image, details={**image.details, "local": local_paths(final)}, handle=final)

    def discard(self, image: BuiltImage) -> None:
        """Remove the staged (or committed) image directory."""
        self.builder.discard(image.handle)
