#!/usr/bin/env python3
"""Benchmark: boot to joined, baked image vs runtime installs at boot, on the same VMs (issue 9).

The seeds (000, 001, 003) install containerd, kubeadm, kubelet and kubectl at boot, then join.
This bench builds that baseline honestly beside bake's baked image and boots the same number of
nodes from each, one cluster after the other, through the same ``bake launch --local`` service
(the same stack in the embedded AWS, the same user-data, the same node agent):

- **baked**: the image ``bake ami --local`` bakes (stand-ins for the Kubernetes release files,
  real Debian containerd and runc), booted with its launch templates' user-data as it is.
- **baseline**: a plain Debian 12 disk, the local parent image (``image-recipes/os/debian-12.yaml``,
  ``local``:
  Debian, cloud-init, python3-boto3; no bake component), published into the embedded AWS under
  ``/bake-bench/baseline`` and booted with the same user-data preceded by an install script
  (``vm.with_boot_script``). The script runs, at boot, the build steps of the very component
  documents ``bake ami`` bakes (``bake.render``), rendered against a mirror inside the cluster's
  network: containerd and runc with apt-get from a local apt repository of Debian's packages
  (``apt-get download`` on this host, indexed by ``dpkg-scanpackages``), kubeadm, kubelet,
  kubectl, crictl, the CNI plugins and etcdctl downloaded and checked against the catalog's
  SHA-256, the kubeadm image set downloaded and imported into containerd (what ``kubeadm
  config images pull`` would fetch), and the node agent's bundle. Then the same agent runs.

The component documents were written for a build (a chroot or a build instance, nothing
running); at boot three things follow a package install that a build does not need:
``systemctl daemon-reload``, a restart of containerd after its config is written, and
``modprobe``/``sysctl --system`` for the files bake-os-prep writes (systemd applies them early
in boot on a baked image). ``bake-hygiene`` is build-only and is not run; ``bake-image-manifest``
is (the agent reads the Kubernetes version from the manifest). The apt repository is unsigned
(``[trusted=yes]``), which only a bench may do.

Figures (from the agents' own reports in the cluster table and the guests' counters):

- boot (kernel start) to joined per node, p50 and max, baked vs baseline, and their ratio;
- bytes received at boot per node (the guest's interface counters read right after it joined:
  everything, the agent's AWS calls included) and bytes the in-network mirror served it;
- the hosts the baseline would reach from an AWS account (the release files' upstream hosts,
  the image registry, the Debian archive): why it cannot run air-gapped.

The VMs run under software emulation (TCG) on this machine: compare the two on the same machine,
not with EC2. Needs root. The last line is machine-readable:
``baked_p50_s=… baseline_p50_s=… ratio=… baked_boot_bytes=… baseline_boot_bytes=…``.

Usage: python bench/boot_join.py [--k8s 1.30] [--control-planes 1] [--workers 2] [--keep]
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

MIRROR_PORT = 8080
#: component documents that only make sense in a build (it clears machine-id, host keys and
#: cloud-init's state for the next boot): not run at boot by the baseline
BUILD_ONLY = ("bake-hygiene",)
#: Debian packages the baseline installs at boot (the release's containerd and runc sources)
APT_PACKAGES = ("containerd", "runc")


# ---------------------------------------------------------------- the mirror in the network


class _CountingHandler(SimpleHTTPRequestHandler):
    """Serves files and appends ``client ip, path, bytes`` to the server's log per response."""

    def copyfile(self, source, outputfile) -> None:  # noqa: D102 - http.server's hook
        sent = 0
        while chunk := source.read(1 << 16):
            outputfile.write(chunk)
            sent += len(chunk)
        with open(self.server.count_log, "a") as log:  # type: ignore[attr-defined]
            log.write(f"{self.client_address[0]}\t{self.path}\t{sent}\n")

    def log_message(self, format, *args) -> None:  # noqa: A002 - http.server's signature
        pass


def serve(directory: Path, bind: str, port: int, count_log: Path) -> None:
    """Serve ``directory`` on ``bind:port`` until killed (run inside the cluster's namespace)."""

    class Handler(_CountingHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(directory), **kw)

    server = ThreadingHTTPServer((bind, port), Handler)
    server.count_log = str(count_log)  # type: ignore[attr-defined]
    server.serve_forever()


