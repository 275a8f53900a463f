#!/usr/bin/env python3
"""`make demo`: bake a Kubernetes node image on this machine into the embedded AWS.

1. Generate stand-ins for the release (this machine cannot download the real Kubernetes
   release files or registry images) and a catalog overlay with their SHA-256.
2. Serve them from a mirror on 127.0.0.1 (a thread of this process).
3. Run the real CLI: `bake ami --k8s <v> --local --mirror <url> --catalog <overlay>`, then
   `bake images list --local`. Containerd and runc are Debian's real packages (os-package).
The embedded AWS (moto server) is left running so `bake images list --local` keeps working;
`bake sandbox stop` stops it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import standins  # noqa: E402  (tools/standins.py)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k8s", default="1.30")
    parser.add_argument("--arch", default="amd64")
    parser.add_argument("--os", dest="os_name", default="debian-12",
                        help="image OS (image-recipes/os/<os>.yaml)")
    parser.add_argument("--work", type=Path, default=Path(".bake/demo"))
    args = parser.parse_args()

    print(
        f"demo: generating STAND-INS for Kubernetes {args.k8s} (not the real binaries: this "
        "machine cannot reach the release files); Debian, containerd and runc are real"
    )
    generated = standins.generate(args.k8s, args.arch, args.work / "standins", runtime="os-package",
                                  flavor="cluster")
    url, stop = standins.serve_in_thread(args.work / "standins")
    print(f"demo: stand-in mirror at {url}, overlay {generated.overlay}")
    bake = [sys.executable, "-m", "bake"]
    try:
        code = subprocess.call(
            [
                *bake,
                "ami",
                "--k8s",
                args.k8s,
                "--arch",
                args.arch,
                "--os",
                args.os_name,
                "--local",
                "--mirror",
                url,
                "--catalog",
                str(generated.overlay),
            ]
        )
    finally:
        stop()
    if code:
        print(f"demo: bake ami failed (exit {code})", file=sys.stderr)
        return code
    print("\ndemo: baked images in the embedded AWS (`bake images list --local`):")
    subprocess.call([*bake, "images", "list", "--local"])
    print(
        "\ndemo: next: `.venv/bin/bake verify --image <IMAGE ID>`; stop the embedded AWS with "
        "`.venv/bin/bake sandbox stop`"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
