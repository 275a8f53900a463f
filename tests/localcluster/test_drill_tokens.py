"""The token check of the worker-after-token-expiry drill reads ``kubeadm token list -o json``
inside control-plane VMs through their guest agents (the protocol stand-in of
tests/localcluster/test_runcommand.py); an answer that is not kubeadm's JSON makes it ask the
next control plane, never raise (a drill reports failed checks, not tracebacks)."""

from __future__ import annotations

import calendar
import json
import time

import pytest
from tests.support.guest_agent import guest_agents

from bake.localcluster.drills_join import _kubeadm_tokens

EXPIRES = "2026-12-03T04:00:00Z"


class _Nodes:
    """What ``_kubeadm_tokens`` uses of a drill: its control-plane nodes and their VM dirs."""

    def __init__(self, dirs):
        self.dirs = dirs

    def nodes(self, role=None):
        assert role == "control-plane"
        return [{"dir": str(d), "role": role} for d in self.dirs]


@pytest.fixture
def two_control_planes(tmp_path, monkeypatch):
    """Two VM dirs with a guest agent each; a fake ``kubeadm`` on PATH answers garbage the
    first time and two tokens as kubeadm's JSON stream afterwards."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    good = "\n".join(json.dumps({"kind": "BootstrapToken", "token": t, "expires": EXPIRES})
                     for t in ("abcdef.0123456789abcdef", "ghijkl.0123456789ghijkl"))
    script = bin_dir / "kubeadm"
    script.write_text("#!/bin/sh\n"
                      f"if [ ! -e {calls} ]; then : > {calls}; echo '{{\"kind\": \"Boot'; "
                      "exit 0; fi\n"
                      f"cat <<'JSON'\n{good}\nJSON\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    with guest_agents(tmp_path, ("cp-1", "cp-2")) as dirs:
        yield _Nodes(dirs)


def test_a_half_written_token_list_asks_the_next_control_plane(two_control_planes):
    expiry = float(calendar.timegm(time.strptime(EXPIRES, "%Y-%m-%dT%H:%M:%SZ")))
    assert _kubeadm_tokens(two_control_planes) == {"abcdef": expiry, "ghijkl": expiry}


def test_no_readable_token_list_is_none_not_an_exception(tmp_path):
    d = tmp_path / "cp-1"
    d.mkdir()  # no guest agent listening: the VM is gone
    assert _kubeadm_tokens(_Nodes([d])) is None
