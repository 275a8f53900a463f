"""``EtcdMembers``: the instance ID <-> etcd member registry and the pre-join reconcile.

The registry is one DynamoDB item per control plane (``pk = "etcd#<instance id>"``, with
``member_id`` as hex, ``name``, ``peer_url``). ``reconcile`` lists the members (etcdctl
``member list -w json``; etcd v3 API ``MemberList``), checks each started member's health
(``endpoint health``), asks EC2 which registered instances still exist, and removes
(``member remove <hex id>``): learners that never started (no name, no client URLs; etcd docs,
"Learner") and members whose instance is gone (cluster-api #13221, kubeadm #1432). A removal is
refused when the cluster has no quorum now, or when the members left would have fewer healthy
voters than their quorum (``n // 2 + 1``; etcd FAQ, "fault tolerance table").
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from bake_node.aws import dynamodb as ddb
from bake_node.aws import ec2
from bake_node.errors import NodeError, QuorumError

log = logging.getLogger("bake_node.etcd")


@dataclass(frozen=True)
class Member:
    """An etcd member: ``id`` (hex string), ``name`` ('' when never started), URLs, learner."""

    id: str
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool = False

    @property
    def started(self) -> bool:
        """True once the member process has started (etcd fills in its name and client URLs)."""
        return bool(self.name) and bool(self.client_urls)


@dataclass
class EtcdCtl:
    """The etcdctl (v3 API) command line.

    Args:
        endpoints: client URLs to talk to (e.g. ``["https://10.0.1.5:2379"]``).
        binary: the etcdctl executable (a stand-in in the agent's formation tests).
        cacert, cert, key: TLS files (kubeadm's ``/etc/kubernetes/pki/etcd/ca.crt`` and
            ``apiserver-etcd-client.{crt,key}``), or None for plain HTTP.
        timeout: seconds per etcdctl command.
    """

    endpoints: list[str]
    binary: str = "etcdctl"
    cacert: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    timeout: float = 10.0

    def _run(self, *args: str, endpoints: list[str] | None = None) -> str:
        argv = [self.binary, "--endpoints", ",".join(endpoints or self.endpoints)]
        argv += [
            f"--dial-timeout={max(1, int(self.timeout / 2))}s",
            f"--command-timeout={int(self.timeout)}s",
        ]
        for flag, path in (("--cacert", self.cacert), ("--cert", self.cert), ("--key", self.key)):
            if path:
                argv += [flag, str(path)]
        proc = subprocess.run(
            argv + list(args),
            capture_output=True,
            text=True,
            timeout=self.timeout + 5,
            env={**os.environ, "ETCDCTL_API": "3"},
        )
        if proc.returncode != 0:
            raise NodeError(f"etcdctl {args[0]} failed: {proc.stderr.strip().splitlines()[-1:]}")
        return proc.stdout

    def members(self) -> list[Member]:
        """All members (``member list -w json``); IDs converted to hex as etcdctl expects."""
        data = json.loads(self._run("member", "list", "-w", "json"))
        return [
            Member(
                id=format(m["ID"], "x"),
                name=m.get("name", ""),
                peer_urls=tuple(m.get("peerURLs", [])),
                client_urls=tuple(m.get("clientURLs", [])),
                is_learner=bool(m.get("isLearner", False)),
            )
            for m in data.get("members", [])
        ]

    def healthy(self, member: Member) -> bool:
        """True when the member answers ``endpoint health`` on one of its client URLs."""
        return not self.unhealthy_because(member)

    def unhealthy_because(self, member: Member) -> str:
        """Why ``member`` is not healthy ('' when it answers ``endpoint health`` on one of its
        client URLs): "never started", etcdctl's last error line, or the timeout."""
        if not member.started:
            return "never started"
        try:
            self._run("endpoint", "health", endpoints=list(member.client_urls))
            return ""
        except NodeError as exc:
            return str(exc)[:200]
        except subprocess.TimeoutExpired:
            return f"endpoint health did not answer in {self.timeout + 5:.0f} s"

    def remove(self, member_id: str) -> None:
        """``member remove <hex id>``."""
        self._run("member", "remove", member_id)

    def leader(self, member: Member) -> str:
        """The hex id of the leader as ``member`` sees it (``endpoint status -w json``:
        ``Status.leader``)."""
        data = json.loads(self._run("endpoint", "status", "-w", "json",
                                    endpoints=list(member.client_urls)))
        return format(data[0]["Status"]["leader"], "x")

    def move_leader(self, leader: Member, to_id: str) -> None:
        """``move-leader <hex id>`` sent to the current leader (etcd accepts it there only)."""
        self._run("move-leader", to_id, endpoints=list(leader.client_urls))


@dataclass
class ReconcileResult:
    """What ``reconcile`` did: member IDs ``removed``, and ``refused`` ({id: reason})."""

    removed: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)


