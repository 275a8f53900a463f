"""A stand-in for a VM's qemu-ga: the QEMU Guest Agent protocol (guest-sync-delimited,
guest-exec with capture-output, guest-exec-status; base64 output) on a unix socket, running
the commands on this host. The real one answers in the VM tests."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import subprocess
import threading


class FakeGuestAgent(threading.Thread):
    """qemu-ga's protocol over a unix socket; runs the commands on this host."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(path))
        self.server.listen()
        self.procs = {}

    def run(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                buf = b""
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    if chunk.startswith(b"\xff"):  # as qemu-ga does: the reset byte is
                        chunk = chunk.lstrip(b"\xff")  # answered with a parse error
                        conn.sendall(json.dumps({"error": {
                            "class": "GenericError",
                            "desc": "JSON parse error, stray '\\xff'"}}).encode() + b"\n")
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        if line.strip():
                            conn.sendall(self.answer(json.loads(line)))

    def answer(self, req):
        args = req.get("arguments", {})
        if req["execute"] == "guest-sync-delimited":
            return b"\xff" + json.dumps({"return": args["id"]}).encode() + b"\n"
        if req["execute"] == "guest-exec":
            proc = subprocess.Popen([args["path"], *args["arg"]], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
            self.procs[proc.pid] = proc
            return json.dumps({"return": {"pid": proc.pid}}).encode() + b"\n"
        if req["execute"] == "guest-exec-status":
            proc = self.procs[args["pid"]]
            if proc.poll() is None:
                return json.dumps({"return": {"exited": False}}).encode() + b"\n"
            out, err = proc.communicate()
            return json.dumps({"return": {
                "exited": True, "exitcode": proc.returncode,
                "out-data": base64.b64encode(out).decode(),
                "err-data": base64.b64encode(err).decode()}}).encode() + b"\n"
        return json.dumps({"error": {"class": "CommandNotFound", "desc": "nope"}}).encode() + b"\n"


@contextlib.contextmanager
def guest_agents(tmp_path, names):
    """One VM dir per name under ``tmp_path``, each with a ``FakeGuestAgent`` on its
    ``qga.sock`` (what ``bake.localcluster.vm.VmFiles.guest_agent`` names); yields the dirs and
    closes the agents afterwards."""
    dirs, fakes = [], []
    try:
        for name in names:
            d = tmp_path / name
            d.mkdir()
            fake = FakeGuestAgent(d / "qga.sock")
            fake.start()
            dirs.append(d)
            fakes.append(fake)
        yield dirs
    finally:
        for fake in fakes:
            fake.server.close()
