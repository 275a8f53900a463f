"""Network namespaces of local clusters: create, delete, run a command inside, open sockets inside.

A namespace is created with iproute2 (``ip netns add``, which bind-mounts it at
``/var/run/netns/<name>``). ``inside(name)`` switches the calling thread into it with setns(2)
(``CLONE_NEWNET``) and back; a socket created meanwhile stays in that namespace for its life,
while connections opened after the switch back leave from this machine's own namespace. That is
how one process serves the VMs inside while reaching the embedded AWS on 127.0.0.1 outside.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from bake.errors import EnvironmentProblem

CLONE_NEWNET = 0x40000000  # linux/sched.h
NETNS_DIR = Path("/var/run/netns")


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def inside(name: str) -> Iterator[None]:
    """Run the body in network namespace ``name`` (this thread only), then come back."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(NETNS_DIR / name, os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)


def ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``ip [-n NETNS] ARGS``.

    Raises:
        EnvironmentProblem: the command failed (names it and iproute2's message).
    """
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise EnvironmentProblem(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    return proc


def exists(name: str) -> bool:
    """True when namespace ``name`` exists."""
    return (NETNS_DIR / name).exists()


def create(name: str) -> None:
    """Create namespace ``name`` with its loopback up (a no-op when it exists)."""
    if not exists(name):
        ip("netns", "add", name)
    ip("link", "set", "lo", "up", netns=name)


def delete(name: str) -> None:
    """Delete namespace ``name`` and every interface in it (a no-op when it is gone)."""
    if exists(name):
        ip("netns", "delete", name, check=False)


def exec_argv(name: str, argv: list[str]) -> list[str]:
    """``argv`` run inside namespace ``name`` (``ip netns exec``)."""
    return ["ip", "netns", "exec", name, *argv]