class EtcdMembers:
    """Registry (DynamoDB) plus reconcile (etcd + EC2).

    Args:
        dynamodb: boto3 DynamoDB client; ``table`` the lock table.
        ec2: boto3 EC2 client (instance liveness).
    """

    def __init__(self, dynamodb, table: str, ec2):
        self.db, self.table, self.ec2 = dynamodb, table, ec2

    def register(self, instance_id: str, member: Member) -> None:
        """Record ``instance_id`` <-> ``member`` (overwrites the instance's previous record)."""
        ddb.put_item(
            self.db,
            self.table,
            {
                "pk": {"S": f"etcd#{instance_id}"},
                "instance_id": {"S": instance_id},
                "member_id": {"S": member.id},
                "name": {"S": member.name},
                "peer_url": {"S": (member.peer_urls or ("",))[0]},
                "client_url": {"S": (member.client_urls or ("",))[0]},
            },
        )

    def registry(self) -> dict[str, dict[str, str]]:
        """member id (hex) -> record ({instance_id, name, peer_url, client_url})."""
        out: dict[str, dict[str, str]] = {}
        for item in ddb.scan_prefix(self.db, self.table, "etcd#"):
            rec = {k: v["S"] for k, v in item.items() if "S" in v}
            out[rec["member_id"]] = rec
        return out

    def client_urls(self) -> list[str]:
        """Client URLs of every registered member (where a joining node finds etcd)."""
        return sorted({r["client_url"] for r in self.registry().values() if r.get("client_url")})

    def unregister(self, instance_id: str) -> None:
        """Drop an instance's record."""
        ddb.delete_item(self.db, self.table, {"pk": {"S": f"etcd#{instance_id}"}})

    def gone_instances(self, instance_ids: list[str]) -> set[str]:
        """The subset of ``instance_ids`` that no longer exist or are shutting down/terminated."""
        alive = ec2.live_instances(self.ec2, instance_ids)
        return set(instance_ids) - alive

    def reconcile(self, etcd: EtcdCtl, strict: bool = True) -> ReconcileResult:
        """Remove never-started learners and members of gone instances, guarding quorum.

        Args:
            etcd: the etcdctl adapter pointed at the running members.
            strict: raise ``QuorumError`` when a removal was refused (the caller then does not
                join: a join into a cluster at risk would make it worse).

        Returns:
            ``ReconcileResult``.

        Raises:
            QuorumError: when ``strict`` and any removal was refused.
        """
        members = etcd.members()
        registry = self.registry()
        gone = self.gone_instances(sorted({r["instance_id"] for r in registry.values()}))
        sick = {m.id: etcd.unhealthy_because(m) for m in members}
        healthy = {i for i, why in sick.items() if not why}
        named = {m.id: m.name or m.id for m in members}
        voters = [m for m in members if not m.is_learner]
        candidates: list[tuple[Member, str]] = []
        for m in members:
            rec = registry.get(m.id)
            if m.is_learner and not m.started:
                candidates.append((m, "learner never started"))
            elif rec and rec["instance_id"] in gone:
                candidates.append((m, f"instance {rec['instance_id']} is gone"))
        result = ReconcileResult()
        remaining = {m.id for m in voters}
        for m, why in candidates:
            if m.is_learner:  # learners do not vote: removing one never costs quorum
                etcd.remove(m.id)
                result.removed.append(m.id)
                log.info("etcd member %s removed: %s", m.id, why)
                continue
            now_quorum = len(remaining) // 2 + 1
            after = remaining - {m.id}
            if len(healthy & remaining) < now_quorum:
                result.refused[m.id] = (
                    f"{why}, but only {len(healthy & remaining)} of {len(remaining)} voting "
                    f"members are healthy (quorum {now_quorum}; not healthy: "
                    + "; ".join(f"{named[i]}: {sick[i]}" for i in sorted(remaining - healthy))
                    + ")"
                )
            elif len(healthy & after) < len(after) // 2 + 1:
                result.refused[m.id] = (
                    f"{why}, but removing it leaves {len(healthy & after)} healthy of "
                    f"{len(after)} (quorum {len(after) // 2 + 1})"
                )
            else:
                etcd.remove(m.id)
                remaining = after
                result.removed.append(m.id)
                log.info("etcd member %s removed: %s", m.id, why)
                continue
            log.warning("etcd member %s NOT removed: %s", m.id, result.refused[m.id])
        for member_id in result.removed:
            if member_id in registry:
                self.unregister(registry[member_id]["instance_id"])
        if strict and result.refused:
            first = next(iter(result.refused.items()))
            raise QuorumError(
                f"etcd member {first[0]} not removed ({first[1]}): restore the unhealthy members "
                "(or their quorum) before adding a control plane"
            )
        return result