def _start_mirror_when_ready(netns: str, address: str, directory: Path, count_log: Path,
                             procs: list[subprocess.Popen], stop: threading.Event) -> None:
    """Wait for the cluster's namespace to hold ``address``, then serve ``directory`` there."""
    while not stop.wait(0.5):
        shown = subprocess.run(["ip", "-n", netns, "-o", "addr", "show"], capture_output=True,
                               text=True)
        if f" {address}/" in shown.stdout:
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", netns, sys.executable, __file__, "--serve", str(directory),
                 "--bind", address, "--port", str(MIRROR_PORT), "--count-log", str(count_log)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            return


# ---------------------------------------------------------------- the baseline's install script


def _step(name: str, body: str) -> str:
    return f"cat > /run/bake-baseline/step.sh <<'BAKE_STEP'\n{body}BAKE_STEP\nstep {name}\n"


def _file(path: str, content: str, mode: str, owner: str, group: str) -> str:
    encoded = base64.b64encode(content.encode()).decode()
    return (f"mkdir -p \"$(dirname {path})\"; echo {encoded} | base64 -d > {path}; "
            f"chmod {mode} {path}; chown {owner}:{group} {path}\n")


def flatten(component: dict) -> str:
    """The build phase of one AWSTOE component document as shell lines.

    Handles the actions bake's components use (AWSTOE action reference): ``CreateFolder``,
    ``CreateFile``, ``WebDownload`` (with its SHA-256 ``checksum``) and ``ExecuteBash``.

    Raises:
        ValueError: another action.
    """
    out = [f"echo '== {component['name']}: build'\n"]
    for phase in component["phases"]:
        if phase["name"] != "build":
            continue
        for step in phase["steps"]:
            action, inputs = step["action"], step["inputs"]
            label = f"{component['name']}/{step['name']}"
            if action == "CreateFolder":
                out += [f"install -d -m {i.get('permissions', '0755')} -o {i.get('owner', 'root')}"
                        f" -g {i.get('group', 'root')} {i['path']}\n" for i in inputs]
            elif action == "CreateFile":
                out += [_file(i["path"], i["content"], i.get("permissions", "0644"),
                              i.get("owner", "root"), i.get("group", "root")) for i in inputs]
            elif action == "WebDownload":
                out += [f"fetch {i['source']} {i['destination']} {i['checksum']}\n"
                        for i in inputs]
            elif action == "ExecuteBash":
                out.append(_step(label, "\n".join(inputs["commands"]) + "\n"))
            else:
                raise ValueError(f"{label}: action {action} is not handled by the baseline")
    return "".join(out)


PROLOGUE = """#!/bin/bash
# bake bench baseline: install at boot what bake bakes (bench/boot_join.py), then the agent joins.
set -euo pipefail
exec > >(tee -a /var/log/bake-baseline.log /dev/console) 2>&1
echo "bake-baseline: start $(cut -d' ' -f1 /proc/uptime) s after boot"
mkdir -p /run/bake-baseline
fetch() {  # URL DEST SHA256: download with retries, then check before any use
  python3 - "$1" "$2" <<'PY'
import sys, time, urllib.request
for attempt in range(30):
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=60) as r, open(sys.argv[2], "wb") as f:
            while chunk := r.read(1 << 16):
                f.write(chunk)
        break
    except OSError as exc:
        print(f"fetch {sys.argv[1]}: {exc}; retrying", file=sys.stderr)
        time.sleep(2)
else:
    sys.exit(f"fetch {sys.argv[1]}: gave up")
PY
  if ! echo "$3  $2" | sha256sum -c --status -; then
    echo "SHA-256 mismatch: $1" >&2; rm -f "$2"; exit 1
  fi
}
step() {  # NAME: one ExecuteBash step (just written to step.sh), as a script of its own
  echo "-- $1"
  if ! bash /run/bake-baseline/step.sh </dev/null; then
    echo "bake-baseline: step $1 failed" >&2; exit 1
  fi
}
"""


