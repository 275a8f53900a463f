"""``Lease`` against DynamoDB in moto: exclusion, expiry and takeover, fencing."""

from __future__ import annotations

import pytest

from bake_node.errors import LeaseLost
from bake_node.lease import Lease


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


def test_one_holder_expiry_and_fencing(cluster):
    db = cluster.clients().client("dynamodb")
    clock = Clock()
    a = Lease(db, cluster.table, "control-plane", ttl=30, clock=clock)
    b = Lease(db, cluster.table, "control-plane", ttl=30, clock=clock)
    held_a = a.try_acquire("i-a")
    assert held_a and held_a.fence == 1 and held_a.previous_owner is None
    assert b.try_acquire("i-b") is None  # live lease: excluded
    clock.now += 20
    a.renew(held_a)
    clock.now += 20
    assert b.try_acquire("i-b") is None  # renewed: still excluded
    clock.now += 31  # a stops renewing (crashed): the lease expires
    held_b = b.try_acquire("i-b")
    assert held_b and held_b.fence == 2 and held_b.previous_owner == "i-a"
    # the stale holder can neither renew nor write under its old fence
    with pytest.raises(LeaseLost):
        a.renew(held_a)
    with pytest.raises(LeaseLost):
        a.fenced_put(held_a, {"pk": {"S": "cluster"}, "state": {"S": "stale"}})
    b.fenced_put(held_b, {"pk": {"S": "cluster"}, "state": {"S": "ok"}})
    a.release(held_a)  # no-op: not a's any more
    assert a.try_acquire("i-a") is None
    b.release(held_b)
    assert a.try_acquire("i-a").fence == 3
    item = db.get_item(TableName=cluster.table, Key={"pk": {"S": "cluster"}})["Item"]
    assert item["state"]["S"] == "ok"


def test_heartbeat_keeps_lease(cluster):
    import time

    db = cluster.clients().client("dynamodb")
    lease = Lease(db, cluster.table, "hb", ttl=0.9)
    held = lease.acquire("i-a", timeout=5, poll=0.1)
    with lease.keep_alive(held) as beat:
        time.sleep(2.0)  # > 2 TTLs: only the heartbeat keeps it ours
        assert Lease(db, cluster.table, "hb", ttl=0.9).try_acquire("i-b") is None
        beat.check()


def test_heartbeat_rides_out_one_failed_renewal_but_not_two(cluster):
    """A renewal that fails without a takeover (the endpoint timed out) is retried at the next
    beat; renewals failing for two thirds of the TTL mean the lease may soon be someone else's,
    so the holder stops."""
    import time

    db = cluster.clients().client("dynamodb")
    lease = Lease(db, cluster.table, "blip", ttl=1.5)
    held = lease.acquire("i-a", timeout=5, poll=0.1)
    real = lease.renew
    failures = {"left": 1}

    def flaky(h):
        if failures["left"]:
            failures["left"] -= 1
            raise TimeoutError("read timeout on the DynamoDB endpoint")
        real(h)

    lease.renew = flaky
    with lease.keep_alive(held) as beat:
        time.sleep(2.2)  # first beat fails, the next ones renew
        beat.check()
        assert Lease(db, cluster.table, "blip", ttl=1.5).try_acquire("i-b") is None
        failures["left"] = 99
        time.sleep(1.6)  # two beats fail in a row
        with pytest.raises(LeaseLost):
            beat.check()
