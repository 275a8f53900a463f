"""pytest fixtures serving stand-in Kubernetes release files from a mirror on 127.0.0.1.

Registered for the whole suite from tests/conftest.py (``pytest_plugins``). The real release
files and registry images cannot be downloaded here, so these fixtures generate stand-ins with
``tools/standins.py`` (small sh scripts answering version queries, tiny OCI archives; see that
module) and a catalog overlay pinning their SHA-256.

- ``standin_mirror`` (session): Kubernetes 1.30, amd64, release runtime, served over HTTP.
- ``standin_factory`` (session): ``standin_factory(k8s="1.30", arch="amd64",
  runtime="release", tamper=None, flavor="script") -> StandinMirror`` for variants (a tampered
  kubelet, Debian's containerd and runc via ``runtime="os-package"``, the stand-ins that form a
  VM cluster on the real etcd via ``flavor="cluster"``); each is generated and served once.
- ``http_files``: an HTTP server on 127.0.0.1 serving a temporary directory (``Served.add``).
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest


@dataclass(frozen=True)
class StandinMirror:
    """A generated and served stand-in mirror.

    Attributes:
        url: base URL on 127.0.0.1 (pass as ``--mirror``).
        overlay: the catalog overlay pinning the stand-ins (pass as ``--catalog``).
        dir: the generator's output dir (``dir/mirror`` is what is served).
        release: the ``bake.catalog.Release`` resolved with the overlay.
        files: mirror-relative path -> SHA-256 as generated (before any tampering).
        tamper: the artifact or image name altered after the overlay was written, if any.
    """

    url: str
    overlay: Path
    dir: Path
    release: object
    files: dict[str, str] = field(default_factory=dict)
    tamper: str | None = None

    @property
    def mirror(self) -> Path:
        """The served directory, ``dir/mirror``."""
        return self.dir / "mirror"


@pytest.fixture(scope="session")
def standin_factory(tmp_path_factory) -> Iterator[Callable[..., StandinMirror]]:
    """Factory of stand-in mirrors, one per (k8s, arch, runtime, tamper), served until the
    session ends."""
    import standins

    made: dict[tuple, StandinMirror] = {}
    stops: list[Callable[[], None]] = []

    def make(k8s: str = "1.30", arch: str = "amd64", runtime: str = "release",
             tamper: str | None = None, flavor: str = "script") -> StandinMirror:
        key = (k8s, arch, runtime, tamper, flavor)
        if key not in made:
            out = tmp_path_factory.mktemp(
                f"standins-{k8s}-{arch}-{runtime}-{tamper or 'ok'}-{flavor}")
            gen = standins.generate(k8s, arch, out, runtime=runtime, tamper=tamper,
                                    flavor=flavor)
            url, stop = standins.serve_in_thread(out)
            stops.append(stop)
            made[key] = StandinMirror(url, gen.overlay, gen.dir, gen.release, gen.files, tamper)
        return made[key]

    yield make
    for stop in stops:
        stop()


@pytest.fixture(scope="session")
def standin_mirror(standin_factory) -> StandinMirror:
    """Stand-ins for Kubernetes 1.30 amd64 (release containerd and runc) on 127.0.0.1."""
    return standin_factory()


class Served:
    """A directory served over HTTP: ``url`` is ``http://127.0.0.1:<port>``; ``add(name, data)``
    writes a file and returns its URL."""

    def __init__(self, directory: Path, url: str) -> None:
        self.directory = directory
        self.url = url

    def add(self, name: str, data: bytes) -> str:
        (self.directory / name).write_bytes(data)
        return f"{self.url}/{name}"


@pytest.fixture
def http_files(tmp_path: Path) -> Iterator[Served]:
    """An HTTP server on 127.0.0.1 (random port) serving a temporary directory."""
    directory = tmp_path / "www"
    directory.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Served(directory, f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
