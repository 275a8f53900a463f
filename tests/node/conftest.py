"""Fixtures of the node-agent tests.

- ``standins``: a bin directory with the stand-in ``kubeadm``/``kubectl``/``etcdctl``
  (tests/node/standins/standin.py; not the real tools, which cannot be downloaded here) and the
  shared cluster directory and call log they use.
- ``cluster``: the AWS side of one cluster in moto (lock table, KMS key, EC2 instances for
  liveness) and a ``node(...)`` helper writing a node's node.yaml, identity override and
  stand-in environment, returning the ``bake-node run`` command line.
- ``etcd3``: a real 3-member etcd cluster (Debian ``etcd-server``) on loopback ports.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from standins import addon_file_standin

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Standins:
    bin: Path
    cluster_dir: Path
    log: Path

    def calls(self) -> list[dict]:
        """Every recorded call (JSON lines), in order."""
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def state(self) -> dict:
        path = self.cluster_dir / "state.json"
        return json.loads(path.read_text()) if path.exists() else {}


@pytest.fixture
def standins(tmp_path: Path) -> Standins:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("kubeadm", "kubectl", "etcdctl"):
        script = bin_dir / tool
        script.write_text(
            f'#!/bin/sh\nexec "{sys.executable}" "{HERE / "standins" / "standin.py"}" {tool} "$@"\n'
        )
        script.chmod(0o755)
    return Standins(bin_dir, tmp_path / "cluster", tmp_path / "calls.jsonl")


@dataclass
class Cluster:
    endpoint: str
    table: str
    kms_key_id: str
    prefix: str
    tmp: Path
    standins: Standins
    instances: list[str] = field(default_factory=list)
    ami: str = ""

    def clients(self, **hooks):
        from bake_node.aws import Clients

        return Clients("us-east-1", {s: self.endpoint for s in ("dynamodb", "ssm", "kms", "ec2")})

    def new_instance(self) -> str:
        ec2 = self.clients().client("ec2")
        out = ec2.run_instances(ImageId=self.ami, MinCount=1, MaxCount=1, InstanceType="t3.small")
        iid = out["Instances"][0]["InstanceId"]
        self.instances.append(iid)
        return iid

    def image_manifest(self, addons: list[str] | None = None) -> Path:
        """An image manifest as bake-image-manifest writes it: the add-ons and their images from
        the catalog (1.30.12), all of them unless ``addons`` names some; returns its path."""
        from bake.catalog import load_catalog, resolve

        release = resolve(load_catalog(), "1.30.12", "amd64", addons=addons)
        path = self.tmp / f"image-manifest-{'-'.join(addons) if addons is not None else 'all'}.json"
        addon_files = []
        for f in release.addon_files:  # stand-ins where the image has them, as baked from them
            data = addon_file_standin(f.addon, f.name)
            target = self.addon_files_dir / f.addon / f.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            addon_files.append({"name": f.name, "group": f.addon, "url": f.url,
                                "path": f"/var/lib/bake/addon-files/{f.addon}/{f.filename}",
                                "sha256": hashlib.sha256(data).hexdigest()})
        path.write_text(json.dumps({
            "kubernetes_version": release.kubernetes_version, "addons": dict(release.addons),
            "images": [{"name": i.name, "ref": i.ref, "group": i.group} for i in release.images],
            "addon_files": addon_files}))
        return path

    @property
    def addon_files_dir(self) -> Path:
        """Where the nodes' image keeps the add-ons' upstream files (``--addon-files-dir``)."""
        return self.tmp / "addon-files"

    def node(self, name: str, role: str, **options: Any) -> tuple[list[str], dict[str, str]]:
        """Prepare node ``name``; returns (bake-node run argv, environment). ``node_yaml``:
        extra node.yaml fields; ``image_manifest``: its path (default: every add-on baked, as
        ``bake ami`` does; ``None``: no image manifest); other options become ``--option value``
        arguments."""
        if "image_manifest" not in options:
            options["image_manifest"] = self.image_manifest()
        elif options["image_manifest"] is None:
            options["image_manifest"] = self.tmp / "no-image-manifest.json"
        options.setdefault("addon_files_dir", self.addon_files_dir)
        base = self.tmp / "nodes" / name
        base.mkdir(parents=True, exist_ok=True)
        config = {
            "apiVersion": "bake.node/v1",
            "clusterName": "demo",
            "role": role,
            "region": "us-east-1",
            "controlPlaneEndpoint": "demo-api.elb.us-east-1.amazonaws.com:6443",
            "lockTable": self.table,
            "ssmPrefix": self.prefix,
            "kmsKeyId": self.kms_key_id,
            "podCIDR": "10.244.0.0/16",
            "serviceCIDR": "10.96.0.0/12",
            "vpcCIDR": "10.0.0.0/16",
            "cni": "flannel",
            "kubernetesVersion": options.pop("version", "1.30.12"),
            "endpoints": {s: self.endpoint for s in ("dynamodb", "ssm", "kms", "ec2")},
        }
        config.update(options.pop("node_yaml", {}))  # extra node.yaml fields
        (base / "node.yaml").write_text(yaml.safe_dump(config))
        identity = {
            "instance_id": options.pop("instance_id", None) or self.new_instance(),
            "region": "us-east-1",
            "private_ip": "10.0.1.10",
            "hostname": name,
        }
        (base / "identity.json").write_text(json.dumps(identity))
        argv = [
            sys.executable,
            "-m",
            "bake_node.main",
            "--config",
            str(base / "node.yaml"),
            "--state-dir",
            str(base / "state"),
            options.pop("command", "run"),
            "--identity",
            str(base / "identity.json"),
            "--kubernetes-dir",
            str(base / "root" / "etc" / "kubernetes"),
            "--manifests-dir",
            str(REPO / "manifests"),
            "--kubeadm",
            str(self.standins.bin / "kubeadm"),
            "--kubectl",
            str(self.standins.bin / "kubectl"),
            "--etcdctl",
            str(self.standins.bin / "etcdctl"),
            "--poll",
            "0.3",
            "--max-poll",
            "1",
            "--wait-timeout",
            "120",
        ]
        for key, value in options.items():
            argv += [f"--{key.replace('_', '-')}", str(value)]
        env = {
            **os.environ,
            "BAKE_STANDIN_ROOT": str(base / "root"),
            "BAKE_STANDIN_CLUSTER": str(self.standins.cluster_dir),
            "BAKE_STANDIN_LOG": str(self.standins.log),
            "BAKE_STANDIN_NODE": name,
        }
        return argv, env

    def state(self, name: str) -> dict:
        return json.loads((self.tmp / "nodes" / name / "state" / "state.json").read_text())


_AMI: dict[str, str] = {}


@pytest.fixture
def cluster(aws, standins, tmp_path) -> Cluster:
    from bake_node.aws import Clients
    from bake_node.lease import ensure_table

    clients = Clients("us-east-1", {s: aws.endpoint for s in ("dynamodb", "kms", "ec2")})
    ensure_table(clients.client("dynamodb"), "bake-demo")
    key = clients.client("kms").create_key(Description="bake-demo")["KeyMetadata"]["KeyId"]
    ami = (
        _AMI.get("id")
        or clients.client("ec2").describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    )
    _AMI["id"] = ami  # moto's built-in AMIs do not change between resets
    return Cluster(
        aws.endpoint, "bake-demo", key, "/bake/clusters/demo", tmp_path, standins, ami=ami
    )


@dataclass
class Etcd:
    """A running etcd cluster: ``members`` name -> (client URL, peer URL, Popen)."""

    members: dict[str, tuple[str, str, subprocess.Popen]]

    @property
    def endpoints(self) -> list[str]:
        return [c for c, _p, _proc in self.members.values()]

    def stop(self, name: str) -> None:
        proc = self.members[name][2]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)


@pytest.fixture
def etcd3(tmp_path: Path):
    """Three real etcd 3.4 members on 127.0.0.1 (plain HTTP), stopped by PID afterwards."""
    if not shutil.which("etcd") or not shutil.which("etcdctl"):
        pytest.skip("etcd-server / etcd-client Debian packages are not installed (make deb-deps)")
    names = ["etcd-a", "etcd-b", "etcd-c"]
    ports = {n: (free_port(), free_port()) for n in names}
    initial = ",".join(f"{n}=http://127.0.0.1:{ports[n][1]}" for n in names)
    members = {}
    try:
        for n in names:
            client, peer = (f"http://127.0.0.1:{p}" for p in ports[n])
            proc = subprocess.Popen(
                [
                    "etcd",
                    "--name",
                    n,
                    "--data-dir",
                    str(tmp_path / n),
                    "--listen-client-urls",
                    client,
                    "--advertise-client-urls",
                    client,
                    "--listen-peer-urls",
                    peer,
                    "--initial-advertise-peer-urls",
                    peer,
                    "--initial-cluster",
                    initial,
                    "--initial-cluster-state",
                    "new",
                    "--initial-cluster-token",
                    "bake-test",
                    "--log-level",
                    "error",
                ],
                stdout=subprocess.DEVNULL,
                stderr=open(tmp_path / f"{n}.log", "w"),
            )
            members[n] = (client, peer, proc)
        etcd = Etcd(members)
        deadline = time.monotonic() + 60
        while (
            subprocess.run(
                ["etcdctl", "--endpoints", ",".join(etcd.endpoints), "endpoint", "health"],
                capture_output=True,
                env={**os.environ, "ETCDCTL_API": "3"},
            ).returncode
            != 0
        ):
            if time.monotonic() > deadline:
                pytest.fail("etcd cluster did not become healthy in 60 s")
            time.sleep(0.5)
        yield etcd
    finally:
        for _c, _p, proc in members.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
