"""kubeadm certificate expiry and renewal on a control plane.

kubeadm issues the control plane's leaf certificates for one year (kubeadm docs, "Certificate
Management with kubeadm": ``kubeadm certs renew`` renews them; "After running the command you
should restart the control plane Pods", since not every component reloads certificates). The
certificates checked are the ones ``kubeadm certs check-expiration`` lists: the leaf files in
``/etc/kubernetes/pki`` and the client certificates embedded in the control plane's
kubeconfigs. The CAs (10 years) and the kubelet's own client certificate (which the kubelet
rotates itself) are not renewed here.

Static pods are restarted the documented way: their manifests leave
``/etc/kubernetes/manifests`` for longer than the kubelet's ``fileCheckFrequency`` (20 s) and
come back.
"""

from __future__ import annotations

import base64
import calendar
import shutil
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import yaml

from bake_node.errors import NodeError

# kubeadm certs check-expiration: the leaf certificates (pki-relative) and the kubeconfigs
LEAF_CERTS = ("apiserver.crt", "apiserver-etcd-client.crt", "apiserver-kubelet-client.crt",
              "front-proxy-client.crt", "etcd/server.crt", "etcd/peer.crt",
              "etcd/healthcheck-client.crt")
KUBECONFIGS = ("admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf")
FILE_CHECK_FREQUENCY_S = 20.0  # KubeletConfiguration fileCheckFrequency default
DEFAULT_RENEW_BEFORE_DAYS = 90


class CertificateError(NodeError):
    """A certificate could not be read, renewed, or the control plane did not come back."""


def not_after(pem: bytes) -> float:
    """Epoch seconds at which the PEM certificate expires (``openssl x509 -enddate``).

    Raises:
        CertificateError: openssl cannot read it.
    """
    proc = subprocess.run(["openssl", "x509", "-noout", "-enddate"], input=pem,
                          capture_output=True, timeout=30)
    text = proc.stdout.decode().strip()
    if proc.returncode != 0 or not text.startswith("notAfter="):
        raise CertificateError(f"openssl cannot read a certificate: {proc.stderr.decode()[:200]}")
    return float(calendar.timegm(time.strptime(text.split("=", 1)[1], "%b %d %H:%M:%S %Y %Z")))


def expiries(kubernetes_dir: Path) -> dict[str, float]:
    """``{name: expiry epoch seconds}`` of every kubeadm-managed certificate present
    (``apiserver``, ``etcd-server``..., ``admin.conf``...); {} on a node without any."""
    out: dict[str, float] = {}
    pki = kubernetes_dir / "pki"
    for rel in LEAF_CERTS:
        path = pki / rel
        if path.is_file():
            out[rel.removesuffix(".crt").replace("/", "-")] = not_after(path.read_bytes())
    for name in KUBECONFIGS:
        path = kubernetes_dir / name
        if not path.is_file():
            continue
        try:
            users = yaml.safe_load(path.read_text()).get("users") or []
            data = users[0]["user"]["client-certificate-data"]
        except (yaml.YAMLError, AttributeError, IndexError, KeyError, TypeError):
            continue  # a kubeconfig with a certificate file, not embedded data: not kubeadm's
        out[name] = not_after(base64.b64decode(data))
    return out


def due(found: dict[str, float], now: float, renew_before_days: int) -> bool:
    """True when a certificate expires within ``renew_before_days`` of ``now``."""
    return bool(found) and min(found.values()) - now < renew_before_days * 86400


def restart_static_pods(kubernetes_dir: Path, wait_s: float = FILE_CHECK_FREQUENCY_S + 5) -> None:
    """Move every static pod manifest out, wait ``wait_s`` seconds (longer than the kubelet's
    fileCheckFrequency, so it stops them), and put them back (so it starts them again)."""
    manifests = kubernetes_dir / "manifests"
    parked = kubernetes_dir / "manifests.bake-restart"
    parked.mkdir(mode=0o700, exist_ok=True)
    moved = []
    try:
        for path in sorted(manifests.glob("*.yaml")):
            shutil.move(str(path), parked / path.name)
            moved.append(path.name)
        time.sleep(wait_s)
    finally:
        for name in moved:
            shutil.move(str(parked / name), manifests / name)
        parked.rmdir()


def wait_api_ready(kubernetes_dir: Path, address: str, timeout: float = 300.0,
                   poll: float = 2.0) -> None:
    """Wait until ``https://<address>:6443/readyz`` answers ``ok`` (anonymous, as kube-apiserver
    allows for ``/readyz``: the system:public-info-viewer role), trusting the cluster CA.

    Raises:
        CertificateError: not ready within ``timeout`` seconds.
    """
    ctx = ssl.create_default_context(cafile=str(kubernetes_dir / "pki" / "ca.crt"))
    ctx.check_hostname = False  # the address is an IP in the certificate; the CA is checked
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"https://{address}:6443/readyz", context=ctx,
                                        timeout=5) as resp:
                if resp.status == 200:
                    return
                last = f"HTTP {resp.status}"
        except OSError as exc:
            last = str(exc)
        time.sleep(poll)
    raise CertificateError(f"the API server on {address} was not ready {timeout:.0f} s after "
                           f"the certificate renewal: {last[:200]}")