def baseline_script(documents, apt_url: str) -> str:
    """The baseline's install script: apt source, then every component's build phase.

    Args:
        documents: ``bake.render.ImageDocuments`` rendered against the in-network mirror.
        apt_url: the flat apt repository (``deb [trusted=yes] <apt_url> ./``).
    """
    parts = [PROLOGUE,
             "rm -f /etc/apt/sources.list.d/*\n",
             f"echo 'deb [trusted=yes] {apt_url} ./' > /etc/apt/sources.list\n"]
    for doc in documents.components:
        if doc.name in BUILD_ONLY:
            continue
        parts.append(flatten(doc.data))
        if doc.name == "bake-os-prep":
            parts.append("modprobe -a overlay br_netfilter; sysctl --system >/dev/null\n")
        if doc.name == "bake-container-runtime":
            parts.append("systemctl daemon-reload; systemctl restart containerd\n")
    parts.append("systemctl daemon-reload\n"
                 "systemctl start kubelet.service bake-node-rotate.timer\n"
                 "echo \"bake-baseline: installed $(cut -d' ' -f1 /proc/uptime) s after boot\"\n")
    return "".join(parts)


def make_apt_repo(directory: Path) -> list[str]:
    """A flat apt repository of Debian's ``APT_PACKAGES`` (``apt-get download``, then
    ``dpkg-scanpackages``). Returns the .deb file names."""
    directory.mkdir(parents=True, exist_ok=True)
    got = subprocess.run(["apt-get", "download", *APT_PACKAGES], cwd=directory,
                         capture_output=True, text=True)
    if got.returncode:
        raise SystemExit(f"bench: apt-get download {' '.join(APT_PACKAGES)} failed "
                         f"({(got.stderr.strip().splitlines() or ['no output'])[-1]}): run "
                         "`apt-get update` once, then the bench again")
    index = subprocess.run(["dpkg-scanpackages", "--multiversion", "."], cwd=directory,
                           check=True, capture_output=True).stdout
    (directory / "Packages").write_bytes(index)
    return sorted(p.name for p in directory.glob("*.deb"))


def outside_hosts(release) -> list[str]:
    """Hosts the baseline reaches from an AWS account: the release files' upstream hosts, the
    image registries, the Debian archive (``bake.plan`` and the host's apt sources)."""
    from bake.builders.local.rootfs import debian_sources, host_apt_sources
    from bake.plan import download_plan

    plan = download_plan(release)
    hosts = {urlsplit(p.upstream).netloc for p in plan.artifacts if p.upstream}
    hosts |= {i.ref.split("/", 1)[0] for i in release.images}
    hosts |= {urlsplit(debian_sources("bookworm", host_apt_sources())[0].uri).netloc}
    return sorted(hosts)


# ---------------------------------------------------------------- one cluster


def mirror_address(spec) -> str:
    """Where the in-network mirror listens: the first subnet's router (VPC base + 1), an
    address of the cluster's bridge (``bake.localcluster.plan.network_for``)."""
    return str(ipaddress.IPv4Network(spec.network.vpc_cidr).network_address + 1)



