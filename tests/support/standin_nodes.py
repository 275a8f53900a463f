"""Control planes on one host for node-agent tests: the REAL etcd (Debian's etcd-server, run by
the VM-cluster stand-ins of kubeadm and kubelet, tools/standin_k8s.py), the embedded AWS, and
``bake-node`` run as a subprocess per node.

Each node is a loopback address (``127.0.0.2<n>``) with its own root directory; kubeadm,
kubelet and kubectl are the stand-ins of one Kubernetes release per node (``StandinLab.node``
takes the version), so a node of a newer image can join a cluster of an older one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bake.plan import mirror_path

REPO = Path(__file__).resolve().parents[2]
BUCKET = "bake-demo-snapshots"


def stop_kubelet(root: Path) -> None:
    """Stop the kubelet stand-in of a node root (its process group, by the PID it wrote)."""
    pidfile = root / "var/lib/kubelet/standin-kubelet.pid"
    if pidfile.exists():
        try:
            os.killpg(int(pidfile.read_text()), signal.SIGTERM)
        except (OSError, ValueError):
            pass
        time.sleep(1)


class TcpBalancer:
    """The API load balancer of a lab: a TCP pass-through on ``address:port`` to the first
    backend that accepts the connection (what the NLB does with targets that fail its health
    check), so kubeconfigs naming the control-plane endpoint outlive any one control plane.

    Args:
        address: where to listen (a loopback address); port: TCP port (6443).
        backends: ``host:port`` strings, tried in order; the list may change while it runs.
    """

    def __init__(self, address: str, port: int, backends: list[str]):
        self.backends = backends
        self.sock = socket.create_server((address, port), reuse_port=False)
        self.sock.settimeout(0.5)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._forward, args=(client,), daemon=True).start()

    def _forward(self, client: socket.socket) -> None:
        for backend in list(self.backends):
            host, port = backend.rsplit(":", 1)
            try:
                upstream = socket.create_connection((host, int(port)), timeout=2)
                break
            except OSError:
                continue
        else:
            client.close()
            return

        def pipe(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        upstream.settimeout(None)
        client.settimeout(None)
        threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
        pipe(client, upstream)

    def stop(self) -> None:
        self.stopped.set()
        self.sock.close()


@dataclass
class StandinLab:
    """Stand-in releases, the embedded AWS's clients and the nodes started so far.

    Attributes:
        gens: ``{minor: tools.standins.Generated}`` of ``flavor="cluster"``.
        bins: ``{minor: directory holding kubeadm, kubelet, kubectl, crictl}``.
        tmp: the test's directory; node ``n`` lives in ``tmp/node<n>``.
        aws: the moto server; clients: ``bake_node.aws.Clients`` on it; key: the KMS key id.
    """

    gens: dict[str, Any]
    bins: dict[str, Path]
    tmp: Path
    aws: Any
    clients: Any
    key: str
    ami: str
    roots: list[Path] = field(default_factory=list)

    @property
    def ec2(self):
        return self.clients.client("ec2")

    def root(self, n: int) -> Path:
        return self.tmp / f"node{n}" / "root"

    def node(self, n: int, endpoint_ip: str, command: str = "run", *extra: str,
             node_yaml: dict | None = None, minor: str | None = None,
             check: bool = True) -> tuple[str, dict, subprocess.CompletedProcess]:
        """Run ``bake-node <command>`` as control plane ``node-<n>`` (``127.0.0.2<n>``) of
        release ``minor`` (default: the first one). Returns ``(stdout, state.json, process)``;
        with ``check`` a non-zero exit fails the test."""
        minor = minor or next(iter(self.gens))
        gen, bindir = self.gens[minor], self.bins[minor]
        base = self.tmp / f"node{n}"
        root = base / "root"
        if root not in self.roots:
            images = root / "var/lib/bake/images"
            images.mkdir(parents=True)
            etcd_image = gen.release.image("etcd")
            shutil.copy(gen.mirror / etcd_image.archive_path, images / "etcd.tar")
            (root / "etc/bake").mkdir(parents=True)
            # the image manifest as bake-image-manifest writes it: every image with its set
            # (the agent applies only add-ons whose images the image carries) and the add-ons'
            # upstream files, copied from the stand-in mirror as the add-on components do
            addon_files = []
            for f in gen.release.addon_files:
                target = root / "var/lib/bake/addon-files" / f.addon / f.filename
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(gen.mirror / mirror_path(f.url), target)
                addon_files.append({"name": f.name, "group": f.addon, "sha256": f.sha256,
                                    "path": f"/var/lib/bake/addon-files/{f.addon}/{f.filename}"})
            (root / "etc/bake/image-manifest.json").write_text(json.dumps({
                "kubernetes_version": gen.release.kubernetes_version,
                "addons": dict(gen.release.addons),
                "images": [{"name": i.name, "ref": i.ref, "group": i.group,
                            "archive": f"/var/lib/bake/images/{i.name}.tar"}
                           for i in gen.release.images],
                "addon_files": addon_files}))
            instance = self.ec2.run_instances(ImageId=self.ami, MinCount=1, MaxCount=1,
                                              InstanceType="t3.small")["Instances"][0]
            (base / "identity.json").write_text(json.dumps({
                "instance_id": instance["InstanceId"], "region": "us-east-1",
                "private_ip": f"127.0.0.2{n}", "hostname": f"node-{n}"}))
            self.roots.append(root)
        endpoint = self.aws.endpoint
        (base / "node.yaml").write_text(yaml.safe_dump({
            "apiVersion": "bake.node/v1", "clusterName": "demo", "role": "control-plane",
            "region": "us-east-1", "controlPlaneEndpoint": f"{endpoint_ip}:6443",
            "lockTable": "bake-demo", "ssmPrefix": "/bake/clusters/demo", "kmsKeyId": self.key,
            "podCIDR": "10.244.0.0/16", "serviceCIDR": "10.96.0.0/12", "cni": "flannel",
            "kubernetesVersion": gen.release.kubernetes_version,
            "endpoints": {s: endpoint for s in ("dynamodb", "ssm", "kms", "ec2", "s3")},
            "etcdSnapshots": {"bucket": BUCKET},
            **(node_yaml or {}),
        }))
        argv = [sys.executable, "-m", "bake_node.main", "--config", str(base / "node.yaml"),
                "--state-dir", str(base / "state"), command, *extra, "--identity",
                str(base / "identity.json"), "--kubernetes-dir", str(root / "etc/kubernetes"),
                "--etcd-data-dir", str(root / "var/lib/etcd"), "--manifests-dir",
                str(REPO / "manifests"), "--image-manifest",
                str(root / "etc/bake/image-manifest.json"), "--addon-files-dir",
                str(root / "var/lib/bake/addon-files"), "--kubeadm",
                str(bindir / "kubeadm"), "--kubectl", str(bindir / "kubectl"), "--poll", "0.5",
                "--max-poll", "2", "--wait-timeout", "300"]
        env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}",
               "BAKE_STANDIN_ROOT": str(root), "BAKE_STANDIN_SYSTEMD": "0",
               "BAKE_STANDIN_LOOPBACK": "0", "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing"}
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
        if check:
            assert proc.returncode == 0, f"node-{n} {command}: {proc.stderr[-3000:]}"
        state_file = base / "state/state.json"
        state = json.loads(state_file.read_text()) if state_file.exists() else {}
        return proc.stdout, state, proc

    def etcdctl(self, n: int, *args: str) -> str:
        """etcdctl against node ``n``'s member with its etcd client certificate."""
        pki = self.root(n) / "etc/kubernetes/pki"
        return subprocess.run(
            ["etcdctl", "--endpoints", f"https://127.0.0.2{n}:2379", "--cacert",
             str(pki / "etcd/ca.crt"), "--cert", str(pki / "apiserver-etcd-client.crt"),
             "--key", str(pki / "apiserver-etcd-client.key"), *args],
            capture_output=True, text=True, check=True, env={**os.environ, "ETCDCTL_API": "3"},
        ).stdout

    def stop_all(self) -> None:
        for root in self.roots:
            stop_kubelet(root)


