"""The node agent's bundle: ``bake-node-<version>.tar.gz``, baked into images by ``bake-node``.

The ``bake-node`` component (components/bake-node.yaml.j2) downloads this tarball, verifies it
by SHA-256 (AWSTOE ``WebDownload`` ``checksum``/``algorithm: SHA256``), unpacks the
``bake_node`` package into ``/usr/lib/python3/dist-packages`` and the ``manifests/`` data folder
into ``/usr/share/bake-node/manifests``. The agent runs on Debian's own python3, python3-boto3,
python3-yaml and python3-jinja2, so nothing is installed at boot.

The tarball is built from the INSTALLED packages, read through ``importlib.resources`` (the
``bake_node`` package) and ``bake.templates`` (the ``manifests`` folder), so it works from a
source checkout and from a wheel alike. It is deterministic: entries sorted, mtime fixed at
``SOURCE_DATE_EPOCH`` (0), uid/gid 0 and names ``root``, modes 0644/0755, gzip header mtime 0
and no file name in the gzip header. The same sources always give the same SHA-256, so a
rebuild of the same bake version renders byte-identical components (same content hash).
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import io
import os
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from bake import __version__
from bake.templates import list_templates, read_text

AGENT_PACKAGE = "bake_node"
MANIFESTS_FOLDER = "manifests"
# reproducible-builds.org "SOURCE_DATE_EPOCH": one fixed timestamp for every entry
SOURCE_DATE_EPOCH = 0
_SKIP_DIRS = {"__pycache__"}
_SKIP_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True)
class AgentBundle:
    """A built agent bundle.

    Attributes:
        path: the tarball on disk, ``<out_dir>/bake-node-<version>.tar.gz``.
        sha256: SHA-256 hex of the tarball's bytes.
        version: bake's version (``bake.__version__``), which is the agent's version.
        filename: ``bake-node-<version>.tar.gz`` (the name served and downloaded).
    """

    path: Path
    sha256: str
    version: str
    filename: str


def bundle_filename(version: str = __version__) -> str:
    """``bake-node-<version>.tar.gz``."""
    return f"bake-node-{version}.tar.gz"


def _package_files(package: str) -> list[tuple[str, bytes]]:
    """``[(relative path, bytes)]`` of every file of an installed package, skipping caches.

    Paths are ``/``-separated and start with the package name (``bake_node/agent.py``).
    """
    out: list[tuple[str, bytes]] = []

    def walk(node, prefix: str) -> None:
        for child in node.iterdir():
            if child.is_dir():
                if child.name not in _SKIP_DIRS:
                    walk(child, f"{prefix}{child.name}/")
            elif not child.name.endswith(_SKIP_SUFFIXES):
                out.append((prefix + child.name, child.read_bytes()))

    walk(resources.files(package), f"{package}/")
    return out


def bundle_members() -> list[tuple[str, bytes]]:
    """The files the bundle holds, sorted by path.

    Returns:
        ``[(path, bytes)]``: ``bake_node/...`` (the agent package) and ``manifests/...`` (the
        CNI and add-on manifests the agent applies after ``kubeadm init``).
    """
    members = _package_files(AGENT_PACKAGE)
    members += [
        (f"{MANIFESTS_FOLDER}/{name}", read_text(MANIFESTS_FOLDER, name).encode("utf-8"))
        for name in list_templates(MANIFESTS_FOLDER)
    ]
    return sorted(members)


def _tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    """An uncompressed POSIX tar of ``members``, with directory entries, all metadata fixed."""
    buf = io.BytesIO()
    dirs = sorted(
        {"/".join(p.split("/")[:i]) for p, _ in members for i in range(1, p.count("/") + 1)}
    )
    entries = [(d, None) for d in dirs] + list(members)
    entries.sort(key=lambda e: e[0])
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = SOURCE_DATE_EPOCH
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.mode = 0o644
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build_agent_bundle(out_dir: Path) -> AgentBundle:
    """Write ``<out_dir>/bake-node-<version>.tar.gz`` (replaced atomically) and hash it.

    Args:
        out_dir: directory to write into (created if missing).
    Returns:
        the ``AgentBundle`` (path, SHA-256 hex, version, filename). Same installed sources ->
        same bytes -> same SHA-256.
    Raises:
        OSError: ``out_dir`` cannot be written.
        RenderError: the ``manifests`` folder cannot be read from the bake package.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = _tar_bytes(bundle_members())
    packed = io.BytesIO()
    # filename="" and mtime=0: nothing host- or time-dependent in the gzip header (RFC 1952)
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0, compresslevel=9) as gz:
        gz.write(raw)
    data = packed.getvalue()
    filename = bundle_filename(__version__)
    target = out_dir / filename
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{filename}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return AgentBundle(
        path=target,
        sha256=hashlib.sha256(data).hexdigest(),
        version=__version__,
        filename=filename,
    )


@contextlib.contextmanager
def serve_directory(directory: Path, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``directory`` read-only over HTTP on ``host`` (loopback), on a free port.

    For local builds: the ``bake-node`` component's ``WebDownload`` fetches the bundle from
    here while the build runs (``http.server.ThreadingHTTPServer`` in a daemon thread).

    Args:
        directory: the folder to serve (e.g. ``<data_dir>/cache/agent``).
        host: address to listen on; loopback only.
    Yields:
        the base URL, ``http://127.0.0.1:<port>`` (no trailing slash).
    Raises:
        OSError: the socket cannot be bound.
    The server is shut down and its socket closed when the block exits, also on errors.
    """
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class _Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format, *args):  # noqa: A002 - http.server's signature
            pass  # the build logs record the download; no request lines on the terminal

    handler = functools.partial(_Quiet, directory=str(directory))
    server = ThreadingHTTPServer((host, 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="bake-agent-http", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
