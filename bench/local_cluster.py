#!/usr/bin/env python3
"""Benchmark: a local VM cluster (3 control planes + 2 workers) formed by `bake launch --local`.

Prints figures; asserts nothing (issue 8). In a fresh data dir it bakes Kubernetes stand-ins
(cluster flavor: real Debian etcd, tools/standin_k8s.py) into the embedded AWS, runs
`bake init --local` and `bake launch --local`, then reads the agents' own reports back from
the embedded DynamoDB table (the numbers `bake status` shows):

- ``formation_s``: wall time of `bake launch --local` (stack deploy, VMs started, all joined);
- ``boot_to_joined_p50_s``: median over the nodes of boot (kernel start) to joined, as each
  agent reports it (``joined_at - boot_epoch``);
- ``agent_overhead_s``: median of agent start (user-data's runcmd started it) to the first
  kubeadm call (``kubeadm_started - agent_started``): identity, config, lease, join material;
- ``host_rss_gib``: the largest sum of the VMs' resident memory (qemu RSS, sampled each 2 s).

The VMs run under software emulation (TCG) on this machine, so boot figures are dominated by
emulation; compare runs on the same machine. Needs root. The last line is machine-readable:
``formation_s=… boot_to_joined_p50_s=… agent_overhead_s=… host_rss_gib=…``.

Usage: python bench/local_cluster.py [--k8s 1.30] [--memory-mib 1024] [--keep]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))


def _qemu_rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def _sample_rss(state_file: Path, stop: threading.Event, peak: list[int]) -> None:
    while not stop.wait(2.0):
        try:
            pids = [n["pid"] for n in json.loads(state_file.read_text())["nodes"] if n.get("pid")]
        except (OSError, ValueError, KeyError):
            continue
        peak[0] = max(peak[0], _qemu_rss_bytes(pids))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k8s", default="1.30")
    parser.add_argument("--memory-mib", type=int, default=None, help="local.vmMemoryMiB")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    args = parser.parse_args()

    import boto3
    import standins  # tools/standins.py

    work = Path(tempfile.mkdtemp(prefix="bake-bench-cluster-"))
    data = work / "data"
    bake = [sys.executable, "-m", "bake", "--data-dir", str(data)]

    def run(*argv: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([*bake, *argv], capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"bench: `bake {' '.join(argv)}` failed ({proc.returncode}):\n"
                             f"{proc.stderr.strip()[-2000:]}")
        return proc

    generated = standins.generate(args.k8s, "amd64", work / "standins", runtime="os-package",
                                  flavor="cluster")
    url, stop_mirror = standins.serve_in_thread(work / "standins")
    cluster_file = work / "cluster.yaml"
    try:
        start = time.perf_counter()
        run("ami", "--k8s", args.k8s, "--local", "--mirror", url, "--catalog",
            str(generated.overlay))
        print(f"bake ami --local (stand-ins): {time.perf_counter() - start:.0f} s")
        run("init", "-f", str(cluster_file), "--local", "--k8s", args.k8s)
        if args.memory_mib:
            text = cluster_file.read_text()
            cluster_file.write_text(text.replace("vmMemoryMiB: 1024",
                                                 f"vmMemoryMiB: {args.memory_mib}"))
        name = "demo"
        state_file = data / "clusters" / name / "local.json"
        stop, peak = threading.Event(), [0]
        sampler = threading.Thread(target=_sample_rss, args=(state_file, stop, peak), daemon=True)
        sampler.start()
        start = time.perf_counter()
        launch = run("launch", "--local", "-f", str(cluster_file), "--yes")
        formation = time.perf_counter() - start
        stop.set()
        sampler.join()
        print(launch.stdout.rstrip())

        endpoint = json.loads(run("sandbox", "status", "--output", "json").stdout)["endpoint"]
        db = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        items = db.scan(TableName=f"bake-{name}", FilterExpression="begins_with(pk, :p)",
                        ExpressionAttributeValues={":p": {"S": "node#"}})["Items"]

        def num(item: dict, key: str) -> float:
            return float(item[key]["N"])

        boot = [num(i, "joined_at") - num(i, "boot_epoch") for i in items]
        overhead = [num(i, "kubeadm_started") - num(i, "agent_started") for i in items]
        print(f"\nnodes: {len(items)}; boot to joined per node (s): "
              + ", ".join(f"{b:.0f}" for b in sorted(boot)))
        print("agent start to kubeadm per node (s): "
              + ", ".join(f"{o:.1f}" for o in sorted(overhead)))
        print(f"formation_s={formation:.0f} boot_to_joined_p50_s={statistics.median(boot):.0f} "
              f"agent_overhead_s={statistics.median(overhead):.1f} "
              f"host_rss_gib={peak[0] / 1024**3:.2f}")
    finally:
        if not args.keep and cluster_file.exists():
            subprocess.run([*bake, "destroy", "--local", "-f", str(cluster_file), "--yes"],
                           capture_output=True)
        if not args.keep:
            subprocess.run([*bake, "sandbox", "stop"], capture_output=True)
        stop_mirror()
    return 0


if __name__ == "__main__":
    sys.exit(main())
