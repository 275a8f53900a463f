"""``bake sandbox``: moto's server as a real detached process, started, used and stopped.

These tests run the CLI as separate processes (``python -m bake``), as a user does, each on a
free port of 127.0.0.1, and always stop the server they started (by its recorded PID).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bake.sandbox.server import _alive, is_moto_server, read_state, state_path

NOT_RUNNING = (
    "bake: error: the embedded AWS is not running: start it with `bake sandbox start`"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bake(data_dir: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bake", "--data-dir", str(data_dir), *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )


@pytest.fixture
def data_dir(tmp_path: Path):
    """A data dir whose recorded sandbox, if any, is stopped after the test."""
    yield tmp_path
    state = read_state(tmp_path)
    if state is not None and is_moto_server(state.pid):
        os.kill(state.pid, signal.SIGKILL)


def test_sandbox_lifecycle(data_dir: Path, publish_request):
    stopped = bake(data_dir, "sandbox", "status", "--output", "json")
    assert json.loads(stopped.stdout)["status"] == "stopped"
    no_sandbox = bake(data_dir, "images", "list", "--local")
    assert no_sandbox.returncode == 1
    assert no_sandbox.stderr.splitlines() == [NOT_RUNNING]
    assert bake(data_dir, "sandbox", "env").stderr.splitlines() == [NOT_RUNNING]

    port = free_port()
    started = bake(data_dir, "sandbox", "start", "--port", str(port))
    assert started.returncode == 0, started.stderr
    assert started.stdout == f"http://127.0.0.1:{port}\n"
    state = json.loads(state_path(data_dir).read_text())
    assert state["port"] == port and state["endpoint"] == f"http://127.0.0.1:{port}"
    assert is_moto_server(state["pid"])

    again = bake(data_dir, "sandbox", "start")
    assert again.stdout == f"http://127.0.0.1:{port}\n"
    assert f"already running (pid {state['pid']})" in again.stderr

    status = json.loads(bake(data_dir, "sandbox", "status", "--output", "json").stdout)
    assert status["status"] == "running" and status["pid"] == state["pid"]
    assert bake(data_dir, "sandbox", "status").stdout.startswith(
        f"running  endpoint=http://127.0.0.1:{port}  pid={state['pid']}")

    # what a user does: eval the printed lines, then any AWS tool talks to the sandbox
    env_lines = bake(data_dir, "sandbox", "env").stdout.splitlines()
    assert f"export AWS_ENDPOINT_URL=http://127.0.0.1:{port}" in env_lines
    script = (
        'eval "$1"; exec "$2" -c "import boto3; '
        "print(len(boto3.client('ec2').describe_regions()['Regions']))\""
    )
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    regions = subprocess.run(
        ["bash", "-c", script, "bash", "\n".join(env_lines), sys.executable],
        capture_output=True, text=True, env=clean_env, timeout=60, check=False,
    )
    assert regions.returncode == 0, regions.stderr
    assert int(regions.stdout) > 0

    # publish a local image into the sandbox, then list it with --local
    from bake.aws.session import AwsClients
    from bake.publish import publish
    from bake.sandbox import require_running, sandbox_target

    build_dir = data_dir / "images" / "1.30.12-amd64-20261122T030000Z"
    build_dir.mkdir(parents=True)
    (build_dir / "disk.raw").write_bytes(b"stand-in disk")
    clients = AwsClients(sandbox_target(require_running(data_dir)))
    pub = publish(clients, publish_request(local_path=str(build_dir)))[0]
    listed = bake(data_dir, "images", "list", "--local", "--output", "json")
    assert listed.returncode == 0, listed.stderr
    [image] = json.loads(listed.stdout)["images"]
    assert image["image_id"] == pub.image_id
    assert image["ssm_parameter"] == "/bake/k8s/1.30/debian-12/amd64/image_id"
    assert image["disk"] == str(build_dir / "disk.raw")

    stop = bake(data_dir, "sandbox", "stop")
    assert stop.stdout == f"stopped the embedded AWS (pid {state['pid']})\n"
    assert not _alive(state["pid"])
    assert not state_path(data_dir).exists()
    assert bake(data_dir, "sandbox", "status").stdout == "stopped\n"
    assert bake(data_dir, "sandbox", "stop").stdout == "the embedded AWS is not running\n"


def test_stop_never_kills_a_pid_that_is_not_moto(data_dir: Path, run_bake):
    other = subprocess.Popen(["sleep", "300"])
    try:
        path = state_path(data_dir)
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"pid": other.pid, "port": 1, "endpoint": "http://127.0.0.1:1",
                                    "started": "2026-11-22T00:00:00Z"}))
        assert run_bake("--data-dir", str(data_dir), "sandbox", "status").stdout == "stopped\n"
        result = run_bake("--data-dir", str(data_dir), "sandbox", "stop")
        assert result.exit_code == 0
        assert f"pid {other.pid} is not a moto server" in result.stdout
        assert other.poll() is None  # still running
        assert not path.exists()
    finally:
        other.kill()
        other.wait()


def test_ensure_running_starts_once_then_reuses(data_dir: Path):
    from bake.sandbox import ensure_running, sandbox_target, stop

    messages: list[str] = []
    first = ensure_running(data_dir, messages.append)
    try:
        assert first.endpoint.startswith("http://127.0.0.1:")
        assert messages[0].startswith("starting the embedded AWS")
        second = ensure_running(data_dir, messages.append)
        assert second == first
        assert len(messages) == 2  # nothing printed the second time
        target = sandbox_target(first)
        assert (target.endpoint_url, target.region) == (first.endpoint, "us-east-1")
        assert "testing" not in repr(target)
    finally:
        assert stop(data_dir).stopped


def test_start_on_a_busy_port_is_one_line(data_dir: Path, run_bake):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_bake("--data-dir", str(data_dir), "sandbox", "start", "--port", str(port))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"bake: error: port {port} on 127.0.0.1 is already in use: pass another --port"
    ]
    assert read_state(data_dir) is None


# ---------------------------------------------------------------- liveness probe (issue 12.1)


def _serve(handler_cls):
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_cls)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _moto_like(dump_seconds: float, config_seconds: float = 0.0):
    import http.server
    import time

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            delay = dump_seconds if self.path.endswith("data.json") else config_seconds
            time.sleep(delay)
            body = b'{"batch": {}, "lambda": {}}'
            try:
                self.send_response(201)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the probe gave up waiting, as it should

        def log_message(self, *args):
            pass

    return Handler


def _record(data_dir: Path, endpoint: str, pid: int) -> None:
    path = state_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    port = int(endpoint.rsplit(":", 1)[1])
    path.write_text(json.dumps({"pid": pid, "port": port, "endpoint": endpoint,
                                "started": "2026-12-02T00:00:00Z"}))


def test_a_server_with_a_large_state_still_counts_as_running(data_dir, monkeypatch):
    """The old probe fetched /moto-api/data.json (all state, 6 MB after one demo) with a 2 s
    timeout and reported "not running". The probe's cost must not grow with state."""
    from bake.sandbox import server as sandbox_server

    server, endpoint = _serve(_moto_like(dump_seconds=6.0))
    try:
        _record(data_dir, endpoint, os.getpid())
        monkeypatch.setattr(sandbox_server, "is_moto_server", lambda pid: True)
        assert sandbox_server.check(data_dir).state == "running"
        assert sandbox_server.require_running(data_dir).endpoint == endpoint
    finally:
        server.shutdown()


