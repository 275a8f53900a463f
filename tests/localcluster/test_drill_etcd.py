"""The drills read etcd the way the member cleanup Lambda does (``member list`` then ``endpoint
health --cluster``, inside a control-plane VM through its guest agent). A control plane whose
``endpoint health`` printed nothing (its own member was just removed and its etcd is stopping)
has not reported 0 healthy members: the drill asks the next control plane. This was the one
sample of 0 healthy members that failed a control-plane-roll drill on 2026-12-03."""

from __future__ import annotations

import json

import pytest
from tests.support.guest_agent import guest_agents

from bake.localcluster.drill import Drill

MEMBERS = {"members": [
    {"ID": 0xA1, "name": "cp-1", "peerURLs": ["https://10.0.0.10:2380"],
     "clientURLs": ["https://10.0.0.10:2379"]},
    {"ID": 0xA2, "name": "cp-2", "peerURLs": ["https://10.0.0.11:2380"],
     "clientURLs": ["https://10.0.0.11:2379"]},
]}
HEALTH = [{"endpoint": "https://10.0.0.10:2379", "health": True},
          {"endpoint": "https://10.0.0.11:2379", "health": True}]


class _Nodes:
    """What ``Drill.etcd`` uses of a drill: its control-plane nodes and their VM dirs."""

    def __init__(self, dirs):
        self.dirs = dirs

    def nodes(self, role=None):
        assert role == "control-plane"
        return [{"dir": str(d), "role": role, "instance_id": d.name} for d in self.dirs]


@pytest.fixture
def two_control_planes(tmp_path, monkeypatch):
    """Two VM dirs with a guest agent each; a fake ``crictl`` on PATH whose ``etcdctl
    endpoint health`` fails with no output the first time and answers afterwards."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    script = bin_dir / "crictl"
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = ps ]; then echo c0ffee; exit 0; fi\n'
        'case "$*" in\n'
        f"  *'member list'*) echo '{json.dumps(MEMBERS)}' ;;\n"
        f"  *'endpoint health'*) if [ ! -e {calls} ]; then : > {calls}; "
        "echo 'context deadline exceeded' >&2; exit 1; fi\n"
        f"    echo '{json.dumps(HEALTH)}' ;;\n"
        "esac\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    with guest_agents(tmp_path, ("i-1", "i-2")) as dirs:
        yield _Nodes(dirs)


def test_a_member_list_without_health_asks_the_next_control_plane(two_control_planes):
    members, healthy = Drill.etcd(two_control_planes)
    assert [m["name"] for m in members] == ["cp-1", "cp-2"]
    assert healthy == {"https://10.0.0.10:2379", "https://10.0.0.11:2379"}


def test_summary_counts_both_members_healthy(two_control_planes):
    summary = Drill.etcd_summary(_EtcdOf(two_control_planes))
    assert summary["reachable"]
    assert [(m["name"], m["healthy"]) for m in summary["members"]] == [("cp-1", True),
                                                                       ("cp-2", True)]


def test_no_control_plane_answering_both_is_unreachable(tmp_path):
    d = tmp_path / "i-1"
    d.mkdir()  # no guest agent listening: the VM is gone
    assert Drill.etcd_summary(_EtcdOf(_Nodes([d]))) == {"reachable": False}


class _EtcdOf(_Nodes):
    """A drill stand-in whose ``etcd`` is ``Drill.etcd`` over the given nodes."""

    def __init__(self, nodes):
        super().__init__(nodes.dirs)

    def etcd(self, exclude=()):
        return Drill.etcd(self, exclude)
