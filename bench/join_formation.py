#!/usr/bin/env python3
"""Benchmark: cluster formation by bake-node agents against moto, overhead and API calls.

Runs N control planes and M workers as concurrent agents (threads in this process, each with
its own boto3 session and instance ID) against one moto server on 127.0.0.1, with an in-process
kubeadm/etcdctl stand-in that takes no time (real kubeadm cannot be downloaded here, and its own
time is excluded from the figure anyway). Agents use their production timings (2 s first poll,
backoff to 15 s; 60 s lease). Prints figures; asserts nothing. Targets (issue 4): at most 4 AWS
API calls per worker join (so a 1,000-node scale-out stays within SSM's default 40 TPS for
GetParameters), formation overhead under 10 s. Calls are counted with a botocore ``before-call``
event hook (one per API operation; botocore's internal retries are not extra calls here).

Last line: ``nodes=… formation_overhead_s=… calls_per_worker_join=… inits=…``.
Usage: python bench/join_formation.py [--control-planes 3] [--workers 100]
"""

from __future__ import annotations

import argparse
import collections
import json
import socket
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "cli"))

from bake_node.agent import Agent, Settings  # noqa: E402
from bake_node.aws import Clients  # noqa: E402
from bake_node.etcd import Member  # noqa: E402
from bake_node.kubeadm import Kubeadm  # noqa: E402
from bake_node.lease import ensure_table  # noqa: E402


class World:
    """The stand-in cluster shared by every in-process kubeadm: tokens, members, counters."""

    def __init__(self):
        self.lock = threading.Lock()
        self.tokens: set[str] = set()
        self.members: list[Member] = []
        self.inits = 0
        self.joins = 0
        self.kubeadm_s = 0.0


class InProcessKubeadm(Kubeadm):
    """The ``Kubeadm`` adapter with every command answered in-process (no subprocess)."""

    def __init__(self, world: World, name: str, admin_kubeconfig: Path):
        super().__init__(admin_kubeconfig=str(admin_kubeconfig))
        self.world, self.name = world, name

    def _run(self, argv, timeout=900.0):
        start = time.perf_counter()
        w, out = self.world, ""
        with w.lock:
            if argv[1] == "init" and argv[2] == "--config":
                w.inits += 1
                admin = Path(self.admin_kubeconfig)  # what kubeadm init writes, in the bench dir
                admin.parent.mkdir(parents=True, exist_ok=True)
                admin.write_text("apiVersion: v1\nkind: Config\n")
                w.members.append(Member(f"{len(w.members) + 1:x}", self.name, ("p",), ("c",)))
            elif argv[1] == "init":
                out = "a" * 64 + "\n"
            elif argv[1] == "token":
                w.tokens.add(f"tok{len(w.tokens):03d}.0123456789abcdef")
                out = f"kubeadm join x --token tok{len(w.tokens) - 1:03d}.0123456789abcdef "
                out += "--discovery-token-ca-cert-hash sha256:" + "0" * 64 + "\n"
            elif argv[1:3] == ["join", "--config"]:
                w.joins += 1
                if "controlPlane" in Path(argv[3]).read_text():
                    w.members.append(Member(f"{len(w.members) + 1:x}", self.name, ("p",), ("c",)))
            w.kubeadm_s += time.perf_counter() - start
        return out


class FakeEtcd:
    def __init__(self, world: World):
        self.world = world

    def members(self):
        with self.world.lock:
            return list(self.world.members)

    def healthy(self, member):
        return True

    def remove(self, member_id):
        raise AssertionError("nothing should be removed in a clean formation")


