"""``Lease``: a leader lock in DynamoDB with an expiry and a fencing counter.

One item per lease (``pk = "lease#<name>"``) holds ``owner``, ``expires`` (epoch seconds) and
``fence`` (a counter incremented on every acquisition). Acquisition is one conditional
``UpdateItem`` (the item is free, expired, or already ours); renewal and release are
conditional on ``owner`` and ``fence`` still being ours, so a holder whose lease expired and was
taken over can no longer renew it (DynamoDB developer guide, "Condition expressions"). Writes
that must only happen under the lease use ``fenced_put`` (``TransactWriteItems`` with a
``ConditionCheck`` on the lease item), so a paused, stale leader cannot overwrite its
successor's work. Times come from the node clock (Amazon Time Sync on EC2); TTLs are far larger
than clock skew.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

from bake_node.aws import dynamodb as ddb
from bake_node.errors import LeaseLost

log = logging.getLogger("bake_node.lease")


def ensure_table(dynamodb, name: str) -> None:
    """Create the lock table (``pk`` string hash key, on-demand) if missing, and wait for it.

    ``bake launch`` creates it in CloudFormation; tests and the benchmark use this helper.
    """
    ddb.create_table_if_missing(dynamodb, name)


@dataclass(frozen=True)
class Held:
    """A held lease: ``fence`` is this acquisition's counter; ``previous_owner`` the last holder
    (None when the lease was never held), so a taker-over knows someone died mid-work."""

    name: str
    owner: str
    fence: int
    previous_owner: str | None


class Lease:
    """A named lease in ``table``.

    Args:
        dynamodb: a boto3 DynamoDB client.
        table: the lock table name (``NodeConfig.lock_table``).
        name: the lease name, e.g. ``"control-plane"``.
        ttl: lease duration in seconds; a holder renews every ``ttl / 3``.
        clock: returns epoch seconds (tests may pass their own).
    """

    def __init__(self, dynamodb, table: str, name: str, ttl: float = 60.0, clock=time.time):
        self.db, self.table, self.name, self.ttl, self.clock = dynamodb, table, name, ttl, clock
        self.key = {"pk": {"S": f"lease#{name}"}}

    def try_acquire(self, owner: str) -> Held | None:
        """One attempt: take the lease if free, expired or already ``owner``'s.

        Returns:
            ``Held`` on success, ``None`` when someone else holds a live lease.
        """
        now = self.clock()
        attrs = ddb.update_if(
            self.db,
            self.table,
            self.key,
            update="SET #o = :me, expires = :exp ADD fence :one",
            condition="attribute_not_exists(pk) OR expires < :now OR #o = :me",
            names={"#o": "owner"},
            values={
                ":me": {"S": owner},
                ":exp": {"N": repr(now + self.ttl)},
                ":now": {"N": repr(now)},
                ":one": {"N": "1"},
            },
        )
        if attrs is None:
            return None
        previous = attrs.get("previous_owner", {}).get("S")
        held = Held(self.name, owner, int(attrs["fence"]["N"]), previous)
        self._set_previous(held)
        log.info("lease %s acquired by %s (fence %d)", self.name, owner, held.fence)
        return held

    def _set_previous(self, held: Held) -> None:
        # remembered for the next taker (who then knows whose work may be half-done); a
        # failed condition means the lease moved on already: nothing to remember
        self._if_held(held, "SET previous_owner = :me", {})

    def _if_held(self, held: Held, update: str, values: dict[str, Any]) -> bool:
        """``update`` the lease item only while ``held`` is the current holder; ``False`` when
        the lease moved on (nothing written)."""
        return (
            ddb.update_if(
                self.db,
                self.table,
                self.key,
                update=update,
                condition="#o = :me AND fence = :f",
                names={"#o": "owner"},
                values={":me": {"S": held.owner}, ":f": {"N": str(held.fence)}, **values},
            )
            is not None
        )

    def acquire(self, owner: str, timeout: float = 3600.0, poll: float = 2.0) -> Held:
        """Wait until the lease is ours (polling every ~``poll`` s with jitter).

        Raises:
            LeaseLost: not acquired within ``timeout`` seconds.
        """
        deadline = self.clock() + timeout
        while True:
            held = self.try_acquire(owner)
            if held:
                return held
            if self.clock() > deadline:
                raise LeaseLost(f"lease {self.name} not acquired within {timeout:.0f} s")
            time.sleep(poll * random.uniform(0.5, 1.5))

    def renew(self, held: Held) -> None:
        """Extend the lease by ``ttl`` from now.

        Raises:
            LeaseLost: the lease expired and another node took it (fence moved on).
        """
        if not self._if_held(
            held, "SET expires = :exp", {":exp": {"N": repr(self.clock() + self.ttl)}}
        ):
            raise LeaseLost(f"lease {self.name} (fence {held.fence}) was taken over")

    def release(self, held: Held) -> None:
        """Give the lease up (expires now); a no-op if it was already taken over."""
        self._if_held(held, "SET expires = :zero", {":zero": {"N": "0"}})

    def fenced_put(self, held: Held, item: dict[str, Any]) -> None:
        """Put ``item`` (DynamoDB attribute-value map) into the table only while ``held`` is
        still the current holder, atomically.

        Raises:
            LeaseLost: the lease moved on; nothing was written.
        """
        written = ddb.put_if(
            self.db,
            self.table,
            item,
            check_key=self.key,
            condition="#o = :me AND fence = :f",
            names={"#o": "owner"},
            values={":me": {"S": held.owner}, ":f": {"N": str(held.fence)}},
        )
        if not written:
            raise LeaseLost(f"lease {self.name} (fence {held.fence}) was taken over")

    def keep_alive(self, held: Held) -> Heartbeat:
        """Return a context manager renewing ``held`` every ``ttl / 3`` s in a thread."""
        return Heartbeat(self, held)


class Heartbeat:
    """Renews a held lease in a daemon thread, every ``ttl / 3`` seconds; ``lost`` is set when
    the lease was taken over (``LeaseLost``), or when renewals have failed otherwise (a timeout
    or an error of the DynamoDB endpoint) for ``2 * ttl / 3`` seconds since the last one that
    worked: one failed renewal is retried at the next beat, while a third of the TTL is still
    left before anyone else may take the lease, so a blip does not stop a control plane's
    ``kubeadm init`` halfway."""

    def __init__(self, lease: Lease, held: Held):
        self.lease, self.held = lease, held
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        renewed = time.monotonic()  # acquired (or renewed) just before the thread started
        while not self._stop.wait(self.lease.ttl / 3):
            try:
                self.lease.renew(self.held)
                renewed = time.monotonic()
            except LeaseLost:
                log.exception("lease %s was taken over", self.lease.name)
                self.lost.set()
                return
            except Exception as exc:  # noqa: BLE001 - the endpoint's error, not a takeover
                if time.monotonic() - renewed >= 2 * self.lease.ttl / 3 - 0.01:
                    log.exception("lease %s renewal failed for %.0f s; stopping", self.lease.name,
                                  time.monotonic() - renewed)
                    self.lost.set()
                    return
                log.warning("lease %s renewal failed (%s); trying again in %.0f s",
                            self.lease.name, exc, self.lease.ttl / 3)

    def check(self) -> None:
        """Raise ``LeaseLost`` if a renewal failed."""
        if self.lost.is_set():
            raise LeaseLost(f"lease {self.lease.name} lost while working; stopping")

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
