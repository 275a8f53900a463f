"""Lifecycle of the embedded AWS: moto's server, run detached on 127.0.0.1.

``start`` launches ``python -m bake.sandbox.moto_server`` (moto's server with bake's
CloudFormation compatibility patches, ``bake.sandbox.compat``) from bake's own interpreter
(``sys.executable``) as a detached process listening on 127.0.0.1 only, waits (bounded) until it
answers HTTP, and
records ``{pid, port, endpoint, started}`` in ``<data_dir>/sandbox/state.json``. ``stop`` ends
only the recorded PID, and only after checking (``/proc/<pid>/cmdline``) that it still is a moto
server, so a stale state file never kills an unrelated process that reused the PID. moto keeps
its state in memory: it lives as long as the server runs. ``sandbox_target`` points boto3 at the
server with moto's dummy credentials passed explicitly (no environment writes); ``env_lines``
prints the same settings as shell ``export`` lines for ``eval "$(bake sandbox env)"``.

Liveness (``check``) is one cheap request, ``GET /moto-api/config`` (a few bytes whatever moto
holds; ``/moto-api/data.json`` dumps all state, MBs after one bake, and took over 2 s on a loaded
machine). It tells three states apart: running, stopped (PID gone, not moto, or nothing listens)
and unresponsive (a live moto server that did not answer in ``PROBE_TIMEOUT_S``).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from bake.errors import SandboxError

#: moto accepts any credentials; these are its documented dummy values ("testing").
DUMMY_ACCESS_KEY_ID = "testing"
DUMMY_SECRET_ACCESS_KEY = "testing"
#: region the embedded AWS is used with (moto serves every region; one is picked for clarity).
SANDBOX_REGION = "us-east-1"
#: the only address the server listens on.
HOST = "127.0.0.1"
#: bounded wait for the server to answer after launch, in seconds.
START_TIMEOUT_S = 30.0
#: bounded wait for the server to exit after SIGTERM before SIGKILL, in seconds.
STOP_TIMEOUT_S = 10.0

NOT_RUNNING = "the embedded AWS is not running: start it with `bake sandbox start`"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Sandbox:
    """A running (or recorded) embedded AWS.

    Attributes:
        pid: process id of the moto server.
        port: TCP port on 127.0.0.1.
        endpoint: ``http://127.0.0.1:<port>``, the endpoint URL for every boto3 client.
        started: ISO 8601 UTC time the server was started, e.g. ``2026-11-22T03:40:22Z``.
        region: the region bake uses against it (``us-east-1``).
    """

    pid: int
    port: int
    endpoint: str
    started: str
    region: str = SANDBOX_REGION

    def to_json(self) -> dict:
        """Return the state-file form: ``{pid, port, endpoint, started, region}``."""
        return asdict(self)


def state_path(data_dir: Path) -> Path:
    """Return ``<data_dir>/sandbox/state.json`` (not created here)."""
    return Path(data_dir) / "sandbox" / "state.json"


def log_path(data_dir: Path) -> Path:
    """Return ``<data_dir>/sandbox/server.log``, where the server's output goes."""
    return Path(data_dir) / "sandbox" / "server.log"


def read_state(data_dir: Path) -> Sandbox | None:
    """Read the recorded sandbox, whether or not it is still running.

    Returns:
        the ``Sandbox`` recorded in ``state.json``, or ``None`` when there is none or it is
        unreadable (a corrupt state file is treated as absent).
    """
    path = state_path(data_dir)
    try:
        raw = json.loads(path.read_text())
        return Sandbox(
            pid=int(raw["pid"]),
            port=int(raw["port"]),
            endpoint=str(raw["endpoint"]),
            started=str(raw["started"]),
            region=str(raw.get("region", SANDBOX_REGION)),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_state(data_dir: Path, sandbox: Sandbox) -> None:
    path = state_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(sandbox.to_json(), indent=2) + "\n")
    os.replace(tmp, path)


def _remove_state(data_dir: Path) -> None:
    try:
        state_path(data_dir).unlink()
    except FileNotFoundError:
        pass


def _alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie (Linux ``/proc/<pid>/stat`` state)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # field 3, after the parenthesised command name (which may itself hold spaces)
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def is_moto_server(pid: int) -> bool:
    """True when ``pid`` is a live process whose command line runs moto's server.

    Recognises ``python -m bake.sandbox.moto_server`` (how bake starts it),
    ``python -m moto.server`` and the ``moto_server`` script.
    """
    if pid <= 0 or not _alive(pid):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    args = [a.decode(errors="replace") for a in argv if a]
    return ("bake.sandbox.moto_server" in args or "moto.server" in args
            or any(Path(a).name == "moto_server" for a in args))


#: bounded wait for one liveness probe, in seconds (the probe's cost does not grow with state).
PROBE_TIMEOUT_S = 5.0
#: moto's configuration endpoint: a few bytes of JSON whatever moto holds, unlike
#: ``/moto-api/data.json``, which dumps every resource (MBs after one bake).
PROBE_PATH = "/moto-api/config"