def test_running_but_not_answering_is_told_apart_from_stopped(data_dir, monkeypatch):
    from bake.errors import SandboxError
    from bake.sandbox import server as sandbox_server

    server, endpoint = _serve(_moto_like(dump_seconds=30.0, config_seconds=30.0))
    try:
        _record(data_dir, endpoint, os.getpid())
        monkeypatch.setattr(sandbox_server, "is_moto_server", lambda pid: True)
        monkeypatch.setattr(sandbox_server, "PROBE_TIMEOUT_S", 0.5)
        found = sandbox_server.check(data_dir, timeout=0.5)
        assert found.state == "unresponsive"
        with pytest.raises(SandboxError) as err:
            sandbox_server.require_running(data_dir)
        message = err.value.format_message()
        assert "runs but did not answer" in message and f"pid {os.getpid()}" in message
        assert "not running" not in message
    finally:
        server.shutdown()


def test_nothing_listening_is_stopped(data_dir, monkeypatch):
    from bake.sandbox import server as sandbox_server

    _record(data_dir, f"http://127.0.0.1:{free_port()}", os.getpid())
    monkeypatch.setattr(sandbox_server, "is_moto_server", lambda pid: True)
    assert sandbox_server.check(data_dir).state == "stopped"


def test_the_probe_asks_for_little(data_dir):
    """Against the real moto server: the probe's answer is a few bytes, however much moto holds."""
    from bake.sandbox import server as sandbox_server

    port = free_port()
    started = bake(data_dir, "sandbox", "start", "--port", str(port))
    assert started.returncode == 0, started.stderr
    import urllib.request

    with urllib.request.urlopen(
        f"http://127.0.0.1:{port}{sandbox_server.PROBE_PATH}", timeout=10
    ) as response:
        assert len(response.read()) < 1024
    assert sandbox_server.check(data_dir).state == "running"
