#!/usr/bin/env python3
"""Benchmark: local bake wall time (cold and warm), peak memory, render and --help latency.

Prints figures; asserts nothing. Targets on a 2-core machine (issue 2): warm bake <= 3 min,
cold <= 6 min, `bake render` < 1 s, `bake --help` < 0.3 s. Each OS of ``--os`` (default Debian 12
and Debian 13, issue 13) is baked cold and warm, one after the other, and every OS after the first
is also printed as a ratio to the first, measured in the same run. The last line is
machine-readable: ``<os>_warm_bake_s=… <os>_cold_bake_s=… render_s=… help_s=… peak_rss_mib=…``.

"Cold" clears bake's rootfs cache (the Debian packages are still fetched through the host's
apt mirror); "warm" reuses it. Both bake Kubernetes stand-ins served from 127.0.0.1 (this
machine cannot reach the real release files), into the embedded AWS. Needs root.

Usage: python bench/bake_local.py [--k8s 1.30] [--os debian-12,debian-13] [--skip-cold] [--runs N]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Run ``cmd``; return (wall seconds, exit code). Output goes to a log, not the terminal."""
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    elapsed = time.perf_counter() - start
    if proc.returncode:
        print(
            f"  command failed ({proc.returncode}): {' '.join(cmd)}\n  {proc.stderr.strip()[-500:]}"
        )
    return elapsed, proc.returncode


def median_of(cmd: list[str], env: dict[str, str], runs: int) -> float:
    return statistics.median(timed(cmd, env)[0] for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k8s", default="1.30")
    parser.add_argument("--runs", type=int, default=5, help="repeats for the latency figures")
    parser.add_argument("--skip-cold", action="store_true", help="keep the rootfs cache")
    parser.add_argument("--os", dest="oses", default="debian-12,debian-13",
                        help="comma-separated OSes to bake (image-recipes/os/<os>.yaml)")
    args = parser.parse_args()

    import standins  # tools/standins.py

    bake = [sys.executable, "-m", "bake"]
    work = Path(tempfile.mkdtemp(prefix="bake-bench-"))
    data_dir = Path(os.environ.get("BAKE_BENCH_DATA_DIR", ROOT / ".bake" / "bench-data"))
    env = dict(os.environ, BAKE_DATA_DIR=str(data_dir))
    try:
        help_s = median_of([*bake, "--help"], env, args.runs)
        baseline_s = median_of([sys.executable, "-c", "pass"], env, args.runs)
        render_s = median_of(
            [*bake, "render", "ami", "--k8s", args.k8s, "-o", str(work / "render")], env, args.runs
        )
        ratio = help_s / baseline_s
        print(
            f"bake --help: {help_s:.3f} s (python startup alone: {baseline_s:.3f} s, {ratio:.1f}x)"
        )
        print(f"bake render ami: {render_s:.3f} s")

        generated = standins.generate(args.k8s, "amd64", work / "standins", runtime="os-package")
        url, stop = standins.serve_in_thread(work / "standins")
        figures: dict[str, tuple[float, float]] = {}
        try:
            for os_name in args.oses.split(","):
                ami = [*bake, "ami", "--k8s", args.k8s, "--os", os_name, "--local", "--mirror",
                       url, "--catalog", str(generated.overlay)]
                cold_s = float("nan")
                if not args.skip_cold:
                    shutil.rmtree(data_dir / "cache" / "rootfs", ignore_errors=True)
                    cold_s, code = timed(ami, env)
                    print(f"{os_name}: cold local bake: {cold_s:.1f} s"
                          + (" (FAILED)" if code else ""))
                warm_s, code = timed(ami, env)
                print(f"{os_name}: warm local bake: {warm_s:.1f} s" + (" (FAILED)" if code else ""))
                figures[os_name] = (warm_s, cold_s)
        finally:
            stop()
        first = next(iter(figures))
        for os_name, (warm_s, cold_s) in list(figures.items())[1:]:
            print(f"{os_name} / {first}: warm {warm_s / figures[first][0]:.2f}x, "
                  f"cold {cold_s / figures[first][1]:.2f}x")
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"peak RSS of a child process: {peak_mib:.0f} MiB")
        print("targets: warm <= 180 s, cold <= 360 s, render < 1 s, help < 0.3 s")
        per_os = " ".join(f"{o.replace('-', '_')}_warm_bake_s={w:.1f} "
                          f"{o.replace('-', '_')}_cold_bake_s={c:.1f}"
                          for o, (w, c) in figures.items())
        print(f"{per_os} render_s={render_s:.3f} help_s={help_s:.3f} peak_rss_mib={peak_mib:.0f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