class BenchAgent(Agent):
    def __init__(self, settings, clients, kubeadm, world):
        super().__init__(settings, clients, kubeadm)
        self.world = world

    def _etcd(self, endpoints):
        return FakeEtcd(self.world)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--control-planes", type=int, default=3)
    parser.add_argument("--workers", type=int, default=100)
    args = parser.parse_args()

    import os

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")  # moto's dummy credentials
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    endpoints = {s: endpoint for s in ("dynamodb", "ssm", "kms", "ec2")}
    try:
        admin = Clients("us-east-1", endpoints)
        ensure_table(admin.client("dynamodb"), "bake-bench")
        key = admin.client("kms").create_key()["KeyMetadata"]["KeyId"]
        ami = admin.client("ec2").describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        total = args.control_planes + args.workers
        ids = [
            i["InstanceId"]
            for i in admin.client("ec2").run_instances(ImageId=ami, MinCount=total, MaxCount=total)[
                "Instances"
            ]
        ]
        world = World()
        calls: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        tmp = Path(tempfile.mkdtemp(prefix="bake-bench-"))
        agents, results = [], {}
        for n, iid in enumerate(ids):
            role = "control-plane" if n < args.control_planes else "worker"
            name = f"{'cp' if n < args.control_planes else 'w'}-{n:03d}"
            base = tmp / name
            base.mkdir()
            (base / "node.yaml").write_text(
                json.dumps(
                    {
                        "apiVersion": "bake.node/v1",
                        "clusterName": "bench",
                        "role": role,
                        "region": "us-east-1",
                        "controlPlaneEndpoint": "bench-api.example:6443",
                        "lockTable": "bake-bench",
                        "ssmPrefix": "/bake/clusters/bench",
                        "kmsKeyId": key,
                        "podCIDR": "10.244.0.0/16",
                        "serviceCIDR": "10.96.0.0/12",
                        "cni": "flannel",
                        "kubernetesVersion": "1.30.12",
                        "endpoints": endpoints,
                    }
                )
            )
            (base / "id.json").write_text(
                json.dumps({"instance_id": iid, "region": "us-east-1", "hostname": name})
            )
            settings = replace(
                Settings(),
                config_path=base / "node.yaml",
                state_dir=base / "st",
                identity_override=base / "id.json",
                manifests_dir=ROOT / "manifests",
                kubernetes_dir=base / "k8s",
            )
            counter = calls[name]
            hook = ("before-call", lambda model, _c=counter, **_: _c.update([model.name]))
            clients = Clients("us-east-1", endpoints, hooks=[hook])
            kubeadm = InProcessKubeadm(world, name, base / "k8s" / "admin.conf")
            agents.append((name, role, BenchAgent(settings, clients, kubeadm, world)))

        def run(name, agent):
            try:
                results[name] = agent.run()
            except Exception as exc:  # noqa: BLE001 - reported below
                results[name] = f"error: {exc}"

        # each real node builds its boto3 clients on its own CPU; build them before the clock
        # starts so one process's GIL does not bill 100 nodes' client creation as overhead
        for _n, _r, agent in agents:
            for service in ("ssm", "dynamodb", "ec2"):
                agent._clients.client(service)
        threads = [threading.Thread(target=run, args=(n, a)) for n, _r, a in agents]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
    finally:
        server.stop()

    workers = [n for n, r, _a in agents if r == "worker"]
    worker_calls = sum(sum(calls[n].values()) for n in workers)
    ops = collections.Counter()
    for n in workers:
        ops.update(calls[n])
    errors = {n: r for n, r in results.items() if r not in ("init", "join")}
    overhead = wall - world.kubeadm_s
    per_worker = worker_calls / max(1, len(workers))
    print(
        f"agents: {args.control_planes} control planes + {args.workers} workers "
        f"(threads) against moto at {endpoint}"
    )
    print(f"wall time: {wall:.2f} s; kubeadm stand-in time: {world.kubeadm_s:.3f} s")
    print(f"worker API calls by operation: {dict(ops)}")
    print(
        f"control-plane API calls: "
        f"{sum(sum(calls[n].values()) for n, r, _a in agents if r != 'worker')}"
    )
    if errors:
        print(f"FAILED agents: {errors}")
    print(
        f"nodes={len(agents) - len(errors)} formation_overhead_s={overhead:.2f} "
        f"calls_per_worker_join={per_worker:.2f} inits={world.inits}"
    )


if __name__ == "__main__":
    main()
