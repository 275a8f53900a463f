"""The Debian root filesystem the local builder starts from (the local "parent image").

It stands in for the Debian cloud AMI (12 or 13) that EC2 Image Builder starts from. The suite
and package list are data (the ``local`` section of ``image-recipes/os/<os>.yaml``); the Debian
mirror is the HOST's configured one, read from ``/etc/apt/sources.list.d/*.sources`` (deb822,
``sources.list(5)``) and ``/etc/apt/sources.list`` (one-line format) — no host name is
hard-coded. The rootfs is made with mmdebstrap (fallback: debootstrap) and cached as an
uncompressed tarball under ``<data_dir>/cache/rootfs/<key>.tar`` where the key hashes package
list, suite, sources and arch; a warm build only unpacks it. Cache writes are atomic (temporary
file, then ``os.replace``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bake.errors import BuildError, EnvironmentProblem

Progress = Callable[[str], None]

DEBIAN_ARCH = {"amd64": "amd64", "arm64": "arm64"}
#: fstab root entry; the disk is made with ``mkfs.ext4 -L bake-root`` (see disk.py).
ROOT_LABEL = "bake-root"
FSTAB = (
    f"# bake: root file system (raw ext4 disk, label {ROOT_LABEL})\n"
    f"LABEL={ROOT_LABEL} / ext4 defaults,errors=remount-ro 0 1\n"
)


@dataclass(frozen=True)
class AptSource:
    """One ``deb`` source of the host: ``uri`` (e.g. ``http://deb.debian.org/debian``), ``suite``
    (``bookworm``, ``bookworm-security``, ...) and ``components`` (``("main",)``)."""

    uri: str
    suite: str
    components: tuple[str, ...]

    def line(self) -> str:
        """The one-line form, ``deb URI SUITE COMP...`` (what mmdebstrap takes as a MIRROR)."""
        return " ".join(["deb", self.uri, self.suite, *self.components])


@dataclass(frozen=True)
class ParentSpec:
    """The local parent image of one OS (the ``local`` section of ``image-recipes/os/<os>.yaml``,
    ``bake.oses``).

    Attributes:
        suite: Debian suite (``bookworm``); ``security_suite`` its security suite.
        variant: mmdebstrap/debootstrap variant (``minbase``).
        components: archive components (``("main",)``).
        packages: packages to include for the requested arch, sorted.
    """

    suite: str
    variant: str
    components: tuple[str, ...]
    packages: tuple[str, ...]
    security_suite: str = ""


def load_parent_spec(arch: str, os_name: str = "debian-12") -> ParentSpec:
    """Load the local parent spec of ``os_name`` for ``arch`` (``amd64``/``arm64``).

    Raises:
        EnvironmentProblem: unsupported arch.
        UsageError: unknown OS, or one the local builder cannot bootstrap.
    """
    if arch not in DEBIAN_ARCH:
        raise EnvironmentProblem(f"local builds support arch amd64 or arm64, not {arch!r}")
    from bake.oses import load_os

    parent = load_os(os_name).local_parent(arch)
    return ParentSpec(
        suite=parent.suite,
        variant=parent.variant,
        components=parent.components,
        packages=parent.packages,
        security_suite=parent.security_suite,
    )


def _parse_deb822(text: str) -> list[AptSource]:
    sources: list[AptSource] = []
    for stanza in _stanzas(text):
        if stanza.get("enabled", "yes").lower() == "no":
            continue
        if "deb" not in stanza.get("types", "").split():
            continue
        comps = tuple(stanza.get("components", "").split())
        for uri in stanza.get("uris", "").split():
            for suite in stanza.get("suites", "").split():
                sources.append(AptSource(uri.rstrip("/"), suite, comps))
    return sources


def _stanzas(text: str) -> list[dict[str, str]]:
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = None
    for raw in text.splitlines():
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if current:
                stanzas.append(current)
            current, key = {}, None
            continue
        if raw[0] in " \t" and key:  # continuation line
            current[key] += " " + raw.strip()
            continue
        if ":" in raw:
            key, _, value = raw.partition(":")
            key = key.strip().lower()
            current[key] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def _parse_one_line(text: str) -> list[AptSource]:
    sources: list[AptSource] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if parts[0] != "deb":
            continue
        parts = parts[1:]
        if parts and parts[0].startswith("["):  # options, e.g. [arch=amd64 signed-by=...]
            while parts and not parts[0].endswith("]"):
                parts.pop(0)
            parts = parts[1:]
        if len(parts) >= 2:
            sources.append(AptSource(parts[0].rstrip("/"), parts[1], tuple(parts[2:])))
    return sources


def host_apt_sources(
    sources_list: Path = Path("/etc/apt/sources.list"),
    sources_dir: Path = Path("/etc/apt/sources.list.d"),
) -> list[AptSource]:
    """All enabled ``deb`` sources configured on the host, in apt's reading order.

    ``sources.list`` (one-line format) first, then ``sources.list.d/*.list`` (one-line) and
    ``*.sources`` (deb822) in file-name order, as apt reads them (``sources.list(5)``).
    Returns an empty list when nothing is configured.
    """
    found: list[AptSource] = []
    if sources_list.is_file():
        found += _parse_one_line(sources_list.read_text(encoding="utf-8", errors="replace"))
    if sources_dir.is_dir():
        for path in sorted(sources_dir.iterdir()):
            text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
            if path.suffix == ".list":
                found += _parse_one_line(text)
            elif path.suffix == ".sources":
                found += _parse_deb822(text)
    return found


def debian_sources(suite: str, sources: Sequence[AptSource],
                   security_suite: str = "") -> list[AptSource]:
    """The host sources usable for a ``suite`` rootfs: those of ``suite`` itself and its
    ``-updates``/``-security`` companions, main mirror first. When the host has none for
    ``suite`` (a Debian 12 host baking Debian 13), the host's Debian mirrors serve it: the
    archive (a URI ending in ``/debian``) for ``suite`` and ``<suite>-updates``, the security
    archive (``/debian-security``) for ``security_suite`` (Debian mirrors carry every release).

    Raises:
        EnvironmentProblem: the host has no ``deb`` source for ``suite`` and no Debian mirror.
    """
    wanted = (suite, f"{suite}-updates", f"{suite}-security", f"{suite}/updates")
    picked = [s for s in sources if s.suite in wanted]
    picked.sort(key=lambda s: wanted.index(s.suite))
    if not picked:
        archives = [s for s in sources if s.uri.endswith("/debian")]
        security = [s for s in sources if s.uri.endswith("/debian-security")]
        if archives:
            main = archives[0]
            picked = [AptSource(main.uri, suite, main.components),
                      AptSource(main.uri, f"{suite}-updates", main.components)]
            if security:
                picked.append(AptSource(security[0].uri, security_suite or f"{suite}-security",
                                        security[0].components))
    if not picked or picked[0].suite != suite:
        raise EnvironmentProblem(
            f"no Debian mirror for {suite} in /etc/apt/sources.list or /etc/apt/sources.list.d: "
            f"add one (e.g. a 'deb <your mirror> {suite} main' line)"
        )
    return picked


def cache_key(spec: ParentSpec, sources: Sequence[AptSource], arch: str) -> str:
    """sha256 hex (first 24 chars) over package list, suite, variant, sources and arch."""
    blob = json.dumps(
        {
            "suite": spec.suite,
            "variant": spec.variant,
            "components": spec.components,
            "packages": spec.packages,
            "sources": [s.line() for s in sources],
            "arch": arch,
            "v": 1,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class RootfsResult:
    """What ``prepare_rootfs`` did: ``directory`` (the unpacked rootfs), ``cache`` (tarball),
    ``cached`` (True when the tarball already existed), ``seconds`` (wall time)."""

    directory: Path
    cache: Path
    cached: bool
    seconds: float


def _run(cmd: list[str], what: str, log: Path | None = None) -> None:
    with open(log, "ab") if log else open(os.devnull, "wb") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, check=False)
        if log:
            out.write(proc.stderr)
    if proc.returncode != 0:
        tail = (proc.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        hint = f"; log: {log}" if log else ""
        raise BuildError(f"{what} failed (exit {proc.returncode}): {tail}{hint}")


def build_rootfs_tar(
    out_tar: Path,
    spec: ParentSpec,
    sources: Sequence[AptSource],
    arch: str,
    log: Path | None = None,
) -> None:
    """Bootstrap a rootfs into the tarball ``out_tar`` with mmdebstrap (else debootstrap).

    Raises:
        EnvironmentProblem: neither tool is installed.
        BuildError: the bootstrap failed (last stderr line and log path in the message).
    """
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap:
        cmd = [
            mmdebstrap,
            "--mode=root",
            f"--variant={spec.variant}",
            f"--architectures={DEBIAN_ARCH[arch]}",
            f"--components={','.join(spec.components)}",
            f"--include={','.join(spec.packages)}",
            # No docs or man pages: smaller and faster (nodes do not need them).
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-include=/usr/share/doc/*/copyright",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            "--aptopt=Acquire::Retries \"3\"",
            spec.suite,
            str(out_tar),
            *[s.line() for s in sources],
        ]
        _run(cmd, "mmdebstrap", log)
        return
    debootstrap = shutil.which("debootstrap")
    if not debootstrap:
        raise EnvironmentProblem(
            "neither mmdebstrap nor debootstrap is installed: apt-get install mmdebstrap"
        )
    with tempfile.TemporaryDirectory(dir=out_tar.parent, prefix=".debootstrap-") as tmp:
        root = Path(tmp) / "root"
        _run(
            [
                debootstrap,
                f"--variant={spec.variant}",
                f"--arch={DEBIAN_ARCH[arch]}",
                f"--components={','.join(spec.components)}",
                f"--include={','.join(spec.packages)}",
                spec.suite,
                str(root),
                sources[0].uri,
            ],
            "debootstrap",
            log,
        )
        extra = "\n".join(s.line() for s in sources) + "\n"
        (root / "etc/apt/sources.list").write_text(extra, encoding="utf-8")
        _run(["tar", "--numeric-owner", "--xattrs", "-C", str(root), "-cf", str(out_tar), "."],
             "tar of the debootstrap rootfs", log)