def make_lab(aws, tmp_path: Path, minors: tuple[str, ...] = ("1.31",)) -> StandinLab:
    """Generate the stand-in releases of ``minors`` and prepare the embedded AWS: the lock
    table, a KMS key, the snapshot bucket."""
    import standins

    from bake_node.aws import Clients
    from bake_node.lease import ensure_table

    gens, bins = {}, {}
    for minor in minors:
        gen = standins.generate(minor, "amd64", tmp_path / f"gen-{minor}", flavor="cluster")
        bindir = tmp_path / f"bin-{minor}"
        bindir.mkdir()
        for tool in ("kubeadm", "kubelet", "kubectl"):
            shutil.copy(next(gen.mirror.rglob(f"bin/linux/amd64/{tool}")), bindir / tool)
            (bindir / tool).chmod(0o755)
        crictl = next(gen.mirror.rglob("crictl-*.tar.gz"))
        subprocess.run(["tar", "-xzf", str(crictl), "-C", str(bindir), "crictl"], check=True)
        gens[minor], bins[minor] = gen, bindir
    clients = Clients("us-east-1", {s: aws.endpoint for s in ("dynamodb", "kms", "ec2", "s3",
                                                              "ssm")})
    ensure_table(clients.client("dynamodb"), "bake-demo")
    key = clients.client("kms").create_key(Description="bake-demo")["KeyMetadata"]["KeyId"]
    clients.client("s3").create_bucket(Bucket=BUCKET)
    ami = clients.client("ec2").describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    return StandinLab(gens, bins, tmp_path, aws, clients, key, ami)