def _cluster_file(path: Path, name: str, k8s: str, control_planes: int, workers: int,
                  image_parameter: str | None, memory_mib: int | None) -> None:
    import yaml

    subprocess.run([sys.executable, "-m", "bake", "init", "-f", str(path), "--local", "--k8s",
                    k8s, "--name", name], check=True, capture_output=True)
    doc = yaml.safe_load(path.read_text())
    doc["controlPlane"]["count"] = control_planes
    doc["workers"].update(min=workers, max=workers, desired=workers)
    if image_parameter:
        doc["image"]["ssmParameter"] = image_parameter
    if memory_mib:
        doc["local"]["vmMemoryMiB"] = memory_mib
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def run_cluster(label: str, cluster_file: Path, data_dir: Path, boot_script: str | None,
                serve_dir: Path, work: Path, keep: bool) -> dict:
    """Launch one local cluster, wait for every node to join, read its figures, destroy it.

    Returns:
        ``{"boot_to_joined_s": [...], "rx_bytes": [...], "mirror_bytes": [...],
        "formation_s": float}`` per node, in instance-id order.
    """
    from bake.aws.cloudformation import CloudFormation
    from bake.aws.session import AwsClients
    from bake.cluster import load_checked_cluster
    from bake.launch import LaunchOptions, stack_parameters
    from bake.launch import launch as run_launch
    from bake.localcluster import vm
    from bake.localcluster.guest import GuestAgent
    from bake.localcluster.service import LocalOptions, destroy_local, launch_local
    from bake.localcluster.state import read_state
    from bake.sandbox import require_running, sandbox_target

    spec = load_checked_cluster(cluster_file)
    clients = AwsClients(sandbox_target(require_running(data_dir)))

    def deploy():
        return run_launch(LaunchOptions(spec=spec, yes=True, timeout_seconds=900,
                                        poll_seconds=1),
                          CloudFormation(clients.client("cloudformation")),
                          echo=lambda _line: None, confirm=lambda _q: True,
                          parameters=stack_parameters(spec, clients.client("ec2")))

    router = mirror_address(spec)
    count_log = work / f"{label}-mirror.log"
    count_log.touch()
    procs: list[subprocess.Popen] = []
    stop = threading.Event()
    waiter = threading.Thread(target=_start_mirror_when_ready,
                              args=(f"bake-{spec.name}", router, serve_dir, count_log, procs,
                                    stop), daemon=True)
    waiter.start()
    print(f"== {label}: launching {spec.control_plane.desired} + {spec.workers.desired} VMs")
    start = time.perf_counter()
    try:
        results = launch_local(
            LocalOptions(spec, data_dir, spec.local.vm_memory_mib, 2400.0,
                         boot_script=boot_script),
            clients, lambda line: print(f"   {label}: {line}", flush=True), deploy)
        formation = time.perf_counter() - start
        state = read_state(data_dir, spec.name) or {"nodes": []}
        ips = {n["instance_id"]: n["private_ip"] for n in state["nodes"]}
        rx = {}
        for node in state["nodes"]:
            out = GuestAgent(vm.VmFiles(Path(node["dir"])).guest_agent, timeout_s=20).run(
                "cat /sys/class/net/e*/statistics/rx_bytes", 60).stdout
            rx[node["instance_id"]] = sum(int(x) for x in out.split())
        served: dict[str, int] = {}
        for line in count_log.read_text().splitlines():
            ip, _path, size = line.split("\t")
            served[ip] = served.get(ip, 0) + int(size)
        rows = sorted(results, key=lambda r: r.row()["instance_id"])
        return {
            "formation_s": round(formation, 1),
            "nodes": [{"instance_id": r.row()["instance_id"], "role": r.row()["role"],
                       "boot_to_joined_s": r.row()["boot_to_joined_s"],
                       "rx_bytes": rx.get(r.row()["instance_id"], 0),
                       "mirror_bytes": served.get(ips.get(r.row()["instance_id"], ""), 0)}
                      for r in rows],
        }
    finally:
        stop.set()
        for proc in procs:  # only the mirror servers this bench started, by their Popen
            proc.terminate()
            proc.wait(timeout=10)
        if not keep:
            destroy_local(data_dir, spec.name, lambda _line: None)


# ---------------------------------------------------------------- main


