"""Day 2 on control planes, driven by the node agent: certificate renewal, and an etcd restore,
against the REAL etcd (Debian's etcd-server, run by
the VM-cluster stand-ins of kubeadm and kubelet; tools/standin_k8s.py) and the embedded AWS.

Two control planes form a cluster (``bake-node run``: init, then a control-plane join); keys
are written; ``bake-node snapshot --force`` stores a snapshot in S3; both control planes are
destroyed with their data; the restore is requested as ``bake etcd restore`` requests it
(``bake.etcd.request_restore``); then two fresh control planes boot: the first restores the
snapshot (its certificates too) and runs init on the restored data, the second joins it through
the usual path. The keys are read back from both new members.

Node settings: a node group's ``kubelet`` settings (node.yaml) reach the kubelet's configuration
through the KubeletConfiguration patch kubeadm applies.

Certificates: ``bake-node certs`` records every kubeadm certificate's expiry in the cluster
table; forced, it renews them (``kubeadm certs renew all``), restarts the static pods by moving
their manifests out and back, waits for etcd and the API server, and stores the renewed admin
kubeconfig again.

Each "node" is a loopback address (127.0.0.21-24) with its own root directory; kubeadm and the
kubelet are stand-ins, etcd and etcdctl are Debian's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from tests.support import standin_nodes

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("etcd") is None or shutil.which("etcdctl") is None,
                       reason="Debian's etcd-server and etcd-client (make deb-deps)"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed"),
]
BUCKET = standin_nodes.BUCKET


@pytest.fixture
def lab(aws, tmp_path):
    lab = standin_nodes.make_lab(aws, tmp_path)
    yield lab
    lab.stop_all()


def _node(lab, n: int, endpoint_ip: str, command: str = "run", *extra: str, node_yaml=None):
    """Run ``bake-node <command>`` as control plane node-<n> (127.0.0.2<n>); returns
    ``(stdout, state)``."""
    out, state, _ = lab.node(n, endpoint_ip, command, *extra, node_yaml=node_yaml)
    return out, state


def _etcdctl(lab, n: int, *args: str) -> str:
    return lab.etcdctl(n, *args)


def test_snapshot_destroy_every_control_plane_restore_and_rejoin(lab):
    from bake.cluster import init_text, parse_cluster
    from bake.etcd import request_restore

    out, _ = _node(lab, 1, "127.0.0.21")
    assert out.strip() == "bake-node: init"
    out, _ = _node(lab, 2, "127.0.0.21")
    assert out.strip() == "bake-node: join"
    for i in range(20):
        _etcdctl(lab, 1, "put", f"/registry/demo/key-{i}", f"value-{i}")
    old_ca = (lab.tmp / "node1/root/etc/kubernetes/pki/ca.crt").read_text()

    out, _ = _node(lab, 1, "127.0.0.21", "snapshot", "--force")
    assert "stored (revision" in out, out
    listed = lab.clients.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]
    (snapshot_key,) = [o["Key"] for o in listed]
    sid = snapshot_key.removeprefix("etcd-snapshots/").removesuffix(".tar.gz")
    # not due again right after (the 30-minute interval), unless forced
    out, _ = _node(lab, 2, "127.0.0.21", "snapshot")
    assert "not due" in out

    for n in (1, 2):  # every control plane is gone, with its etcd data and certificates
        root = lab.tmp / f"node{n}/root"
        standin_nodes.stop_kubelet(root)
        shutil.rmtree(root / "var/lib/etcd")
        shutil.rmtree(root / "etc/kubernetes")

    spec = parse_cluster(yaml.safe_load(init_text()))
    request_restore(spec, lab.clients, sid)

    out, state = _node(lab, 3, "127.0.0.23")
    assert out.strip() == "bake-node: init"
    assert state["restored_from"] == sid
    assert (lab.tmp / "node3/root/etc/kubernetes/pki/ca.crt").read_text() == old_ca
    out, _ = _node(lab, 4, "127.0.0.23")
    assert out.strip() == "bake-node: join"

    members = json.loads(_etcdctl(lab, 3, "member", "list", "-w", "json"))["members"]
    assert sorted(m["name"] for m in members) == ["node-3", "node-4"]
    for n in (3, 4):
        assert _etcdctl(lab, n, "get", "/registry/demo/key-7", "--print-value-only").strip() \
            == "value-7"
    keys = _etcdctl(lab, 4, "get", "/registry/demo/", "--prefix", "--keys-only").split()
    assert len(keys) == 20
    db = lab.clients.client("dynamodb")
    item = db.get_item(TableName="bake-demo", Key={"pk": {"S": "cluster"}})["Item"]
    assert item["state"]["S"] == "initialized" and item["restored_from"]["S"] == sid
    registered = [i for i in db.scan(TableName="bake-demo")["Items"]
                  if i["pk"]["S"].startswith("etcd#")]
    assert sorted(i["name"]["S"] for i in registered) == ["node-3", "node-4"]


def _serial(path: Path) -> str:
    return subprocess.run(["openssl", "x509", "-in", str(path), "-noout", "-serial"],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_certificates_recorded_then_renewed_with_the_static_pods_restarted(lab):
    out, _ = _node(lab, 1, "127.0.0.21", node_yaml={"kubelet": {
        "maxPods": 58, "evictionHard": {"memory.available": "200Mi"}}})
    assert out.strip() == "bake-node: init"
    # the node group's kubelet settings reached the kubelet's configuration through kubeadm's
    # patches (kubeReserved computed as the EKS AMI does, for this machine's cores)
    from bake_node.kubelet import cpu_millicores_to_reserve

    kubelet = yaml.safe_load((lab.tmp / "node1/root/var/lib/kubelet/config.yaml").read_text())
    assert kubelet["maxPods"] == 58 and kubelet["evictionHard"] == {"memory.available": "200Mi"}
    assert kubelet["kubeReserved"] == {"cpu": f"{cpu_millicores_to_reserve(os.cpu_count())}m",
                                       "memory": "893Mi", "ephemeral-storage": "1Gi"}
    db = lab.clients.client("dynamodb")
    ssm = lab.clients.client("ssm")
    (item,) = [i for i in db.scan(TableName="bake-demo")["Items"]
               if i["pk"]["S"].startswith("certs#")]  # recorded right after the join
    expiries = json.loads(item["expiries"]["S"])
    assert {"apiserver", "etcd-server", "admin.conf"} <= set(expiries)
    assert 364 * 86400 < float(item["earliest_expiry"]["N"]) - time.time() <= 365 * 86400

    out, _ = _node(lab, 1, "127.0.0.21", "certs")
    assert out.startswith("certificates valid until ") and "renewal 90 days before" in out

    pki = lab.tmp / "node1/root/etc/kubernetes/pki"
    before = {name: _serial(pki / name) for name in ("apiserver.crt", "etcd/server.crt")}
    admin_name = "/bake/clusters/demo/control-plane/admin-kubeconfig"
    admin_before = ssm.get_parameter(Name=admin_name, WithDecryption=True)["Parameter"]["Value"]
    _etcdctl(lab, 1, "put", "/registry/demo/before-renewal", "kept")
    out, _ = _node(lab, 1, "127.0.0.21", "certs", "--force", "--static-pod-restart-wait", "3")
    assert out.startswith("certificates renewed: valid until "), out
    assert all(_serial(pki / name) != serial for name, serial in before.items())
    # etcd came back with its data, on the renewed certificates
    assert _etcdctl(lab, 1, "get", "/registry/demo/before-renewal", "--print-value-only") \
        .strip() == "kept"
    admin_after = ssm.get_parameter(Name=admin_name, WithDecryption=True)["Parameter"]["Value"]
    assert admin_after != admin_before  # the renewed client certificate is what bake fetches
    (item,) = [i for i in db.scan(TableName="bake-demo")["Items"]
               if i["pk"]["S"].startswith("certs#")]
    assert "renewed_at" in item
    assert not (lab.tmp / "node1/root/etc/kubernetes/manifests.bake-restart").exists()
