"""Build a tiny fake "baked image" root filesystem laid out per the image layout contract.

The tree holds the stand-in binaries from a ``StandinMirror`` installed where the components
install the real ones, the config files and systemd links the components write, the staged
image archives and a matching ``/etc/bake/image-manifest.json``. So that testinfra's chroot
backend can run commands in it, the host's ``dash`` (as ``/bin/sh``) and the few coreutils the
suite uses (uname, cat, stat, sha256sum, cut, ls) are copied in with their shared libraries
(found with ``ldd``). It is not a bootable image: it lets the suite be tested in seconds.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

from bake.render.model import etcd_client_tools

TOOLBOX = ("dash", "uname", "cat", "stat", "sha256sum", "cut", "ls", "dpkg-query")
# os-package artifacts: what the fake dpkg database records (Debian 12 versions)
DPKG_VERSIONS = {"containerd": "1.6.20~ds1-1+deb12u3", "runc": "1.1.5+ds1-1+deb12u1"}
OS_PACKAGE_FILES = {
    "containerd": ("/usr/bin/containerd", "/usr/bin/ctr", "/usr/bin/containerd-shim-runc-v2"),
    "runc": ("/usr/sbin/runc",),
}
LIB_RE = re.compile(r"(/\S+\.so[.\d]*)")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _put(root: Path, path: str, data: bytes | str, mode: int = 0o644) -> Path:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data.encode() if isinstance(data, str) else data)
    target.chmod(mode)
    return target


def _link(root: Path, path: str, to: str) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    target.symlink_to(to)


def install_toolbox(root: Path) -> None:
    """Copy dash (as /bin/sh) and a few coreutils with their libraries into ``root``
    (merged-/usr layout, as on Debian 12)."""
    for d in ("usr/bin", "usr/sbin", "usr/lib", "usr/lib64"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for name, to in (("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"),
                     ("lib64", "usr/lib64")):
        if not (root / name).exists():
            (root / name).symlink_to(to)
    libs: set[str] = set()
    for tool in TOOLBOX:
        src = shutil.which(tool)
        assert src, f"host lacks {tool}"
        shutil.copy2(os.path.realpath(src), root / "usr/bin" / tool)
        out = subprocess.run(["ldd", src], capture_output=True, text=True, check=False).stdout
        libs.update(LIB_RE.findall(out))
    for lib in libs:
        dest = root / lib.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(lib), dest)
    _link(root, "/usr/bin/sh", "dash")


def _extract(archive: Path, dest: Path, strip_dirs: bool = False,
             only: tuple[str, ...] = ()) -> list[Path]:
    """Unpack a tar.gz's regular files under ``dest`` (only those named ``only``, when given);
    returns the installed paths."""
    installed = []
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if not member.isfile() or (only and Path(member.name).name not in only):
                continue
            name = Path(member.name).name if strip_dirs else member.name.removeprefix("./")
            data = tar.extractfile(member).read()
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            target.chmod(member.mode)
            installed.append(target)
    return installed


CONTAINERD_CONFIG = """\
version = 2
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = true
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "/etc/containerd/certs.d"
"""
UNIT = "[Unit]\nDescription={d}\n[Service]\nExecStart={e}\n[Install]\nWantedBy=multi-user.target\n"


def build_fake_image(root: Path, mirror) -> dict:
    """Lay out a complete, passing fake image under ``root`` from ``mirror``'s stand-ins.

    Args:
        root: an empty (or absent) directory.
        mirror: a ``tests.support.fixtures.StandinMirror``; with ``runtime="os-package"``,
            containerd and runc are fake files recorded in a fake dpkg database
            (``DPKG_VERSIONS``), as Debian's packages would be.
    Returns:
        the image manifest written to ``root/etc/bake/image-manifest.json``.
    """
    root.mkdir(parents=True, exist_ok=True)
    install_toolbox(root)
    release = mirror.release
    artifacts = []
    status = []
    for art in release.artifacts:
        if art.source == "os-package":
            version = DPKG_VERSIONS[art.name]
            installed = [_put(root, path, f"#!/bin/sh\necho '{Path(path).name} {version} "
                              "(fake Debian package file)'\n", 0o755)
                         for path in OS_PACKAGE_FILES[art.name]]
            files = {"/" + str(p.relative_to(root)): _sha(p) for p in sorted(installed)}
            artifacts.append({"name": art.name, "version": version, "source": art.source,
                              "url": None, "sha256": None, "files": files})
            status.append(f"Package: {art.package}\nStatus: install ok installed\n"
                          f"Maintainer: fake\nArchitecture: {release.arch}\n"
                          f"Version: {version}\nDescription: fake {art.package}\n")
            continue
        src = mirror.mirror / art.url.split("://", 1)[1]
        if art.kind == "binary":
            dest = root / art.install.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
            dest.chmod(0o755)
            installed = [dest]
        elif art.name == "etcd":  # the component installs the client only, from etcd-v<v>-.../
            installed = _extract(src, root / art.install.lstrip("/"), strip_dirs=True,
                                 only=etcd_client_tools(art.version))
        else:
            installed = _extract(src, root / art.install.lstrip("/"))
        files = {"/" + str(p.relative_to(root)): _sha(p) for p in sorted(installed)}
        artifacts.append({"name": art.name, "version": art.version, "source": art.source,
                          "url": art.url, "sha256": art.sha256, "files": files})
    _put(root, "/var/lib/dpkg/status", "\n".join(status))
    (root / "var/lib/dpkg/info").mkdir(parents=True, exist_ok=True)
    (root / "var/lib/dpkg/updates").mkdir(parents=True, exist_ok=True)
    images = []
    lists: dict[str, list[str]] = {}
    for image in release.images:
        archive = f"/var/lib/bake/images/{image.name}_{image.tag}.tar"
        _put(root, archive, (mirror.mirror / image.archive_path).read_bytes())
        images.append({"name": image.name, "ref": image.ref, "archive": archive,
                       "sha256": image.archive_sha256, "group": image.group, "pinned": True})
        lists.setdefault(image.group, []).append(f"{archive} {image.ref}\n")
    for group, lines in lists.items():  # what bake-images and bake-addon-<name> write
        _put(root, f"/var/lib/bake/images/{group}.images", "".join(lines))
    pause = release.image("pause").ref
    _put(root, "/etc/containerd/config.toml", CONTAINERD_CONFIG.format(pause=pause))
    _put(root, "/etc/crictl.yaml", "runtime-endpoint: unix:///run/containerd/containerd.sock\n")
    _put(root, "/lib/systemd/system/kubelet.service",
         UNIT.format(d="kubelet", e="/usr/bin/kubelet"))
    _put(root, "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
         "[Service]\nExecStart=\nExecStart=/usr/bin/kubelet $KUBELET_KUBEADM_ARGS\n")
    _put(root, "/etc/systemd/system/containerd.service",
         UNIT.format(d="containerd", e="/usr/bin/containerd"))
    _put(root, "/etc/systemd/system/bake-images-import.service",
         UNIT.format(d="import baked images", e="/usr/local/sbin/bake-images-import"))
    wants = "/etc/systemd/system/multi-user.target.wants"
    _link(root, f"{wants}/kubelet.service", "/lib/systemd/system/kubelet.service")
    _link(root, f"{wants}/containerd.service", "/etc/systemd/system/containerd.service")
    _link(root, f"{wants}/bake-images-import.service",
          "/etc/systemd/system/bake-images-import.service")
    _put(root, "/etc/modules-load.d/k8s.conf", "overlay\nbr_netfilter\n")
    _put(root, "/etc/sysctl.d/99-kubernetes.conf",
         "net.bridge.bridge-nf-call-iptables = 1\nnet.bridge.bridge-nf-call-ip6tables = 1\n"
         "net.ipv4.ip_forward = 1\n")
    _put(root, "/etc/fstab", "# <file system> <mount point> <type> <options> <dump> <pass>\n"
         "/dev/vda / ext4 errors=remount-ro 0 1\n#/swapfile none swap sw 0 0\n")
    _put(root, "/etc/machine-id", "")
    _put(root, "/etc/ssh/sshd_config", "PasswordAuthentication no\n")
    (root / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    (root / "var/lib/cloud").mkdir(parents=True, exist_ok=True)
    manifest = {"schema": "bake.image-manifest/v1",
                "kubernetes_version": release.kubernetes_version, "minor": release.minor,
                "arch": release.arch, "os": release.os, "artifacts": artifacts,
                "images": images, "addons": dict(release.addons),
                "catalog_sources": list(release.catalog_sources)}
    _put(root, "/etc/bake/image-manifest.json", json.dumps(manifest, indent=2) + "\n")
    return manifest


def pack_rootfs(root: Path, archive: Path) -> Path:
    """Write ``root`` as ``archive`` (``rootfs.tar.zst``) the way the local builder does."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(root, arcname=".")
    subprocess.run(["zstd", "-q", "-f", "-o", str(archive)], input=buf.getvalue(), check=True)
    return archive
