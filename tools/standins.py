"""Stand-in Kubernetes release files and OCI image archives, served from a local mirror.

This machine (and CI) cannot reach dl.k8s.io, GitHub releases or registry.k8s.io, so tests and
``make demo`` bake images from *stand-ins*: tiny POSIX sh scripts that answer the version
queries of the real kubeadm, kubelet, kubectl, crictl, containerd, ctr, containerd-shim-runc-v2,
runc and CNI plugins with the release's versions, packed exactly as upstream packs them (single
files, tarballs), plus a valid OCI image-layout tar per image of the kubeadm image set. Every
stand-in says it is one (``--help`` prints "bake test stand-in, not the real kubeadm"). Files
land at the mirror layout of ``bake.catalog`` (``<dir>/mirror/<upstream host>/<upstream
path>``, image archives at ``<dir>/mirror/bake-images/<arch>/<name>_<tag>.tar``), and
``<dir>/catalog-overlay.yaml`` pins their SHA-256 so the normal, checksum-verifying code path
is what runs. Output is byte-for-byte deterministic (fixed mtimes, owners and ordering; gzip
without timestamp), so digests are stable across runs and machines.

Usage (a dev/test tool, not shipped in the wheel)::

    python tools/standins.py generate --k8s 1.30 --arch amd64 --out DIR \
        [--runtime release|os-package] [--tamper NAME] [--flavor script|cluster]
    python tools/standins.py serve DIR [--port 0] [--pidfile FILE]

As a library: ``generate(...) -> Generated`` and ``serve_in_thread(dir) -> (url, stop)``.
OCI layout facts: opencontainers/image-spec ``image-layout.md``, ``manifest.md``,
``config.md``; ``ctr images import`` names an image by the ``io.containerd.image.name``
annotation (containerd ``pkg/archive``/``images/archive`` importer).
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import http.server
import io
import json
import os
import sys
import tarfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import yaml

MTIME = 1700000000  # fixed mtime of every tar member (2023-11-14T22:13:20Z)
STANDIN_NOTE = "bake test stand-in, not the real {name}"
CNI_PLUGINS = ("bandwidth", "bridge", "firewall", "host-local", "loopback", "portmap", "ptp",
               "tuning")
OVERLAY_HEADER = """\
# bake catalog overlay for TEST STAND-INS, written by tools/standins.py.
# These SHA-256 values pin stand-in files (small sh scripts and tiny OCI archives that only
# answer version queries), NOT the real Kubernetes release binaries or images. Use it only with
# the local stand-in mirror (tools/standins.py serve); never for a real cluster.
"""


# ---------------------------------------------------------------- stand-in file contents


def _script(name: str, cases: dict[str, str], default: str | None = None) -> bytes:
    """A POSIX sh stand-in: ``cases`` maps a ``"$*"`` pattern to the lines it prints."""
    note = STANDIN_NOTE.format(name=name)
    lines = ["#!/bin/sh", f"# {note}.", 'case "$*" in',
             f"  *--help*|-h) echo '{note}'; exit 0 ;;"]
    for pattern, out in cases.items():
        body = "; ".join(f"printf '%s\\n' '{line}'" for line in out.splitlines())
        lines.append(f"  {pattern}) {body}; exit 0 ;;")
    fallback = default or f"echo '{note}: unsupported arguments: '\"$*\" >&2; exit 1"
    lines += [f"  *) {fallback} ;;", "esac", ""]
    return "\n".join(lines).encode()


def kubeadm_script(version: str, images: list[str]) -> bytes:
    """``kubeadm version -o short`` -> ``v1.30.12``; ``config images list`` -> the image set."""
    v = "v" + version
    info = (f'kubeadm version: &version.Info{{Major:"1", Minor:"{version.split(".")[1]}", '
            f'GitVersion:"{v}", GitCommit:"bake-standin", Compiler:"gc", Platform:"linux"}}')
    return _script("kubeadm", {
        '"version -o short"|"version --output=short"|"version -oshort"': v,
        '"config images list"*': "\n".join(images),
        "version*": info,
    })


def cluster_standin(name: str, version: str, images: list[str], crictl_version: str = "0.0.0"
                    ) -> bytes:
    """The VM-cluster stand-in for ``name`` (kubeadm, kubelet, kubectl or crictl): the Python
    program tools/standin_k8s.py (one program; the name it is installed under picks the tool),
    with the release's versions and image set prepended. It answers the same version queries as
    the script stand-ins and also runs init/join/reset against the REAL etcd (see that file)."""
    body = (Path(__file__).resolve().parent / "standin_k8s.py").read_text()
    header = (f"#!/usr/bin/python3\n# {STANDIN_NOTE.format(name=name)} (bake's VM-cluster "
              "stand-in, tools/standin_k8s.py).\n"
              f"KUBERNETES_VERSION = {json.dumps(version)}\nIMAGES = {json.dumps(images)}\n"
              f"CRICTL_VERSION = {json.dumps(crictl_version)}\n")
    return (header + body).encode()


def kubelet_script(version: str) -> bytes:
    """``kubelet --version`` -> ``Kubernetes v1.30.12``."""
    return _script("kubelet", {'"--version"|"version"': f"Kubernetes v{version}"})


def kubectl_script(version: str) -> bytes:
    """``kubectl version --client -o json`` -> JSON with ``clientVersion.gitVersion``."""
    major, minor, _ = version.split(".")
    doc = json.dumps({"clientVersion": {"major": major, "minor": minor,
                                        "gitVersion": f"v{version}", "gitCommit": "bake-standin",
                                        "platform": "linux"}}, indent=2)
    return _script("kubectl", {
        '*"-o json"*|*"--output=json"*|*"-ojson"*|*"--output json"*': doc,
        '"version --client"*|"version"': f"Client Version: v{version}",
    })


def versioned_script(name: str, text: str) -> bytes:
    """A stand-in printing ``text`` for ``--version``/``-v``/``version``."""
    return _script(name, {'"--version"|"-v"|"version"|"-version"': text})


def cni_script(name: str, version: str) -> bytes:
    """A CNI plugin stand-in: prints ``CNI <name> plugin v<version>`` (like the real one with
    no CNI_COMMAND) and fails any real CNI command."""
    note = STANDIN_NOTE.format(name=f"CNI {name} plugin")
    return (f"#!/bin/sh\n# {note}.\n"
            f"if [ -n \"$CNI_COMMAND\" ]; then echo '{note}' >&2; exit 1; fi\n"
            f"printf '%s\\n' 'CNI {name} plugin v{version}' '{note}'\n").encode()


# ---------------------------------------------------------------- deterministic archives


def addon_file_standin(addon: str, name: str) -> bytes:
    """A stand-in for an add-on's upstream file (``crds``: one CustomResourceDefinition that
    keeps any field, in the group the add-on's CRDs use), saying plainly that it is one."""
    group = {"calico": "crd.projectcalico.org"}.get(addon, f"{addon}.bake.invalid")
    doc = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"standins.{group}",
                     "annotations": {"bake.io/stand-in": f"{addon} {name} (bake stand-in)"}},
        "spec": {"group": group, "scope": "Cluster",
                 "names": {"kind": "StandIn", "listKind": "StandInList", "plural": "standins",
                           "singular": "standin"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                     "openAPIV3Schema": {"type": "object",
                                         "x-kubernetes-preserve-unknown-fields": True}}}]},
    }
    header = f"# bake stand-in for {addon}'s upstream {name} file (tools/standins.py)\n"
    return (header + yaml.safe_dump(doc, sort_keys=False)).encode()


