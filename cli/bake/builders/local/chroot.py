"""The chroot the local runner works in: target paths mapped into the root filesystem (symbolic
links followed inside it), ``/proc``, ``/sys``, ``/dev`` mounted and always unmounted,
services kept from starting (``policy-rc.d``), the host's ``resolv.conf`` for apt.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from bake.builders.local.awstoe import StepFailure
from bake.errors import BuildError

CHROOT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
    "TERM": "dumb",
}


#: ``policy-rc.d`` (invoke-rc.d(8)): exit 101 = "action forbidden", so apt never starts services.
POLICY_RC_D = "#!/bin/sh\n# bake: no service starts while building the image\nexit 101\n"


def rootfs_path(root: Path, path: str) -> Path:
    """Map an absolute path on the target to the host path inside ``root``.

    Symbolic links met on the way (e.g. bookworm's ``/lib -> usr/lib``) are followed *inside*
    the rootfs: an absolute link target is re-rooted, ``..`` never climbs above ``root``. The
    last component is not resolved when it is a symlink (so DeleteFile removes the link).
    """
    root = Path(root)
    parts = [p for p in PurePosixPath("/", path).parts[1:]]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        if parts and candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise StepFailure(f"too many symbolic links resolving {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in PurePosixPath(target).parts if p != "/"] + parts
            continue
        resolved.append(part)
    return root.joinpath(*resolved)


def _umount(target: Path) -> None:
    if subprocess.run(["umount", str(target)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def active_mounts(root: Path) -> list[str]:
    """Mount points at or below ``root`` (from ``/proc/self/mountinfo``)."""
    prefix = str(Path(root).resolve())
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return found


@contextmanager
def chroot_mounts(root: Path) -> Iterator[Path]:
    """Mount ``/proc``, ``/sys``, ``/dev`` and ``/dev/pts`` into ``root``, install a
    ``policy-rc.d`` that stops services from starting and the host's ``resolv.conf`` for apt;
    undo all of it on exit, whatever happened (``umount``, ``umount -l`` as fallback).

    Yields:
        ``root``.
    """
    root = Path(root).resolve()
    mounted: list[Path] = []
    created: list[Path] = []
    resolv_backup: tuple[Path, bytes | None, str | None] | None = None
    try:
        for src, rel, args in (
            ("proc", "proc", ["-t", "proc"]),
            ("sysfs", "sys", ["-t", "sysfs", "-o", "ro"]),
            ("/dev", "dev", ["--bind"]),
            ("devpts", "dev/pts", ["-t", "devpts", "-o", "newinstance,ptmxmode=0666"]),
        ):
            target = root / rel
            target.mkdir(parents=True, exist_ok=True)
            proc = subprocess.run(["mount", *args, src, str(target)], capture_output=True)
            if proc.returncode != 0:
                raise BuildError(
                    f"cannot mount {rel} into {root}: {proc.stderr.decode().strip()}"
                )
            mounted.append(target)
        policy = root / "usr/sbin/policy-rc.d"
        if policy.parent.is_dir() and not policy.exists():
            policy.write_text(POLICY_RC_D, encoding="utf-8")
            policy.chmod(0o755)
            created.append(policy)
        resolv = root / "etc/resolv.conf"
        host_resolv = Path("/etc/resolv.conf")
        if resolv.parent.is_dir() and host_resolv.is_file():
            link = os.readlink(resolv) if resolv.is_symlink() else None
            old = resolv.read_bytes() if resolv.is_file() and not link else None
            resolv_backup = (resolv, old, link)
            if resolv.is_symlink() or resolv.exists():
                resolv.unlink()
            shutil.copyfile(host_resolv, resolv)
        yield root
    finally:
        if resolv_backup:
            path, old, link = resolv_backup
            path.unlink(missing_ok=True)
            if link is not None:
                os.symlink(link, path)
            elif old is not None:
                path.write_bytes(old)
        for path in created:
            path.unlink(missing_ok=True)
        for target in reversed(mounted):
            _umount(target)