def unpack(tarball: Path, dest: Path) -> None:
    """Unpack a rootfs tarball into the (empty or missing) directory ``dest``, keeping owners,
    modes and xattrs (``tar --numeric-owner --xattrs -p``)."""
    dest.mkdir(parents=True, exist_ok=True)
    _run(
        ["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-p", "-C", str(dest),
         "-xf", str(tarball)],
        f"unpacking {tarball}",
    )


def prepare_rootfs(
    dest: Path,
    *,
    data_dir: Path,
    arch: str,
    progress: Progress = lambda _m: None,
    sources: Sequence[AptSource] | None = None,
    spec: ParentSpec | None = None,
    log: Path | None = None,
) -> RootfsResult:
    """Put the local parent rootfs for ``arch`` into ``dest``, from cache when possible.

    Args:
        dest: directory to fill (created; should be empty).
        data_dir: bake data dir; the cache lives in ``<data_dir>/cache/rootfs/<key>.tar``.
        arch: ``amd64`` or ``arm64`` (arm64 needs binfmt/qemu-user on an amd64 host).
        progress: callback for one-line progress messages.
        sources: apt sources to use (default: the host's, see ``host_apt_sources``).
        spec: parent spec (default: Debian 12's, ``image-recipes/os/debian-12.yaml``).
        log: file the bootstrap tool's output is appended to.
    Returns:
        a ``RootfsResult``; the rootfs has the ``LABEL=bake-root`` fstab root entry, hostname
        ``localhost`` and an empty ``/etc/resolv.conf``.
    Raises:
        EnvironmentProblem, BuildError.
    """
    start = time.monotonic()
    spec = spec or load_parent_spec(arch)
    picked = debian_sources(spec.suite, host_apt_sources() if sources is None else sources,
                            spec.security_suite)
    cache_dir = data_dir / "cache" / "rootfs"
    cache_dir.mkdir(parents=True, exist_ok=True)
    tarball = cache_dir / f"{cache_key(spec, picked, arch)}.tar"
    cached = tarball.is_file()
    if not cached:
        progress(
            f"bootstrapping Debian {spec.suite} rootfs ({len(spec.packages)} packages) from "
            f"{picked[0].uri} (cold cache; a few minutes)"
        )
        fd, tmp_name = tempfile.mkstemp(dir=cache_dir, prefix=f".{tarball.stem}-", suffix=".tar")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            build_rootfs_tar(tmp, spec, picked, arch, log)
            os.replace(tmp, tarball)
        finally:
            tmp.unlink(missing_ok=True)
    progress(f"unpacking cached rootfs {tarball.name}")
    unpack(tarball, dest)
    (dest / "etc/fstab").write_text(FSTAB, encoding="utf-8")
    # Nothing of the build host in the image: the bootstrap tools copy its name and resolver;
    # on EC2, cloud-init and DHCP set both at boot.
    (dest / "etc/hostname").write_text("localhost\n", encoding="utf-8")
    resolv = dest / "etc/resolv.conf"
    if resolv.is_file() and not resolv.is_symlink():
        resolv.write_text("", encoding="utf-8")
    # The system locale of Debian's cloud images. Unset, cloud-init's locale module falls back
    # to en_US.UTF-8, which no locale is generated for, and fails cloud-config.service.
    (dest / "etc/default").mkdir(parents=True, exist_ok=True)
    (dest / "etc/default/locale").write_text("LANG=C.UTF-8\n", encoding="utf-8")
    return RootfsResult(dest, tarball, cached, time.monotonic() - start)
