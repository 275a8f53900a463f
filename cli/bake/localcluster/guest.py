"""Run a command inside a local VM through the QEMU guest agent (the local platform's SSM agent).

On AWS, a command reaches an instance through SSM Run Command and the SSM agent on it. The
local VMs have no SSM agent and moto cannot run commands, so the local platform carries a Run
Command out with the QEMU guest agent instead: each VM has a virtio-serial port named
``org.qemu.guest_agent.0`` whose host end is ``<vm dir>/qga.sock`` (see ``vm.qemu_argv``), and
Debian's ``qemu-guest-agent`` in the local parent image answers on it (QEMU docs, "QEMU Guest
Agent Protocol Reference": ``guest-sync-delimited``, ``guest-exec`` with ``capture-output``,
``guest-exec-status``; output is base64). Nothing here listens on a network.
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from bake.errors import BakeError


class GuestAgentError(BakeError):
    """The guest agent did not answer, or refused the command (its message)."""


@dataclass(frozen=True)
class ExecResult:
    """What a command inside the VM did: ``exit_code`` (int; -1 when killed by a signal),
    ``stdout`` and ``stderr`` (text, decoded as UTF-8 with replacement)."""

    exit_code: int
    stdout: str
    stderr: str


class GuestAgent:
    """A connection to one VM's guest agent socket.

    Args:
        socket_path: ``<vm dir>/qga.sock``.
        timeout_s: seconds to wait for each reply.
    """

    def __init__(self, socket_path: Path, timeout_s: float = 10.0) -> None:
        self.path = Path(socket_path)
        self.timeout_s = timeout_s

    def _call(self, sock: socket.socket, buf: bytearray, command: dict | None,
              errors: bool = True) -> dict:
        try:
            return self._exchange(sock, buf, command, errors)
        except (OSError, ValueError) as exc:  # a paused or rebooting VM: a timeout, a reset
            raise GuestAgentError(f"guest agent at {self.path}: {exc or type(exc).__name__}"
                                  ) from exc

    def _exchange(self, sock: socket.socket, buf: bytearray, command: dict | None,
                  errors: bool) -> dict:
        """Send ``command`` (None: send nothing) and return the next reply; an error reply
        raises ``GuestAgentError`` when ``errors``."""
        if command is not None:
            sock.sendall(json.dumps(command).encode() + b"\n")
        deadline = time.monotonic() + self.timeout_s
        while True:
            line, sep, rest = bytes(buf).partition(b"\n")
            if sep:
                buf[:] = rest
                line = line.lstrip(b"\xff")  # the sentinel byte before a sync reply
                if not line.strip():
                    continue
                reply = json.loads(line.decode("utf-8", "replace"))
                if "error" in reply and errors:
                    raise GuestAgentError(f"guest agent: {reply['error'].get('desc', reply)}")
                return reply
            if time.monotonic() > deadline:
                raise GuestAgentError(f"guest agent at {self.path} did not answer in "
                                      f"{self.timeout_s:.0f} s")
            chunk = sock.recv(65536)
            if not chunk:
                raise GuestAgentError(f"guest agent at {self.path} closed the connection")
            buf.extend(chunk)

    def _connect(self) -> tuple[socket.socket, bytearray]:
        deadline = time.monotonic() + self.timeout_s
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout_s)
            try:
                sock.connect(str(self.path))
                break
            except BlockingIOError:  # qemu's listener is busy with another client
                sock.close()
                if time.monotonic() > deadline:
                    raise GuestAgentError(f"the guest agent at {self.path} stayed busy for "
                                          f"{self.timeout_s:.0f} s") from None
                time.sleep(0.2)
            except OSError as exc:
                sock.close()
                raise GuestAgentError(f"cannot reach the guest agent at {self.path}: "
                                      f"{exc.strerror or exc}") from exc
        buf = bytearray()
        # guest-sync-delimited (QEMU guest agent protocol reference): a 0xFF byte resets the
        # agent's parser (it answers with a "stray" parse error, skipped here like any reply
        # an earlier client left in the channel) until the reply carrying our token
        token = secrets.randbelow(2**31)
        try:
            sock.sendall(b"\xff")
        except OSError as exc:
            sock.close()
            raise GuestAgentError(f"guest agent at {self.path}: {exc}") from exc
        reply = self._call(sock, buf, {"execute": "guest-sync-delimited",
                                       "arguments": {"id": token}}, errors=False)
        while reply.get("return") != token:
            reply = self._call(sock, buf, None, errors=False)
        return sock, buf

    def _request(self, command: dict) -> dict:
        """One command on a connection of its own; its ``return`` value."""
        sock, buf = self._connect()
        with sock:
            return self._call(sock, buf, command)["return"]

    def ping(self) -> bool:
        """True when the agent answers ``guest-ping``."""
        try:
            self._request({"execute": "guest-ping"})
            return True
        except (GuestAgentError, OSError, ValueError):
            return False

    def run(self, script: str, timeout_s: float = 60.0) -> ExecResult:
        """Run ``/bin/sh -c script`` inside the VM and wait for it.

        Args:
            script: shell text.
            timeout_s: seconds to wait for the command to exit.

        Returns:
            ``ExecResult``.

        Raises:
            GuestAgentError: no agent, or the command did not exit within ``timeout_s``.
        """
        # one short connection per request: the VM's guest agent channel takes one client at
        # a time, and other callers (a drill's quorum watch, a Lambda's Run Command) wait
        # their turn while a command runs
        pid = self._request({"execute": "guest-exec", "arguments": {
            "path": "/bin/sh", "arg": ["-c", script], "capture-output": True}})["pid"]
        deadline = time.monotonic() + timeout_s
        while True:
            status = self._request({"execute": "guest-exec-status", "arguments": {"pid": pid}})
            if status.get("exited"):
                break
            if time.monotonic() > deadline:
                raise GuestAgentError(f"command in the VM did not exit in {timeout_s:.0f} s")
            time.sleep(0.5)

        def text(key: str) -> str:
            return base64.b64decode(status.get(key, "")).decode("utf-8", "replace")

        code = status.get("exitcode", -1 if "signal" in status else 0)
        return ExecResult(int(code), text("out-data"), text("err-data"))
