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
    from bake.publish import publish_image
    from bake.sandbox import require_running, sandbox_target

    build_dir = data_dir / "images" / "1.30.12-amd64-20261122T030000Z"
    build_dir.mkdir(parents=True)
    (build_dir / "disk.raw").write_bytes(b"stand-in disk")
    clients = AwsClients(sandbox_target(require_running(data_dir)))
    pub = publish_image(clients, publish_request(local_path=str(build_dir)))
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