def probe(endpoint: str, timeout: float = PROBE_TIMEOUT_S) -> str:
    """Ask the server at ``endpoint`` a cheap question: ``GET /moto-api/config``.

    Args:
        endpoint: ``http://127.0.0.1:<port>``.
        timeout: seconds to wait for the answer.

    Returns:
        ``"answers"`` (any HTTP answer), ``"refused"`` (nothing listens: connection refused or
        reset) or ``"timeout"`` (something listens but did not answer within ``timeout``).
    """
    try:
        with urllib.request.urlopen(endpoint + PROBE_PATH, timeout=timeout) as response:
            response.read(4096)
            return "answers"
    except urllib.error.HTTPError:
        return "answers"
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return "timeout"
        return "refused"
    except TimeoutError:
        return "timeout"
    except (OSError, ValueError):
        return "refused"


def _answers(endpoint: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True when an HTTP server answers at ``endpoint`` within ``timeout`` seconds."""
    return probe(endpoint, timeout) == "answers"


@dataclass(frozen=True)
class SandboxStatus:
    """What a liveness check found.

    Attributes:
        state: ``"running"`` (recorded, a live moto server, answering), ``"stopped"`` (nothing
            recorded, or the recorded PID is gone or is not moto, or nothing listens on its
            port) or ``"unresponsive"`` (a live moto server that did not answer the probe
            within ``PROBE_TIMEOUT_S``: busy, not gone).
        sandbox: the recorded sandbox (``None`` when ``stopped`` with nothing recorded).
    """

    state: str
    sandbox: Sandbox | None


def check(data_dir: Path, timeout: float = PROBE_TIMEOUT_S) -> SandboxStatus:
    """Tell "not running" apart from "running but not answering" (one cheap probe).

    Args:
        data_dir: bake's data dir.
        timeout: seconds the probe waits.

    Returns:
        a ``SandboxStatus``.
    """
    sandbox = read_state(data_dir)
    if sandbox is None or not is_moto_server(sandbox.pid):
        return SandboxStatus("stopped", sandbox)
    answer = probe(sandbox.endpoint, timeout)
    if answer == "answers":
        return SandboxStatus("running", sandbox)
    return SandboxStatus("unresponsive" if answer == "timeout" else "stopped", sandbox)


def status(data_dir: Path) -> Sandbox | None:
    """Return the running sandbox, or ``None`` when none is running or it does not answer.

    Running means: recorded in ``state.json``, the PID is a live moto server, and it answers
    the probe (``check``).
    """
    found = check(data_dir)
    return found.sandbox if found.state == "running" else None


def unresponsive_message(sandbox: Sandbox, timeout: float = PROBE_TIMEOUT_S) -> str:
    """The one line for a moto server that runs but did not answer in time."""
    return (
        f"the embedded AWS (pid {sandbox.pid}) runs but did not answer on {sandbox.endpoint} "
        f"within {timeout:.0f} s: the machine may be busy; retry, or restart it with "
        "`bake sandbox stop` and `bake sandbox start`"
    )


def require_running(data_dir: Path) -> Sandbox:
    """Return the running sandbox.

    Raises:
        SandboxError: "the embedded AWS is not running: start it with `bake sandbox start`",
            or, for a live server that did not answer the probe in time, a line saying so
            (it is busy, not stopped).
    """
    found = check(data_dir)
    if found.state == "unresponsive":
        raise SandboxError(unresponsive_message(found.sandbox))
    if found.state != "running":
        raise SandboxError(NOT_RUNNING)
    return found.sandbox


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return True
    return False


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _last_log_line(data_dir: Path) -> str:
    try:
        lines = [ln for ln in log_path(data_dir).read_text(errors="replace").splitlines() if ln]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def start(
    data_dir: Path,
    port: int | None = None,
    progress: Progress | None = None,
    timeout_s: float = START_TIMEOUT_S,
) -> Sandbox:
    """Start the embedded AWS, or return the one already running.

    Args:
        data_dir: bake's data dir; state goes to ``<data_dir>/sandbox/``.
        port: TCP port on 127.0.0.1, or ``None`` for a free port chosen by the kernel.
        progress: called with one-line progress messages (may be ``None``).
        timeout_s: bounded wait, in seconds, for the server to answer.

    Returns:
        the running ``Sandbox`` (already running: the recorded one, whatever ``port`` says).

    Raises:
        SandboxError: the port is taken, moto is not installed, the recorded server runs but
            does not answer, or the new server did not answer in time (the process bake
            started is then stopped, and no state is recorded).
    """
    found = check(data_dir)
    if found.state == "running":
        return found.sandbox
    if found.state == "unresponsive" or (
        found.sandbox is not None and is_moto_server(found.sandbox.pid)
    ):
        raise SandboxError(unresponsive_message(found.sandbox))
    _remove_state(data_dir)  # stale: its PID is gone or is not a moto server any more
    if port is None:
        port = _free_port()
    elif not 0 < port < 65536:
        raise SandboxError(f"--port {port} is not a TCP port: use 1-65535")
    elif _port_in_use(port):
        raise SandboxError(f"port {port} on {HOST} is already in use: pass another --port")
    try:
        import moto.server  # noqa: F401 - only to fail early with a clear message
    except ImportError as exc:
        raise SandboxError(
            "moto's server is not installed in bake's Python: pip install 'moto[server]'"
        ) from exc

    endpoint = f"http://{HOST}:{port}"
    log = log_path(data_dir)
    log.parent.mkdir(parents=True, exist_ok=True)
    if progress:
        progress(f"starting the embedded AWS (moto server) on {endpoint}")
    with open(log, "ab") as out:
        proc = subprocess.Popen(  # noqa: S603 - fixed argv, our own interpreter
            [sys.executable, "-m", "bake.sandbox.moto_server", "-H", HOST, "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # detached: outlives this command, not in its process group
            close_fds=True,
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            detail = _last_log_line(data_dir)
            raise SandboxError(
                f"the embedded AWS exited at start (code {proc.returncode})"
                + (f": {detail}" if detail else "")
                + f"; see {log}"
            )
        if _answers(endpoint, timeout=1.0):
            sandbox = Sandbox(pid=proc.pid, port=port, endpoint=endpoint, started=_utc_now())
            _write_state(data_dir, sandbox)
            return sandbox
        time.sleep(0.2)
    _terminate(proc.pid)
    proc.wait(timeout=STOP_TIMEOUT_S)
    raise SandboxError(
        f"the embedded AWS did not answer on {endpoint} within {timeout_s:.0f} s; see {log}"
    )


def _terminate(pid: int, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM ``pid``, wait up to ``timeout_s`` seconds, then SIGKILL."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@dataclass(frozen=True)
class StopResult:
    """What ``stop`` did.

    Attributes:
        sandbox: the recorded sandbox, or ``None`` when nothing was recorded.
        stopped: True when a moto server was stopped.
        stale: True when the state file pointed at a PID that is gone or is not a moto server
            (nothing was killed; the state file was removed).
    """

    sandbox: Sandbox | None
    stopped: bool
    stale: bool


def stop(data_dir: Path) -> StopResult:
    """Stop the recorded moto server, and only it.

    The recorded PID is signalled only when ``/proc/<pid>/cmdline`` shows a moto server;
    otherwise the state is stale and just removed.

    Returns:
        a ``StopResult``. Never raises for "not running".
    """
    sandbox = read_state(data_dir)
    if sandbox is None:
        _remove_state(data_dir)
        return StopResult(None, stopped=False, stale=False)
    if not is_moto_server(sandbox.pid):
        _remove_state(data_dir)
        return StopResult(sandbox, stopped=False, stale=True)
    _terminate(sandbox.pid)
    _remove_state(data_dir)
    return StopResult(sandbox, stopped=True, stale=False)


def ensure_running(data_dir: Path, progress: Progress | None = None) -> Sandbox:
    """Return the running embedded AWS, starting it (on a free port) when needed.

    Used by ``bake ami --local``.

    Raises:
        SandboxError: it could not be started (see ``start``).
    """
    found = check(data_dir)
    if found.state == "running":
        return found.sandbox
    if found.state == "unresponsive":
        raise SandboxError(unresponsive_message(found.sandbox))
    sandbox = start(data_dir, port=None, progress=progress)
    if progress:
        progress(f"embedded AWS running on {sandbox.endpoint} (pid {sandbox.pid})")
    return sandbox


def sandbox_target(sandbox: Sandbox):
    """Return the ``bake.aws.session.AwsTarget`` for the embedded AWS.

    Every client built from it uses ``sandbox.endpoint``, the sandbox region and moto's dummy
    credentials, passed to ``boto3.session.Session`` explicitly (the environment is untouched,
    and no named profile is used).
    """
    from bake.aws.session import AwsTarget

    return AwsTarget(
        region=sandbox.region,
        profile=None,
        endpoint_url=sandbox.endpoint,
        max_attempts=3,
        access_key_id=DUMMY_ACCESS_KEY_ID,
        secret_access_key=DUMMY_SECRET_ACCESS_KEY,
    )


def env_lines(sandbox: Sandbox) -> list[str]:
    """Shell lines that point the AWS CLI, boto3 and bake at the sandbox.

    Returns:
        ``export NAME=value`` lines (values shell-quoted) for ``AWS_ENDPOINT_URL``,
        ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` (moto's dummy values), ``AWS_REGION``
        and ``AWS_DEFAULT_REGION``; printed for ``eval "$(bake sandbox env)"``, never applied
        to this process.
    """
    values = {
        "AWS_ENDPOINT_URL": sandbox.endpoint,
        "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_ACCESS_KEY,
        "AWS_REGION": sandbox.region,
        "AWS_DEFAULT_REGION": sandbox.region,
    }
    return [f"export {k}={shlex.quote(v)}" for k, v in values.items()]
