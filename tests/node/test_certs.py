"""Certificate expiry as ``bake-node certs`` reads it: kubeadm's leaf certificates and the
client certificates inside the control plane's kubeconfigs (openssl-made here), and when a
renewal is due."""

from __future__ import annotations

import base64
import subprocess
import time
from pathlib import Path

import yaml

from bake_node import certs


def _cert(path: Path, days: int) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(path.with_suffix(".key")),
                    "-out", str(path), "-subj", "/CN=test", "-days", str(days)],
                   check=True, capture_output=True)
    return path.read_bytes()


def test_expiries_cover_leaf_files_and_kubeconfig_client_certificates(tmp_path):
    k8s = tmp_path / "etc/kubernetes"
    _cert(k8s / "pki/apiserver.crt", 365)
    _cert(k8s / "pki/etcd/server.crt", 200)
    pem = _cert(tmp_path / "admin.crt", 30)
    (k8s / "admin.conf").write_text(yaml.safe_dump({"users": [{"name": "a", "user": {
        "client-certificate-data": base64.b64encode(pem).decode()}}]}))
    (k8s / "kubelet.conf").write_text("users: []\n")  # the kubelet rotates its own: not listed
    found = certs.expiries(k8s)
    assert set(found) == {"apiserver", "etcd-server", "admin.conf"}
    now = time.time()
    assert 29 * 86400 < found["admin.conf"] - now <= 30 * 86400
    assert certs.due(found, now, 31) and not certs.due(found, now, 29)
    assert not certs.due({}, now, 90)  # nothing to renew on a node that has not joined


def test_restart_puts_every_manifest_back(tmp_path):
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    for name in ("etcd", "kube-apiserver"):
        (manifests / f"{name}.yaml").write_text(name)
    certs.restart_static_pods(tmp_path, wait_s=0)
    assert sorted(p.name for p in manifests.iterdir()) == ["etcd.yaml", "kube-apiserver.yaml"]
    assert not (tmp_path / "manifests.bake-restart").exists()