def _p50_max(values: list[float]) -> tuple[float, float]:
    return statistics.median(values), max(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k8s", default="1.30")
    parser.add_argument("--control-planes", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-mib", type=int, default=None, help="local.vmMemoryMiB")
    parser.add_argument("--keep", action="store_true", help="leave the clusters running")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bind", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--count-log", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:  # the in-network mirror (this file, run inside the cluster's namespace)
        serve(args.serve, args.bind, args.port, args.count_log)
        return 0

    import standins  # tools/standins.py

    from bake.agent_bundle import build_agent_bundle
    from bake.aws.session import AwsClients
    from bake.builders.local.disk import make_outputs
    from bake.builders.local.rootfs import prepare_rootfs
    from bake.publish import BuiltImage, publish
    from bake.render import AgentSource, RenderOptions, render_image_documents
    from bake.sandbox import require_running, sandbox_target

    work = Path(tempfile.mkdtemp(prefix="bake-bench-boot-join-"))
    data = work / "data"
    cached = Path.home() / ".local/share/bake/cache/rootfs"
    if cached.is_dir():  # the parent rootfs cache of `make demo`: a warm start, same bytes
        shutil.copytree(cached, data / "cache" / "rootfs", copy_function=os.link)
    bake = [sys.executable, "-m", "bake", "--data-dir", str(data)]
    generated = standins.generate(args.k8s, "amd64", work / "standins", runtime="os-package",
                                  flavor="cluster")
    url, stop_mirror = standins.serve_in_thread(work / "standins")
    try:
        t0 = time.perf_counter()
        baked = subprocess.run([*bake, "ami", "--k8s", args.k8s, "--local", "--mirror", url,
                                "--catalog", str(generated.overlay)], capture_output=True,
                               text=True)
        if baked.returncode:
            raise SystemExit(f"bench: `bake ami --local` failed ({baked.returncode}):\n"
                             f"{baked.stderr.strip()[-2000:]}")
        print(f"bake ami --local (stand-ins): {time.perf_counter() - t0:.0f} s")

        # the baseline disk: the local parent image, nothing of bake in it
        t0 = time.perf_counter()
        rootfs = work / "baseline-rootfs"
        prepare_rootfs(rootfs, data_dir=data, arch="amd64")
        (rootfs / "etc/machine-id").write_text("")  # as Debian's cloud images ship it
        for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
            key.unlink()
        image_dir = work / "baseline-image"
        make_outputs(rootfs, image_dir, minimum_mib=2048)
        shutil.rmtree(rootfs)
        release = generated.release
        clients = AwsClients(sandbox_target(require_running(data)))
        publication = publish(clients, BuiltImage.of(
            release, f"bench-baseline-{int(time.time())}", local_path=str(image_dir),
            name=f"bake-bench-baseline-{int(time.time())}"), ssm_prefix="/bake-bench/baseline")
        baseline_parameter = publication[0].ssm_parameter
        print(f"baseline disk (Debian 12 local parent, no bake component): "
              f"{time.perf_counter() - t0:.0f} s, {publication[0].image_id}")

        from bake.cluster import load_checked_cluster

        files = {}
        for label, image_parameter in (("baked", None), ("baseline", baseline_parameter)):
            files[label] = work / f"{label}.yaml"
            _cluster_file(files[label], f"bench-{label}", args.k8s, args.control_planes,
                          args.workers, image_parameter, args.memory_mib)

        # what the VMs fetch: the stand-in mirror, the agent bundle, the apt repository
        serve_dir = work / "serve"
        shutil.copytree(generated.mirror, serve_dir / "mirror")
        debs = make_apt_repo(serve_dir / "apt")
        bundle = build_agent_bundle(serve_dir / "agent")
        base = f"http://{mirror_address(load_checked_cluster(files['baseline']))}:{MIRROR_PORT}"
        documents = render_image_documents(release, RenderOptions(
            mirror=f"{base}/mirror",
            agent=AgentSource(url=f"{base}/agent/{bundle.filename}", sha256=bundle.sha256,
                              version=bundle.version)))
        script = baseline_script(documents, f"{base}/apt")
        (work / "baseline-boot-script.sh").write_text(script)
        print(f"baseline install script: {work / 'baseline-boot-script.sh'} "
              f"({len(script)} B); apt repository: {', '.join(debs)}")

        figures = {}
        for label, boot in (("baked", None), ("baseline", script)):
            figures[label] = run_cluster(label, files[label], data, boot, serve_dir, work,
                                         args.keep)
        (work / "figures.json").write_text(json.dumps(figures, indent=2))
    finally:
        stop_mirror()
        if not args.keep:
            subprocess.run([*bake, "sandbox", "stop"], capture_output=True)

    print(f"\nper node (figures: {work / 'figures.json'}):")
    print(f"{'IMAGE':<9} {'INSTANCE':<21} {'ROLE':<14} {'BOOT->JOINED':>12} {'RX BYTES':>12} "
          f"{'FROM MIRROR':>12}")
    for label, fig in figures.items():
        for n in fig["nodes"]:
            print(f"{label:<9} {n['instance_id']:<21} {n['role']:<14} "
                  f"{n['boot_to_joined_s']:>10.0f} s {n['rx_bytes']:>12} {n['mirror_bytes']:>12}")
    baked_p50, baked_max = _p50_max([n["boot_to_joined_s"] for n in figures["baked"]["nodes"]])
    base_p50, base_max = _p50_max([n["boot_to_joined_s"] for n in figures["baseline"]["nodes"]])
    baked_bytes = statistics.median(n["rx_bytes"] for n in figures["baked"]["nodes"])
    base_bytes = statistics.median(n["rx_bytes"] for n in figures["baseline"]["nodes"])
    print(f"\nboot to joined: baked p50 {baked_p50:.0f} s (max {baked_max:.0f} s), baseline "
          f"p50 {base_p50:.0f} s (max {base_max:.0f} s)")
    print(f"bytes received at boot per node (p50): baked {baked_bytes}, baseline {base_bytes}")
    print("the baseline reaches, from an AWS account: " + ", ".join(outside_hosts(release))
          + " (none of which an air-gapped VPC reaches)")
    print(f"baked_p50_s={baked_p50:.0f} baseline_p50_s={base_p50:.0f} "
          f"ratio={base_p50 / baked_p50:.2f} baked_boot_bytes={baked_bytes:.0f} "
          f"baseline_boot_bytes={base_bytes:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
