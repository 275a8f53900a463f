"""``EtcdMembers`` against a real 3-member etcd 3.4 cluster (Debian etcd-server) and moto EC2:
a stale member of a terminated instance and a never-started learner are removed before a
control-plane join; a removal that would cost quorum is refused."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from bake_node.errors import QuorumError
from bake_node.etcd import EtcdCtl, EtcdMembers


def etcdctl(etcd, *args):
    """Run etcdctl; membership changes are refused ("unhealthy cluster") until every member
    has been connected for etcd's 5 s health interval, so those are tried again for 30 s."""
    deadline = time.monotonic() + 30
    while True:
        proc = subprocess.run(
            ["etcdctl", "--endpoints", ",".join(etcd.endpoints), *args],
            capture_output=True,
            text=True,
            env={**os.environ, "ETCDCTL_API": "3"},
        )
        if proc.returncode == 0:
            return proc.stdout
        if "unhealthy cluster" not in proc.stderr or time.monotonic() > deadline:
            raise AssertionError(f"etcdctl {' '.join(args)}: {proc.stderr}")
        time.sleep(1)


def register_running(cluster, registry, ctl, etcd):
    """Register each running member against a fresh moto instance; returns name -> instance."""
    by_name = {}
    for m in ctl.members():
        if m.name in etcd.members:
            by_name[m.name] = cluster.new_instance()
            registry.register(by_name[m.name], m)
    return by_name


@pytest.mark.slow
def test_stale_member_and_unstarted_learner_removed(cluster, etcd3):
    from tests.conftest import free_port

    ec2 = cluster.clients().client("ec2")
    registry = EtcdMembers(cluster.clients().client("dynamodb"), cluster.table, ec2)
    ctl = EtcdCtl(etcd3.endpoints, timeout=6)
    register_running(cluster, registry, ctl, etcd3)
    # a learner never started, and a member whose node died (its instance is now terminated)
    etcdctl(
        etcd3,
        "member",
        "add",
        "learner",
        "--learner",
        f"--peer-urls=http://127.0.0.1:{free_port()}",
    )
    etcdctl(etcd3, "member", "add", "stale", f"--peer-urls=http://127.0.0.1:{free_port()}")
    stale = next(m for m in ctl.members() if not m.is_learner and not m.started)
    dead = cluster.new_instance()
    registry.register(dead, stale)
    ec2.terminate_instances(InstanceIds=[dead])
    assert len(ctl.members()) == 5

    result = registry.reconcile(ctl)

    assert len(result.removed) == 2 and not result.refused
    members = ctl.members()
    assert sorted(m.name for m in members) == ["etcd-a", "etcd-b", "etcd-c"]
    assert all(m.started and not m.is_learner for m in members)
    assert stale.id not in registry.registry()  # the registry forgot the dead instance
    assert len(registry.registry()) == 3


@pytest.mark.slow
def test_quorum_threatening_removal_refused(cluster, etcd3):
    ec2 = cluster.clients().client("ec2")
    registry = EtcdMembers(cluster.clients().client("dynamodb"), cluster.table, ec2)
    ctl = EtcdCtl(etcd3.endpoints, timeout=4)
    instances = register_running(cluster, registry, ctl, etcd3)
    # etcd-b's instance is reported gone, while etcd-c is down: removing etcd-b would leave
    # {a, c} with one healthy member of two (quorum 2)
    ec2.terminate_instances(InstanceIds=[instances["etcd-b"]])
    etcd3.stop("etcd-c")

    with pytest.raises(QuorumError, match="quorum"):
        registry.reconcile(ctl)
    result = registry.reconcile(ctl, strict=False)

    assert result.removed == [] and len(result.refused) == 1
    assert sorted(m.name for m in EtcdCtl([etcd3.members["etcd-a"][0]]).members()) == [
        "etcd-a",
        "etcd-b",
        "etcd-c",
    ]
    assert len(registry.registry()) == 3