def _tar(members: list[tuple[str, bytes, int]]) -> bytes:
    """An uncompressed tar (PAX off: ustar/gnu) of ``(name, data, mode)``, in the given order,
    owned by root with the fixed mtime. Directories are given as names ending in ``/``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data, mode in members:
            info = tarfile.TarInfo(name.rstrip("/"))
            info.mtime, info.uid, info.gid, info.uname, info.gname = MTIME, 0, 0, "root", "root"
            info.mode = mode
            if name.endswith("/"):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _gzip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=6) as gz:
        gz.write(data)
    return buf.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def etcd_layer_members() -> list[tuple[str, bytes, int]]:
    """Debian's real etcd (etcd-server) with the C library it links, as an image layer: what
    the etcd image stand-in of VM clusters carries, so the kubelet stand-in runs real etcd."""
    real = host_etcd()
    if real is None:
        raise RuntimeError("the VM-cluster stand-ins need Debian's etcd-server and etcd-client "
                           "on this host (make deb-deps)")
    members = [("usr/", b"", 0o755), ("usr/local/", b"", 0o755), ("usr/local/bin/", b"", 0o755),
               ("usr/local/bin/etcd", Path(real[2]).read_bytes(), 0o755)]
    return members


def oci_archive(ref: str, tag: str, arch: str, extra: list | None = None) -> bytes:
    """A valid OCI image-layout tar for ``ref`` (one gzip layer holding a note file, plus
    ``extra`` members ``(name, data, mode)``).

    Layout: ``oci-layout``, ``index.json`` (one manifest descriptor annotated with
    ``io.containerd.image.name`` = ``ref`` and ``org.opencontainers.image.ref.name`` = ``tag``),
    ``blobs/sha256/<digest>`` for manifest, config and layer.
    """
    note = f"{STANDIN_NOTE.format(name=ref)}\n".encode()
    layer_tar = _tar([("etc/", b"", 0o755), ("etc/bake-standin", note, 0o644), *(extra or [])])
    layer = _gzip(layer_tar)
    config = json.dumps({
        "architecture": arch, "os": "linux",
        "config": {"Entrypoint": ["/bake-standin"], "Labels": {"bake.standin": "true"}},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + _sha(layer_tar)]},
        "history": [{"created_by": "bake tools/standins.py", "comment": "test stand-in"}],
    }, sort_keys=True, separators=(",", ":")).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": "sha256:" + _sha(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": "sha256:" + _sha(layer), "size": len(layer)}],
    }, sort_keys=True, separators=(",", ":")).encode()
    index = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:" + _sha(manifest), "size": len(manifest),
            "platform": {"architecture": arch, "os": "linux"},
            "annotations": {"io.containerd.image.name": ref,
                            "org.opencontainers.image.ref.name": tag},
        }],
    }, sort_keys=True, separators=(",", ":")).encode()
    blobs = sorted((_sha(b), b) for b in (config, layer, manifest))
    members = [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}', 0o644),
               ("index.json", index, 0o644), ("blobs/", b"", 0o755), ("blobs/sha256/", b"", 0o755)]
    members += [(f"blobs/sha256/{d}", b, 0o644) for d, b in blobs]
    return _tar(members)


# ---------------------------------------------------------------- generate


@dataclass(frozen=True)
class Generated:
    """What ``generate`` wrote.

    Attributes:
        dir: the output directory.
        mirror: ``dir/mirror``, the tree to serve.
        overlay: ``dir/catalog-overlay.yaml``.
        release: the ``bake.catalog.Release`` resolved with the overlay (stand-ins' SHA-256).
        files: mirror-relative path -> SHA-256 of every file written (before any tampering).
    """

    dir: Path
    mirror: Path
    overlay: Path
    release: object
    files: dict[str, str]


def _mirror_path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.netloc}{parts.path}"


def _kubeadm_refs(release) -> list[str]:
    """What a real kubeadm's `config images list` prints: kubeadm's own set, not the add-ons'."""
    return [i.ref for i in release.images if i.group == "kubeadm"]


def _artifact_bytes(name: str, version: str, release, flavor: str = "script") -> bytes:
    k8s = release.kubernetes_version
    if flavor == "cluster" and name in ("kubeadm", "kubelet", "kubectl"):
        return cluster_standin(name, k8s, _kubeadm_refs(release))
    if name == "kubeadm":
        return kubeadm_script(k8s, _kubeadm_refs(release))
    if name == "kubelet":
        return kubelet_script(k8s)
    if name == "kubectl":
        return kubectl_script(k8s)
    if name == "crictl" and flavor == "cluster":
        return _gzip(_tar([("crictl", cluster_standin("crictl", k8s, [], version), 0o755)]))
    if name == "crictl":
        return _gzip(_tar([("crictl", versioned_script("crictl", f"crictl version v{version}"),
                            0o755)]))
    if name == "containerd":
        module = "github.com/containerd/containerd" + ("/v2" if version.startswith("2.") else "")
        shim = f"containerd-shim-runc-v2:\n  Version:  v{version}\n  Revision: bake-standin"
        return _gzip(_tar([
            ("bin/", b"", 0o755),
            ("bin/containerd", versioned_script(
                "containerd", f"containerd {module} v{version} bake-standin"), 0o755),
            ("bin/containerd-shim-runc-v2", versioned_script("containerd-shim-runc-v2", shim),
             0o755),
            ("bin/ctr", versioned_script("ctr", f"ctr {module} v{version}"), 0o755),
        ]))
    if name == "runc":
        return versioned_script("runc", f"runc version {version}\ncommit: bake-standin\n"
                                         "spec: 1.2.0")
    if name == "cni-plugins":
        return _gzip(_tar([("./", b"", 0o755)] + [
            (f"./{p}", cni_script(p, version), 0o755) for p in CNI_PLUGINS]))
    if name == "etcd":
        top = f"etcd-v{version}-linux-{release.arch}"
        real = host_etcd()
        if real and real[0] == version:  # Debian's real etcdctl, at its own version's URL
            etcdctl = Path(real[1]).read_bytes()
        else:
            etcdctl = versioned_script("etcdctl", f"etcdctl version: {version}\nAPI version: "
                                       f"{'.'.join(version.split('.')[:2])}")
        members = [(f"{top}/", b"", 0o755), (f"{top}/etcdctl", etcdctl, 0o755)]
        if tuple(int(p) for p in version.split(".")[:2]) >= (3, 5):  # etcdutl is new in 3.5
            members.append((f"{top}/etcdutl", versioned_script(
                "etcdutl", f"etcdutl version: {version}\nAPI version: "
                f"{'.'.join(version.split('.')[:2])}"), 0o755))
        return _gzip(_tar(members))
    raise ValueError(f"no stand-in for artifact {name!r}")


@functools.cache
def host_etcd() -> tuple[str, str, str] | None:
    """``(version, etcdctl path, etcd path)`` of Debian's etcd-client/etcd-server on this host,
    or ``None``. The VM cluster's stand-ins run the REAL etcd: the etcd client artifact carries
    this etcdctl (pinned at its own version) and the etcd image stand-in carries this etcd."""
    import shutil
    import subprocess

    etcdctl, etcd = shutil.which("etcdctl"), shutil.which("etcd")
    if not etcdctl or not etcd:
        return None
    out = subprocess.run([etcdctl, "version"], capture_output=True, text=True).stdout
    first = out.splitlines()[0] if out else ""
    if not first.startswith("etcdctl version: "):
        return None
    return first.split(": ", 1)[1].strip(), etcdctl, etcd


def generate(k8s: str, arch: str, out: Path, runtime: str = "release",
             tamper: str | None = None, flavor: str = "script") -> Generated:
    """Write stand-ins for the release ``k8s``/``arch`` resolves to, and their overlay.

    Args:
        k8s: ``1.30`` (newest shipped patch) or ``1.30.12``.
        arch: ``amd64`` or ``arm64``.
        out: output directory (created; existing files overwritten).
        runtime: ``release`` (containerd and runc stand-ins from the release files) or
            ``os-package`` (overlay sets both to ``source: os-package``: Debian's real packages).
        tamper: an artifact or image name whose mirror file is altered *after* the overlay is
            written, so its SHA-256 no longer matches (checksum-mismatch tests).
        flavor: ``script`` (POSIX sh stand-ins that answer version queries) or ``cluster``
            (the Python stand-ins that form a cluster on VMs, tools/standin_k8s.py, and an
            etcd image carrying Debian's real etcd).
    Returns:
        ``Generated``.
    Raises:
        bake.errors.CatalogError: unknown version or arch; ``ValueError``: unknown tamper name.
    """
    from dataclasses import replace

    from bake.catalog import ARTIFACT_SPECS, OPTIONAL_ARTIFACTS, load_catalog, resolve

    out = Path(out).resolve()
    mirror = out / "mirror"
    base = resolve(load_catalog(), k8s, arch)
    real_etcd = host_etcd()
    if real_etcd:  # the client artifact at the version of the real etcdctl it carries
        spec = ARTIFACT_SPECS["etcd"]
        base = replace(base, artifacts=tuple(
            replace(a, version=real_etcd[0], url=spec.url.format(version=real_etcd[0], arch=arch))
            if a.name == "etcd" else a for a in base.artifacts))
    files: dict[str, str] = {}
    checksums: dict[str, dict] = {}
    paths: dict[str, Path] = {}

    def write(rel: str, data: bytes, mode: int = 0o644) -> None:
        target = mirror / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(mode)
        files[rel] = _sha(data)

    for art in base.artifacts:
        if art.source != "release" or (runtime == "os-package" and art.name in ("containerd",
                                                                                 "runc")):
            continue
        rel = _mirror_path(art.url)
        data = _artifact_bytes(art.name, art.version, base, flavor)
        write(rel, data, 0o755 if art.kind == "binary" else 0o644)
        checksums.setdefault(art.name, {})[art.version] = {arch: files[rel]}
        paths[art.name] = mirror / rel
    # the optional artifacts (bake ships no SHA-256 for them): pinned here, as a user's overlay
    # would, so stand-in images carry them like a user's who pinned them
    minor_entry = load_catalog().data["kubernetes"][base.minor]
    for name in OPTIONAL_ARTIFACTS:
        version = minor_entry.get(name)
        if not version or base.has_artifact(name):
            continue
        rel = _mirror_path(ARTIFACT_SPECS[name].url.format(version=version, arch=arch))
        write(rel, versioned_script(name, f"{name} v{version} (bake stand-in)"), 0o755)
        checksums.setdefault(name, {})[version] = {arch: files[rel]}
        paths[name] = mirror / rel
    archives: dict[str, str] = {}
    for image in base.images:
        extra = etcd_layer_members() if flavor == "cluster" and image.name == "etcd" else None
        write(image.archive_path, oci_archive(image.ref, image.tag, arch, extra))
        archives[image.ref] = files[image.archive_path]
        paths[image.name] = mirror / image.archive_path
    # the add-ons' upstream files (Calico's CRDs): stand-ins at their mirror paths, pinned as
    # an overlay pins a file it moved (the whole addon_releases entry, images included)
    releases: dict[str, dict] = {}
    shipped = load_catalog().data.get("addon_releases", {})
    versions = dict(base.addons)
    for f in base.addon_files:
        rel = _mirror_path(f.url)
        write(rel, addon_file_standin(f.addon, f.name))
        entry = releases.setdefault(f.addon, {}).setdefault(versions[f.addon], {
            "images": dict(shipped[f.addon][versions[f.addon]]["images"]), "files": {}})
        entry["files"][f.name] = {"url": f.url, "sha256": files[rel]}
        paths[f"{f.addon}-{f.name}"] = mirror / rel
    overlay_doc: dict = {"schema": "bake.catalog/v1", "checksums": checksums,
                         "image_archives": {arch: archives}}
    if releases:
        overlay_doc["addon_releases"] = releases
    entry: dict = {"etcd": base.artifact("etcd").version}
    if runtime == "os-package":
        entry.update({
            "containerd": {"source": "os-package", "package": "containerd"},
            "runc": {"source": "os-package", "package": "runc"}})
    elif runtime != "release":
        raise ValueError(f"unknown runtime {runtime!r}: use release or os-package")
    overlay_doc["kubernetes"] = {base.minor: entry}
    overlay = out / "catalog-overlay.yaml"
    overlay.write_text(OVERLAY_HEADER + yaml.safe_dump(overlay_doc, sort_keys=True))
    release = resolve(load_catalog([overlay]), base.kubernetes_version, arch)
    if tamper:
        if tamper not in paths:
            raise ValueError(f"cannot tamper {tamper!r}: not one of {', '.join(sorted(paths))}")
        with paths[tamper].open("ab") as f:
            f.write(b"\n# tampered by tools/standins.py --tamper\n")
    return Generated(out, mirror, overlay, release, files)


# ---------------------------------------------------------------- serve


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass


def make_server(directory: Path, port: int = 0) -> http.server.ThreadingHTTPServer:
    """A ThreadingHTTPServer on 127.0.0.1:``port`` (0 = any free port) serving ``directory``."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    return server


def serve_in_thread(directory: Path, port: int = 0) -> tuple[str, Callable[[], None]]:
    """Serve ``directory/mirror`` (or ``directory`` itself if it has no ``mirror``) on
    127.0.0.1 in a daemon thread.

    Returns:
        ``(url, stop)``: base URL like ``http://127.0.0.1:41234`` and a function that stops the
        server and closes its socket.
    """
    directory = Path(directory)
    root = directory / "mirror" if (directory / "mirror").is_dir() else directory
    server = make_server(root, port)
    thread = threading.Thread(target=server.serve_forever, name="standin-mirror", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return f"http://127.0.0.1:{server.server_address[1]}", stop


def main(argv: list[str] | None = None) -> int:
    """Command line: ``generate`` or ``serve`` (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="standins.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="write stand-ins and their catalog overlay")
    g.add_argument("--k8s", required=True)
    g.add_argument("--arch", default="amd64")
    g.add_argument("--out", required=True, type=Path)
    g.add_argument("--runtime", choices=["release", "os-package"], default="release")
    g.add_argument("--tamper", metavar="NAME")
    g.add_argument("--flavor", choices=["script", "cluster"], default="script",
                   help="cluster: the stand-ins that form a VM cluster with real etcd")
    s = sub.add_parser("serve", help="serve DIR/mirror over HTTP on 127.0.0.1")
    s.add_argument("dir", type=Path)
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--pidfile", type=Path)
    args = parser.parse_args(argv)
    if args.cmd == "generate":
        from bake.errors import BakeError

        try:
            gen = generate(args.k8s, args.arch, args.out, args.runtime, args.tamper, args.flavor)
        except (BakeError, ValueError, RuntimeError) as exc:
            print(f"standins: error: {exc}", file=sys.stderr)
            return 2
        print(f"stand-ins (NOT the real binaries) for Kubernetes "
              f"{gen.release.kubernetes_version} {args.arch}: {len(gen.files)} files in "
              f"{gen.mirror}")
        print(f"catalog overlay: {gen.overlay}")
        if args.tamper:
            print(f"tampered: {args.tamper} (its SHA-256 no longer matches the overlay)")
        return 0
    root = args.dir / "mirror" if (args.dir / "mirror").is_dir() else args.dir
    server = make_server(root, args.port)
    if args.pidfile:
        args.pidfile.write_text(f"{os.getpid()}\n")
    print(f"serving {root} (bake test stand-ins) at http://127.0.0.1:{server.server_address[1]}",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
