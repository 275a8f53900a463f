"""Fixtures shared by the whole suite.

- ``moto_server``: moto's server on 127.0.0.1 (session-scoped), the embedded AWS that tests talk
  to through the normal endpoint, as users do; ``aws_target`` points bake at it.
- ``run_bake``: runs the real CLI in-process and returns exit code, stdout and stderr.
Area-specific fixtures live in each tests/<area>/conftest.py.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

# standin_mirror, standin_factory, http_files; golden (and the golden marker)
pytest_plugins = ["tests.support.fixtures", "tests.support.golden"]


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the kernel's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _isolated_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory) -> None:
    """Keep tests away from any real AWS account or the developer's data dir."""
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("BAKE_DATA_DIR", str(tmp_path_factory.mktemp("bake-data")))


@dataclass(frozen=True)
class MotoServer:
    """A running moto server: ``endpoint`` is ``http://127.0.0.1:<port>``."""

    endpoint: str
    port: int

    def reset(self) -> None:
        """Drop all state (moto's ``/moto-api/reset``)."""
        import urllib.request

        req = urllib.request.Request(self.endpoint + "/moto-api/reset", method="POST")
        urllib.request.urlopen(req, timeout=10).read()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """moto in server mode on 127.0.0.1, for the whole session."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield MotoServer(f"http://127.0.0.1:{port}", port)
    finally:
        server.stop()


@pytest.fixture
def aws(moto_server: MotoServer) -> Iterator[MotoServer]:
    """The moto server, reset before the test."""
    moto_server.reset()
    yield moto_server


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def run_bake(capsys: pytest.CaptureFixture[str]):
    """Run ``bake ARGS...`` in-process through ``bake.main.main``; returns ``CliResult``."""
    from bake.main import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = 0
        try:
            main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return CliResult(code, out.out, out.err)

    return run
