"""A local cluster's bookkeeping: where its files are, its recorded state
(``<data dir>/clusters/<name>/local.json``: the pids of everything started, the nodes), and
stopping only the processes bake recorded (checked against ``/proc/<pid>/cmdline``).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from bake.errors import BakeError, UsageError


class LocalClusterError(BakeError):
    """A local cluster failed to form or to stop; names the node, phase and log to read."""


def cluster_dir(data_dir: Path, name: str) -> Path:
    """``<data dir>/clusters/<name>``."""
    return Path(data_dir) / "clusters" / name


def state_path(data_dir: Path, name: str) -> Path:
    """``<data dir>/clusters/<name>/local.json``."""
    return cluster_dir(data_dir, name) / "local.json"


def read_state(data_dir: Path, name: str) -> dict | None:
    """The recorded local cluster, or ``None``."""
    try:
        return json.loads(state_path(data_dir, name).read_text())
    except (OSError, ValueError):
        return None


def write_state(data_dir: Path, name: str, state: dict) -> None:
    path = state_path(data_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def cmdline(pid: int) -> list[str]:
    try:
        return [a.decode(errors="replace")
                for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return []


def is_ours(pid: int | None, marker: str) -> bool:
    """True when ``pid`` is alive and its command line holds ``marker`` (a path of ours)."""
    return bool(pid) and any(marker in a for a in cmdline(int(pid)))


def stop_recorded(pid: int | None, marker: str, timeout_s: float = 10.0) -> None:
    if not is_ours(pid, marker):
        return
    os.kill(int(pid), signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and is_ours(pid, marker):
        time.sleep(0.2)
    if is_ours(pid, marker):
        os.kill(int(pid), signal.SIGKILL)


def running_nodes(state: dict) -> list[dict]:
    """The recorded nodes whose instances were not terminated (VM running or not)."""
    return [n for n in state.get("nodes", []) if not n.get("terminated")]


def find_node(state: dict, ref: str) -> dict:
    """The recorded node named by instance id, private IP or host name.

    Raises:
        UsageError: none matches (lists them).
    """
    for node in state.get("nodes", []):
        if ref in (node["instance_id"], node["private_ip"], node["hostname"],
                   node["hostname"].split(".", 1)[0]):
            return node
    known = ", ".join(f"{n['instance_id']} ({n['role']}, {n['private_ip']})"
                      for n in state.get("nodes", []))
    raise UsageError(f"no node {ref!r} in this local cluster; nodes: {known or 'none'}")


def console_text(node: dict, lines: int | None = None) -> str:
    """A VM's console (kernel, systemd, cloud-init and the agent's journal lines)."""
    text = (Path(node["dir"]) / "console.log").read_bytes().decode(errors="replace")
    text = text.replace("\r\n", "\n")
    if lines:
        text = "\n".join(text.splitlines()[-lines:]) + "\n"
    return text
