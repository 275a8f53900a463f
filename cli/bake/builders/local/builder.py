"""The local image builder: parent rootfs -> components' phases -> test hook -> disk outputs.

``LocalBuilder(options, progress).build(documents, build_id)`` does, in
``<data_dir>/images/.staging-<build_id>/``: preflight (root, tools, free space), the Debian 12
parent rootfs (cached, see rootfs.py), the build and validate phases of every component in recipe
order, then their test phases (runner.py), then ``options.after_test(rootfs_dir, log_dir)`` (where
bake plugs in testinfra), then ``rootfs.tar.zst``, ``disk.raw``, ``vmlinuz``, ``initrd.img`` and
``image-manifest.json`` (disk.py). ``commit`` writes ``build.json`` and renames the staging
directory to ``<data_dir>/images/<build_id>/``; ``discard`` removes it. On any failure inside
``build`` the mounts are gone and the staging directory is removed (unless ``keep_failed``), so
no half-made image is ever left where a later run would pick it up; its step logs are kept in
``<data_dir>/logs/failed/<build_id>/`` and the error message names the log file there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bake.builders.local import disk as disk_mod
from bake.builders.local.chroot import active_mounts
from bake.builders.local.rootfs import AptSource, load_parent_spec, prepare_rootfs
from bake.builders.local.runner import LocalRunner
from bake.errors import BakeError, BuildError, EnvironmentProblem

Progress = Callable[[str], None]
MANIFEST_IN_IMAGE = "etc/bake/image-manifest.json"
REQUIRED_TOOLS = ("chroot", "mount", "umount", "tar", "zstd", "mkfs.ext4", "du")


@dataclass(frozen=True)
class LocalBuildOptions:
    """How to build locally.

    Attributes:
        data_dir: bake data dir (``cache/rootfs/``, ``images/``).
        debian_mirror: Debian archive URL for the parent rootfs (``None``: the host's apt
            sources).
        keep_failed: keep a failed build's staging directory for inspection.
        keep_rootfs: keep the unpacked ``rootfs/`` directory in the image directory.
        after_test: ``after_test(rootfs_dir, log_dir)`` called after the components' test
            phases; raise a ``BakeError`` to fail the build.
        min_free_mib: free space (MiB) required in ``data_dir`` before starting.
        disk_min_mib: smallest raw disk size in MiB (0: just what the rootfs needs).
        parameters: per component name, values for its document ``parameters``.
    """

    data_dir: Path
    debian_mirror: str | None = None
    keep_failed: bool = False
    keep_rootfs: bool = False
    after_test: Callable[[Path, Path], None] | None = None
    min_free_mib: int = 3072
    disk_min_mib: int = 0
    parameters: dict[str, dict[str, str]] | None = None


@dataclass(frozen=True)
class LocalImage:
    """A built local image (in staging until ``LocalBuilder.commit``)."""

    build_id: str
    directory: Path
    rootfs_archive: Path
    disk: Path
    kernel: Path
    initrd: Path
    manifest: dict[str, Any]
    manifest_path: Path
    logs_dir: Path


def remove_tree(path: Path) -> None:
    """Remove ``path`` recursively, after unmounting anything still mounted below it; refuses
    (``BuildError``) rather than delete through a mount point."""
    if not path.exists():
        return
    for point in sorted(active_mounts(path), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)
    left = active_mounts(path)
    if left:
        raise BuildError(f"cannot remove {path}: still mounted: {', '.join(left)}; umount them")
    shutil.rmtree(path)


class LocalBuilder:
    """Builds images on this machine (see the module docstring).

    Args:
        options: a ``LocalBuildOptions``.
        progress: callback for one-line progress messages.
    """

    def __init__(self, options: LocalBuildOptions, progress: Progress = lambda _m: None) -> None:
        self.options = options
        self.progress = progress
        self.images_dir = Path(options.data_dir) / "images"

    def staging_directory(self, build_id: str) -> Path:
        """``<data_dir>/images/.staging-<build_id>``."""
        return self.images_dir / f".staging-{build_id}"

    def failed_logs_directory(self, build_id: str) -> Path:
        """``<data_dir>/logs/failed/<build_id>``: a failed build's step logs (the staging
        directory itself is removed; the logs are outside ``images/`` so nothing there looks
        like an image)."""
        return Path(self.options.data_dir) / "logs" / "failed" / build_id

    def final_directory(self, build_id: str) -> Path:
        """``<data_dir>/images/<build_id>`` (where ``commit`` puts the image)."""
        return self.images_dir / build_id

    def preflight(self) -> None:
        """Check root, tools and free space.

        Raises:
            EnvironmentProblem: one line saying what is missing and how to fix it.
        """
        if os.geteuid() != 0:
            raise EnvironmentProblem("local builds need root: run as root or with sudo")
        missing = [t for t in REQUIRED_TOOLS if not shutil.which(t)]
        if not (shutil.which("mmdebstrap") or shutil.which("debootstrap")):
            missing.append("mmdebstrap")
        if missing:
            raise EnvironmentProblem(
                f"local builds need {', '.join(missing)}: apt-get install mmdebstrap "
                "e2fsprogs zstd (or run: sudo make deb-deps)"
            )
        disk_mod.check_free_space(
            self.images_dir, self.options.min_free_mib * disk_mod.MIB, "a local build"
        )

    def build(self, documents: Any, build_id: str) -> LocalImage:
        """Build the image described by ``documents`` into the staging directory.

        Args:
            documents: a ``bake.render.ImageDocuments`` (``.components`` in recipe order and
                ``.release.arch`` and ``.release.os``), or any object with ``components``
                (Documents or ``(name, data, text)`` tuples), ``arch`` and optionally ``os``
                (default ``debian-12``).
            build_id: ``<kubernetes_version>-<arch>-<YYYYmmddTHHMMSSZ>``.
        Returns:
            the staged ``LocalImage``; call ``commit`` or ``discard`` next.
        Raises:
            EnvironmentProblem, ArtifactError, BuildError (or what ``after_test`` raises);
            staging removed unless ``keep_failed``, nothing mounted.
        """
        self.preflight()
        arch = getattr(getattr(documents, "release", None), "arch", None) or documents.arch
        os_name = (getattr(getattr(documents, "release", None), "os", None)
                   or getattr(documents, "os", "debian-12"))
        if self.final_directory(build_id).exists():
            raise BuildError(f"image {build_id} already exists in {self.images_dir}")
        staging = self.staging_directory(build_id)
        remove_tree(staging)  # a leftover of a killed run with the same id
        staging.mkdir(parents=True)
        try:
            return self._build(documents, arch, os_name, build_id, staging)
        except BaseException as exc:
            for point in sorted(active_mounts(staging), key=len, reverse=True):
                subprocess.run(["umount", "-l", point], capture_output=True)
            if self.options.keep_failed:
                self.progress(f"build failed; kept {staging} for inspection (--keep-failed)")
                raise
            kept_logs = self.failed_logs_directory(build_id)
            if (staging / "logs").is_dir():
                remove_tree(kept_logs)
                kept_logs.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / "logs", kept_logs)
            remove_tree(staging)
            if isinstance(exc, BakeError) and str(staging / "logs") in exc.message:
                # the message names a log file: point it at where the logs are now
                moved = type(exc)(exc.message.replace(str(staging / "logs"), str(kept_logs)))
                raise moved from exc
            raise

    def _build(self, documents: Any, arch: str, os_name: str, build_id: str,
               staging: Path) -> LocalImage:
        logs = staging / "logs"
        logs.mkdir()
        rootfs = staging / "rootfs"
        sources = None
        spec = load_parent_spec(arch, os_name)
        if self.options.debian_mirror:
            sources = [AptSource(self.options.debian_mirror.rstrip("/"), spec.suite,
                                 spec.components)]
        result = prepare_rootfs(
            rootfs, data_dir=Path(self.options.data_dir), arch=arch, progress=self.progress,
            sources=sources, spec=spec, log=logs / "rootfs.log",
        )
        self.progress(
            f"rootfs ready in {result.seconds:.0f} s ({'cached' if result.cached else 'cold'})"
        )
        runner = LocalRunner(rootfs, logs, self.progress, self.options.parameters)
        components = list(documents.components)
        runner.run_phases(components, ("build", "validate"))
        runner.run_phases(components, ("test",))
        if self.options.after_test:
            test_logs = logs / "after-test"
            test_logs.mkdir(exist_ok=True)
            self.options.after_test(rootfs, test_logs)
        in_image = rootfs / MANIFEST_IN_IMAGE
        if not in_image.is_file():
            raise BuildError(
                f"the components did not write /{MANIFEST_IN_IMAGE}: check the image manifest "
                f"component; logs: {logs}"
            )
        manifest_path = staging / "image-manifest.json"
        shutil.copyfile(in_image, manifest_path)
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise BuildError(f"/{MANIFEST_IN_IMAGE} is not valid JSON: {exc}") from None
        self.progress("writing rootfs.tar.zst, disk.raw (ext4), vmlinuz, initrd.img")
        outputs = disk_mod.make_outputs(rootfs, staging, self.options.disk_min_mib)
        if not self.options.keep_rootfs:
            remove_tree(rootfs)
        return LocalImage(
            build_id=build_id,
            directory=staging,
            rootfs_archive=outputs.rootfs_archive,
            disk=outputs.disk,
            kernel=outputs.kernel,
            initrd=outputs.initrd,
            manifest=manifest,
            manifest_path=manifest_path,
            logs_dir=logs,
        )

    def commit(self, image: LocalImage, build_info: dict[str, Any]) -> LocalImage:
        """Write ``build.json`` (``build_info``) and rename staging to the final directory.

        Returns:
            the ``LocalImage`` with its final paths.
        Raises:
            BuildError: the final directory exists already.
        """
        (image.directory / "build.json").write_text(
            json.dumps(build_info, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        final = self.final_directory(image.build_id)
        if final.exists():
            raise BuildError(f"image {image.build_id} already exists in {self.images_dir}")
        os.rename(image.directory, final)

        def moved(path: Path) -> Path:
            return final / Path(path).relative_to(image.directory)

        return replace(
            image,
            directory=final,
            rootfs_archive=moved(image.rootfs_archive),
            disk=moved(image.disk),
            kernel=moved(image.kernel),
            initrd=moved(image.initrd),
            manifest_path=moved(image.manifest_path),
            logs_dir=moved(image.logs_dir),
        )

    def discard(self, image: LocalImage) -> None:
        """Remove a staged (or committed) image directory."""
        remove_tree(Path(image.directory))
