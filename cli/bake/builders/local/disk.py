"""Disk outputs of a local build, made from the finished root filesystem directory.

Three outputs, no loop mounts: ``rootfs.tar.zst`` (tar with numeric owners and xattrs,
zstd-compressed), ``disk.raw`` (a sparse raw ext4 file system made directly from the directory
with ``mkfs.ext4 -d`` and label ``bake-root``, e2fsprogs >= 1.43, mke2fs(8)), and ``vmlinuz`` /
``initrd.img`` copied out of the rootfs's ``/boot`` so that ``qemu-system-x86_64 -kernel vmlinuz
-initrd initrd.img -append 'root=/dev/vda console=ttyS0' -drive file=disk.raw,format=raw,if=virtio``
boots it. The fstab root entry (``LABEL=bake-root``) is written by rootfs.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bake.errors import BuildError, EnvironmentProblem

MIB = 1024 * 1024
LABEL = "bake-root"


@dataclass(frozen=True)
class DiskOutputs:
    """Paths of the outputs: ``rootfs_archive``, ``disk``, ``kernel``, ``initrd``, and the disk
    size ``disk_mib`` (MiB)."""

    rootfs_archive: Path
    disk: Path
    kernel: Path
    initrd: Path
    disk_mib: int


def used_bytes(directory: Path) -> int:
    """Apparent size in bytes of everything under ``directory`` (``du -sb``, no crossing of
    mount points)."""
    proc = subprocess.run(["du", "-sbx", str(directory)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"cannot measure {directory}: {proc.stderr.strip()}")
    return int(proc.stdout.split()[0])


def check_free_space(directory: Path, needed_bytes: int, what: str = "the local build") -> None:
    """Raise ``EnvironmentProblem`` when the file system of ``directory`` has less than
    ``needed_bytes`` free; the message says how many MiB are needed and free."""
    directory.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(directory).free
    if free < needed_bytes:
        raise EnvironmentProblem(
            f"not enough free disk space in {directory} for {what}: need "
            f"{needed_bytes // MIB} MiB, {free // MIB} MiB free; free some space or set "
            "BAKE_DATA_DIR to a larger disk"
        )


def disk_size_mib(rootfs_bytes: int, minimum_mib: int = 0) -> int:
    """Size of the raw disk in MiB: the rootfs plus 50 % and 512 MiB of headroom (ext4
    metadata, journal, room for the node to write logs), rounded up to 64 MiB, at least
    ``minimum_mib``."""
    mib = int(rootfs_bytes * 1.5 / MIB) + 512
    mib = -(-mib // 64) * 64
    return max(mib, minimum_mib)


def _newest(boot: Path, prefix: str) -> Path:
    def version_key(path: Path) -> list[int]:
        return [int(n) for n in re.findall(r"\d+", path.name[len(prefix):])]

    found = sorted((p for p in boot.glob(prefix + "*") if p.is_file()), key=version_key)
    if not found:
        raise BuildError(
            f"no /boot/{prefix}* in the rootfs: the local parent image must include a kernel "
            "package (linux-image-<arch>) and initramfs-tools"
        )
    return found[-1]


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        tail = (proc.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        raise BuildError(f"{what} failed (exit {proc.returncode}): {tail}")


def make_outputs(rootfs: Path, out_dir: Path, minimum_mib: int = 0) -> DiskOutputs:
    """Write ``rootfs.tar.zst``, ``disk.raw``, ``vmlinuz`` and ``initrd.img`` into ``out_dir``.

    Args:
        rootfs: the finished root filesystem directory (nothing mounted below it).
        out_dir: output directory (created).
        minimum_mib: smallest disk size in MiB (0: just what the rootfs needs).
    Raises:
        EnvironmentProblem: not enough free space (checked first) or a tool missing.
        BuildError: a tool failed, or the rootfs has no kernel/initrd.
    """
    for tool in ("mkfs.ext4", "zstd", "tar"):
        if not shutil.which(tool):
            raise EnvironmentProblem(f"{tool} is not installed: apt-get install e2fsprogs zstd tar")
    out_dir.mkdir(parents=True, exist_ok=True)
    used = used_bytes(rootfs)
    size_mib = disk_size_mib(used, minimum_mib)
    # disk.raw is sparse: it takes about the rootfs size; the archive at most that again.
    check_free_space(out_dir, 2 * used + 64 * MIB, "the disk image and rootfs archive")

    kernel_src = _newest(rootfs / "boot", "vmlinuz-")
    initrd_src = _newest(rootfs / "boot", "initrd.img-")
    kernel, initrd = out_dir / "vmlinuz", out_dir / "initrd.img"
    shutil.copyfile(kernel_src, kernel)
    shutil.copyfile(initrd_src, initrd)

    archive = out_dir / "rootfs.tar.zst"
    _run(
        ["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-I", "zstd -T0 -3",
         "-C", str(rootfs), "-cf", str(archive), "."],
        "rootfs archive (tar | zstd)",
    )
    disk = out_dir / "disk.raw"
    disk.unlink(missing_ok=True)
    with open(disk, "wb") as f:
        f.truncate(size_mib * MIB)
    _run(
        ["mkfs.ext4", "-q", "-F", "-L", LABEL, "-d", str(rootfs), str(disk), f"{size_mib}M"],
        "mkfs.ext4 -d",
    )
    return DiskOutputs(archive, disk, kernel, initrd, size_mib)
