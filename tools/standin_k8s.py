# bake test stand-in for kubeadm, kubelet, kubectl and crictl (one program; its name picks the
# tool).
#
# NOT the real Kubernetes tools: Kubernetes binaries cannot be downloaded on bake's development
# machines, so local VM clusters bake this instead (tools/standins.py prepends the release's
# version and image set). What is real around it: the etcd it runs is Debian's etcd-server
# (carried in the etcd image stand-in, started by the kubelet stand-in from the static pod
# manifest kubeadm writes), with TLS from a real CA made by openssl; control-plane joins add
# the member as a learner through the existing cluster and promote it (etcdctl, as kubeadm does);
# certificates and kubeconfigs land where kubeadm writes them; bootstrap tokens and the
# uploaded certificates live in etcd with their TTLs. The API server is a small stand-in API
# health endpoint on 6443 (TLS, /readyz backed by etcd's health) that also serves the
# discovery, TLS bootstrap and apply calls the other stand-ins need; it is not kube-apiserver.
# crictl lists the static pods the kubelet stand-in runs (``ps --name N -q``) and ``exec`` runs
# a command on the node beside them (there are no containers: the pods are host processes), so
# the etcdctl commands bake's etcd member cleanup sends through SSM Run Command work unchanged.
#
# Environment (for tests on one host; defaults are the real paths):
#   BAKE_STANDIN_ROOT     prefix of /etc/kubernetes, /var/lib/{kubelet,etcd}, /var/lib/bake
#   BAKE_STANDIN_SYSTEMD  "0": kubeadm starts the kubelet itself instead of systemctl
#   BAKE_STANDIN_LOOPBACK "0": etcd does not also listen on 127.0.0.1 (several nodes, one host)
#   BAKE_STANDIN_CERT_TTL seconds the uploaded certificates live (default 7200, kubeadm's 2 h)
#   BAKE_STANDIN_ETCD     path of an etcd binary to run instead of the etcd image's own
# The stdlib, python3-yaml, openssl and etcdctl are all it needs (all in bake's images).

import base64
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

# the release: tools/standins.py prepends both to this file (defaults when run from the tree)
KUBERNETES_VERSION = globals().get("KUBERNETES_VERSION", "0.0.0")
CRICTL_VERSION = globals().get("CRICTL_VERSION", "0.0.0")
IMAGES = globals().get("IMAGES", [])
ROOT = Path(os.environ.get("BAKE_STANDIN_ROOT", "/"))
K8S = ROOT / "etc/kubernetes"
PKI = K8S / "pki"
MANIFESTS = K8S / "manifests"
KUBELET_DIR = ROOT / "var/lib/kubelet"
ETCD_DATA = ROOT / "var/lib/etcd"
IMAGE_MANIFEST = ROOT / "etc/bake/image-manifest.json"
CERT_TTL = int(float(os.environ.get("BAKE_STANDIN_CERT_TTL", "7200")))
SYSTEMD = os.environ.get("BAKE_STANDIN_SYSTEMD", "1") != "0"
LOOPBACK = os.environ.get("BAKE_STANDIN_LOOPBACK", "1") != "0"
SHARED_CERTS = ("ca.crt", "ca.key", "sa.key", "sa.pub", "front-proxy-ca.crt",
                "front-proxy-ca.key", "etcd/ca.crt", "etcd/ca.key")
TOKEN_PREFIX = "/bake-standin/bootstrap-tokens/"
CERTS_KEY = "/bake-standin/kubeadm-certs"
NODES_PREFIX = "/bake-standin/nodes/"
APPLIED_PREFIX = "/bake-standin/applied/"
CONFIG_KEY = "/bake-standin/kubeadm-config"
OBJECTS = "/bake-standin/v1/objects/"


class Fail(Exception):
    """One line for the user; exit 1."""


class EtcdUnavailable(Fail):
    """etcd did not answer (no leader, overloaded): the stand-in API answers 503, which
    clients retry, as kube-apiserver's clients do when its storage is unavailable."""


def say(*parts):
    print(f"[{NAME}]", *parts, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- small helpers


def run(argv, check=True, input=None, timeout=120):
    proc = subprocess.run(argv, capture_output=True, text=input is None or isinstance(input, str),
                          input=input, timeout=timeout)
    if check and proc.returncode != 0:
        err = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode(errors="replace")
        last = (err.strip().splitlines() or ["no output"])[-1]
        raise Fail(f"{' '.join(str(a) for a in argv[:3])} failed: {last}")
    return proc


def write(path: Path, data, mode=0o600):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    tmp.chmod(mode)
    os.replace(tmp, path)


def b64(data) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def load_config(path):
    docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    kinds = {}
    for doc in docs:
        api = doc.get("apiVersion", "")
        if api not in ("kubeadm.k8s.io/v1beta3", "kubeadm.k8s.io/v1beta4"):
            raise Fail(f"unsupported kubeadm config apiVersion {api!r}")
        kinds[doc["kind"]] = doc
        if doc["kind"] in ("InitConfiguration", "JoinConfiguration"):
            PATCHES["directory"] = (doc.get("patches") or {}).get("directory")
    return kinds


# the Init/JoinConfiguration's patches.directory of this kubeadm run (kubeadm "patches")
PATCHES = {"directory": None}


def kubelet_configuration():
    """The kubelet's configuration with this node's ``kubeletconfiguration`` patches applied
    (kubeadm's patch target since 1.25; ``+merge`` and unsuffixed files merge as JSON merge
    patches, RFC 7386, in file-name order)."""
    config = {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
              "cgroupDriver": "systemd", "staticPodPath": str(MANIFESTS)}
    directory = PATCHES["directory"]
    for path in sorted(Path(directory).glob("kubeletconfiguration*")) if directory else []:
        if "+json" in path.name or "+strategic" in path.name:
            raise Fail(f"{NOTE}: only merge patches of kubeletconfiguration, not {path.name}")
        config = merge_patch(config, yaml.safe_load(path.read_text()) or {})
        say(f"[patches] applied {path.name} to the KubeletConfiguration")
    return config


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def host_port(endpoint: str):
    host, _, port = endpoint.rpartition(":")
    return host, int(port or 6443)


# ---------------------------------------------------------------- PKI (openssl)


def new_key(path: Path):
    run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-out", str(path)])
    path.chmod(0o600)


def new_ca(name: str, cn: str):
    key, crt = PKI / f"{name}.key", PKI / f"{name}.crt"
    key.parent.mkdir(parents=True, exist_ok=True)
    new_key(key)
    run(["openssl", "req", "-x509", "-new", "-key", str(key), "-subj", f"/CN={cn}", "-days",
         "3650", "-sha256", "-out", str(crt), "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"])
    crt.chmod(0o644)


def sign(name: str, ca: str, subject: str, usages: str, sans=()):
    """A leaf certificate ``PKI/<name>.{crt,key}`` signed by ``PKI/<ca>.{crt,key}``."""
    key, crt = PKI / f"{name}.key", PKI / f"{name}.crt"
    key.parent.mkdir(parents=True, exist_ok=True)
    new_key(key)
    sign_key(key, crt, ca, subject, usages, sans)
    crt.chmod(0o644)


def sign_key(key: Path, crt: Path, ca: str, subject: str, usages: str, sans=()):
    """Write ``crt``: a 365-day certificate for ``key`` (subject, extended key usages, SANs)
    signed by ``PKI/<ca>``."""
    with tempfile.TemporaryDirectory() as tmp:
        csr, ext = Path(tmp) / "req.csr", Path(tmp) / "ext.cnf"
        run(["openssl", "req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr)])
        lines = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
                 f"extendedKeyUsage={usages}"]
        if sans:
            lines.append("subjectAltName=" + ",".join(sans))
        ext.write_text("\n".join(lines) + "\n")
        run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(PKI / f"{ca}.crt"), "-CAkey",
             str(PKI / f"{ca}.key"), "-set_serial", str(secrets.randbits(63)), "-days", "365",
             "-sha256", "-out", str(crt), "-extfile", str(ext)])


def sign_csr(csr_pem: str, subject_check=None) -> str:
    """Sign a CSR with the cluster CA (the TLS bootstrap a kubelet does)."""
    with tempfile.TemporaryDirectory() as tmp:
        csr, ext, crt = Path(tmp) / "r.csr", Path(tmp) / "e.cnf", Path(tmp) / "c.crt"
        csr.write_text(csr_pem)
        subject = run(["openssl", "req", "-in", str(csr), "-noout", "-subject"]).stdout
        if subject_check and not subject_check(subject):
            raise Fail(f"refusing to sign {subject.strip()}")
        ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                       "extendedKeyUsage=clientAuth\n")
        run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(PKI / "ca.crt"), "-CAkey",
             str(PKI / "ca.key"), "-set_serial", str(secrets.randbits(63)), "-days", "365",
             "-sha256", "-out", str(crt), "-extfile", str(ext)])
        return crt.read_text()


def ca_cert_hash(ca_pem: bytes) -> str:
    """``sha256:<hex>`` of the CA's SubjectPublicKeyInfo (kubeadm's discovery hash)."""
    pub = run(["openssl", "x509", "-pubkey", "-noout"], input=ca_pem).stdout
    der = run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub).stdout
    return "sha256:" + hashlib.sha256(der).hexdigest()


def node_certs(name: str, ip: str, cert_sans=(), endpoint_host=None):
    """This node's certificates, signed by the shared CAs (kubeadm's `certs` phase)."""
    api_sans = [f"DNS:{name}", "DNS:kubernetes", "DNS:kubernetes.default",
                "DNS:kubernetes.default.svc", "DNS:kubernetes.default.svc.cluster.local",
                f"IP:{ip}", "IP:10.96.0.1"]
    for san in [*cert_sans, *([endpoint_host] if endpoint_host else [])]:
        entry = f"IP:{san}" if san.replace(".", "").isdigit() else f"DNS:{san}"
        if entry not in api_sans:
            api_sans.append(entry)
    sign("apiserver", "ca", "/CN=kube-apiserver", "serverAuth", api_sans)
    sign("apiserver-kubelet-client", "ca",
         "/O=kubeadm:cluster-admins/CN=kube-apiserver-kubelet-client", "clientAuth")
    sign("front-proxy-client", "front-proxy-ca", "/CN=front-proxy-client", "clientAuth")
    etcd_sans = [f"DNS:{name}", "DNS:localhost", f"IP:{ip}", "IP:127.0.0.1"]
    sign("etcd/server", "etcd/ca", f"/CN={name}", "serverAuth,clientAuth", etcd_sans)
    sign("etcd/peer", "etcd/ca", f"/CN={name}", "serverAuth,clientAuth", etcd_sans)
    sign("etcd/healthcheck-client", "etcd/ca", "/CN=kube-etcd-healthcheck-client", "clientAuth")
    sign("apiserver-etcd-client", "etcd/ca", "/CN=kube-apiserver-etcd-client", "clientAuth")


# what `kubeadm certs renew all` renews: leaf certificate -> its CA, and the kubeconfigs
RENEWED_LEAVES = {"apiserver": "ca", "apiserver-kubelet-client": "ca",
                  "front-proxy-client": "front-proxy-ca", "etcd/server": "etcd/ca",
                  "etcd/peer": "etcd/ca", "etcd/healthcheck-client": "etcd/ca",
                  "apiserver-etcd-client": "etcd/ca"}
RENEWED_KUBECONFIGS = ("admin.conf", "super-admin.conf", "controller-manager.conf",
                       "scheduler.conf")
EKU_NAMES = {"TLS Web Server Authentication": "serverAuth",
             "TLS Web Client Authentication": "clientAuth"}


def resign(crt_pem: bytes, key_pem: bytes, ca: str) -> bytes:
    """A new certificate for the same key, subject, SANs and usages, signed by ``PKI/<ca>``
    for 365 days (kubeadm's renewal keeps the attributes of the existing certificate)."""
    with tempfile.TemporaryDirectory() as tmp:
        crt, key, out = Path(tmp) / "old.crt", Path(tmp) / "k.key", Path(tmp) / "new.crt"
        crt.write_bytes(crt_pem)
        key.write_bytes(key_pem)
        subject = run(["openssl", "x509", "-in", str(crt), "-noout", "-subject", "-nameopt",
                       "compat"]).stdout.strip().removeprefix("subject=")
        exts = run(["openssl", "x509", "-in", str(crt), "-noout", "-ext",
                    "subjectAltName,extendedKeyUsage"]).stdout
        sans, usages, section = [], [], None
        for line in exts.splitlines():
            if line.startswith("X509v3 Subject Alternative Name"):
                section = "san"
            elif line.startswith("X509v3 Extended Key Usage"):
                section = "eku"
            elif section == "san":
                sans += [p.strip().replace("IP Address:", "IP:") for p in line.split(",")]
            elif section == "eku":
                usages += [EKU_NAMES[p.strip()] for p in line.split(",") if p.strip()]
        sign_key(key, out, ca, subject, ",".join(usages) or "clientAuth", sans)
        return out.read_bytes()


def certs_renew_all():
    """``kubeadm certs renew all``: every leaf certificate and kubeconfig client certificate
    of this control plane, renewed in place; the static pods must be restarted after."""
    if not (PKI / "ca.key").exists():
        raise Fail("[renew] no CA key in /etc/kubernetes/pki: not a control plane")
    for name, ca in RENEWED_LEAVES.items():
        crt, key = PKI / f"{name}.crt", PKI / f"{name}.key"
        if crt.exists():
            write(crt, resign(crt.read_bytes(), key.read_bytes(), ca), 0o644)
            say(f"certificate {name} renewed")
    for conf in RENEWED_KUBECONFIGS:
        path = K8S / conf
        if not path.exists():
            continue
        doc = yaml.safe_load(path.read_text())
        user = doc["users"][0]["user"]
        user["client-certificate-data"] = b64(resign(unb64(user["client-certificate-data"]),
                                                     unb64(user["client-key-data"]), "ca"))
        write(path, yaml.safe_dump(doc, sort_keys=False))
        say(f"certificate embedded in the kubeconfig file {conf} renewed")
    say("Done renewing certificates. You must restart the kube-apiserver, "
        "kube-controller-manager, kube-scheduler and etcd, so that they can use the new "
        "certificates.")


def kubeconfig(path: Path, server: str, user: str, cert: str, cluster: str = "kubernetes"):
    ca = (PKI / "ca.crt").read_bytes()
    doc = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server,
                                                   "certificate-authority-data": b64(ca)}}],
        "users": [{"name": user, "user": {
            "client-certificate-data": b64((PKI / f"{cert}.crt").read_bytes()),
            "client-key-data": b64((PKI / f"{cert}.key").read_bytes())}}],
        "contexts": [{"name": f"{user}@{cluster}", "context": {"cluster": cluster, "user": user}}],
        "current-context": f"{user}@{cluster}",
    }
    write(path, yaml.safe_dump(doc, sort_keys=False))


def control_plane_kubeconfigs(server: str, local: str, cluster: str):
    sign("admin", "ca", "/O=kubeadm:cluster-admins/CN=kubernetes-admin", "clientAuth")
    kubeconfig(K8S / "admin.conf", server, "kubernetes-admin", "admin", cluster)
    sign("controller-manager", "ca", "/CN=system:kube-controller-manager", "clientAuth")
    kubeconfig(K8S / "controller-manager.conf", local, "system:kube-controller-manager",
               "controller-manager", cluster)
    sign("scheduler", "ca", "/CN=system:kube-scheduler", "clientAuth")
    kubeconfig(K8S / "scheduler.conf", local, "system:kube-scheduler", "scheduler", cluster)
    for tmp in ("admin", "controller-manager", "scheduler"):  # kubeadm keeps them only inside
        (PKI / f"{tmp}.crt").unlink(missing_ok=True)
        (PKI / f"{tmp}.key").unlink(missing_ok=True)


def kubelet_kubeconfig(name: str, server: str, cert_pem: str, key_path: Path):
    ca = (PKI / "ca.crt").read_bytes()
    doc = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "default-cluster", "cluster": {
            "server": server, "certificate-authority-data": b64(ca)}}],
        "users": [{"name": "default-auth", "user": {
            "client-certificate-data": b64(cert_pem),
            "client-key-data": b64(key_path.read_bytes())}}],
        "contexts": [{"name": "default-context", "context": {
            "cluster": "default-cluster", "user": "default-auth", "namespace": "default"}}],
        "current-context": "default-context",
    }
    write(K8S / "kubelet.conf", yaml.safe_dump(doc, sort_keys=False))


# ---------------------------------------------------------------- certificate key (upload-certs)


def encrypt(key_hex: str, data: bytes) -> str:
    iv = secrets.token_hex(16)
    out = run(["openssl", "enc", "-aes-256-cbc", "-K", key_hex, "-iv", iv], input=data).stdout
    mac = hashlib.sha256(bytes.fromhex(key_hex) + out).hexdigest()
    return json.dumps({"iv": iv, "data": b64(out), "mac": mac})


def decrypt(key_hex: str, blob: str) -> bytes:
    doc = json.loads(blob)
    data = unb64(doc["data"])
    if hashlib.sha256(bytes.fromhex(key_hex) + data).hexdigest() != doc["mac"]:
        raise Fail("error downloading certs: the certificate key does not decrypt them "
                   "(wrong or rotated key)")
    return run(["openssl", "enc", "-d", "-aes-256-cbc", "-K", key_hex, "-iv", doc["iv"]],
               input=data).stdout


def shared_certs_blob() -> bytes:
    return json.dumps({name: b64((PKI / name).read_bytes()) for name in SHARED_CERTS}).encode()


# ---------------------------------------------------------------- etcd (its v3 JSON gateway)


def etcd_tls():
    ctx = ssl.create_default_context(cafile=str(PKI / "etcd/ca.crt"))
    ctx.load_cert_chain(str(PKI / "apiserver-etcd-client.crt"),
                        str(PKI / "apiserver-etcd-client.key"))
    return ctx


class Etcd:
    """etcd through its v3 JSON gateway (etcd docs, "gRPC gateway")."""

    def __init__(self, endpoints):
        self.endpoints = list(endpoints)
        self.ctx = etcd_tls()

    def call(self, path, body):
        last = None
        for endpoint in self.endpoints:
            req = urllib.request.Request(f"{endpoint}{path}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, context=self.ctx, timeout=10) as resp:
                    return json.loads(resp.read() or b"{}")
            except (OSError, ValueError) as exc:
                last = exc
        raise EtcdUnavailable(f"etcd {path} failed on {', '.join(self.endpoints)}: {last}")

    def put(self, key, value, ttl=None):
        body = {"key": b64(key), "value": b64(value)}
        if ttl:
            body["lease"] = self.call("/v3/lease/grant", {"TTL": int(ttl)})["ID"]
        self.call("/v3/kv/put", body)

    def get(self, key):
        kvs = self.call("/v3/kv/range", {"key": b64(key)}).get("kvs", [])
        return unb64(kvs[0]["value"]).decode() if kvs else None

    def prefix(self, prefix):
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        kvs = self.call("/v3/kv/range", {"key": b64(prefix), "range_end": b64(end)}).get("kvs", [])
        return {unb64(kv["key"]).decode(): unb64(kv["value"]).decode() for kv in kvs}

    def delete(self, key):
        self.call("/v3/kv/deleterange", {"key": b64(key)})


def etcdctl(endpoints, *args, check=True):
    argv = ["etcdctl", "--endpoints", ",".join(endpoints), "--cacert", str(PKI / "etcd/ca.crt"),
            "--cert", str(PKI / "apiserver-etcd-client.crt"), "--key",
            str(PKI / "apiserver-etcd-client.key"), "--dial-timeout=5s", "--command-timeout=15s",
            *args]
    return run(argv, check=check, timeout=60)


def local_etcd():
    return Etcd([f"https://{advertise_ip()}:2379"])


def advertise_ip():
    manifest = MANIFESTS / "etcd.yaml"
    for arg in yaml.safe_load(manifest.read_text())["spec"]["containers"][0]["command"]:
        if arg.startswith("--advertise-client-urls="):
            return arg.split("//", 1)[1].rsplit(":", 1)[0]
    raise Fail("no etcd on this node")


# ---------------------------------------------------------------- static pod manifests


def pod(name, image, command, port=None):
    container = {"name": name, "image": image, "command": command}
    if port:
        container["livenessProbe"] = {"httpGet": {"host": "127.0.0.1", "path": "/healthz",
                                                  "port": port, "scheme": "HTTPS"}}
    doc = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "kube-system",
                        "labels": {"component": name, "tier": "control-plane"}},
           "spec": {"hostNetwork": True, "containers": [container],
                    "priorityClassName": "system-node-critical"}}
    write(MANIFESTS / f"{name}.yaml", yaml.safe_dump(doc, sort_keys=False), 0o600)


def image(name):
    for ref in IMAGES:
        if f"/{name}:" in ref:
            return ref
    raise Fail(f"no {name} image in the image set")


def etcd_manifest(name, ip, initial_cluster, state):
    clients = f"https://{ip}:2379" + (",https://127.0.0.1:2379" if LOOPBACK else "")
    command = ["etcd", f"--name={name}", f"--data-dir={ETCD_DATA}",
               f"--listen-client-urls={clients}", f"--advertise-client-urls=https://{ip}:2379",
               f"--listen-peer-urls=https://{ip}:2380",
               f"--initial-advertise-peer-urls=https://{ip}:2380",
               f"--initial-cluster={initial_cluster}", f"--initial-cluster-state={state}",
               f"--cert-file={PKI}/etcd/server.crt", f"--key-file={PKI}/etcd/server.key",
               "--client-cert-auth=true", f"--trusted-ca-file={PKI}/etcd/ca.crt",
               f"--peer-cert-file={PKI}/etcd/peer.crt", f"--peer-key-file={PKI}/etcd/peer.key",
               "--peer-client-cert-auth=true", f"--peer-trusted-ca-file={PKI}/etcd/ca.crt",
               "--snapshot-count=10000"]
    if LOOPBACK:
        command.append("--listen-metrics-urls=http://127.0.0.1:2381")
    pod("etcd", image("etcd"), command)


def image_at(name, version):
    """``name``'s image at the ClusterConfiguration's ``kubernetesVersion`` (kubeadm writes
    the control-plane static pods at that version, whatever its own is)."""
    ref = image(name)
    return ref.rsplit(":", 1)[0] + ":v" + str(version).lstrip("v") if version else ref


def control_plane_manifests(ip, cluster_config):
    net = cluster_config.get("networking", {})
    version = cluster_config.get("kubernetesVersion")
    pod("kube-apiserver", image_at("kube-apiserver", version), [
        "kube-apiserver", f"--advertise-address={ip}", "--secure-port=6443",
        f"--tls-cert-file={PKI}/apiserver.crt", f"--tls-private-key-file={PKI}/apiserver.key",
        f"--client-ca-file={PKI}/ca.crt", f"--etcd-servers=https://{ip}:2379",
        f"--etcd-cafile={PKI}/etcd/ca.crt", f"--etcd-certfile={PKI}/apiserver-etcd-client.crt",
        f"--etcd-keyfile={PKI}/apiserver-etcd-client.key",
        f"--service-cluster-ip-range={net.get('serviceSubnet', '10.96.0.0/12')}",
        f"--service-account-key-file={PKI}/sa.pub"], port=6443)
    pod("kube-controller-manager", image_at("kube-controller-manager", version), [
        "kube-controller-manager", f"--kubeconfig={K8S}/controller-manager.conf",
        f"--cluster-cidr={net.get('podSubnet', '')}", "--allocate-node-cidrs=true"], port=10257)
    pod("kube-scheduler", image_at("kube-scheduler", version), [
        "kube-scheduler", f"--kubeconfig={K8S}/scheduler.conf"], port=10259)


def start_kubelet():
    (KUBELET_DIR).mkdir(parents=True, exist_ok=True)
    write(KUBELET_DIR / "config.yaml", yaml.safe_dump(kubelet_configuration()), 0o644)
    write(KUBELET_DIR / "kubeadm-flags.env",
          'KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/containerd/containerd.sock"\n',
          0o644)
    if SYSTEMD:
        run(["systemctl", "restart", "kubelet"])
        return
    pidfile = KUBELET_DIR / "standin-kubelet.pid"
    if pidfile.exists():
        try:
            os.kill(int(pidfile.read_text()), 0)
            return
        except (OSError, ValueError):
            pass
    log = open(KUBELET_DIR / "standin-kubelet.log", "ab")
    proc = subprocess.Popen([sys.executable, os.path.abspath(sys.argv[0]), "--bake-standin-as",
                             "kubelet"], stdout=log, stderr=log, start_new_session=True,
                            env=dict(os.environ))
    pidfile.write_text(str(proc.pid))


def stop_kubelet():
    if SYSTEMD:
        run(["systemctl", "stop", "kubelet"], check=False)
        return
    pidfile = KUBELET_DIR / "standin-kubelet.pid"
    try:
        pid = int(pidfile.read_text())
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.1)
    except (OSError, ValueError):
        pass
    pidfile.unlink(missing_ok=True)


def wait(what, check, timeout=240.0, every=1.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (Fail, OSError, ValueError) as exc:
            last = exc
        time.sleep(every)
    detail = f": {last}" if last else ""
    raise Fail(f"timed out after {timeout:.0f} s waiting for {what}{detail}")


def api_ready(ip):
    ctx = ssl.create_default_context(cafile=str(PKI / "ca.crt"))
    ctx.check_hostname = False
    with urllib.request.urlopen(f"https://{ip}:6443/readyz", context=ctx, timeout=5) as resp:
        return resp.status == 200


# ---------------------------------------------------------------- kubeadm


def kubeadm_version(args):
    v = "v" + KUBERNETES_VERSION
    if "-o" in args or any(a.startswith("--output") or a == "-oshort" for a in args):
        print(v)
    else:
        minor = KUBERNETES_VERSION.split(".")[1]
        print(f'kubeadm version: &version.Info{{Major:"1", Minor:"{minor}", '
              f'GitVersion:"{v}", GitCommit:"bake-standin", Compiler:"gc", Platform:"linux"}}')


def kubeadm_init(config_path, upload_certs, ignored=()):
    kinds = load_config(config_path)
    init, cluster = kinds["InitConfiguration"], kinds["ClusterConfiguration"]
    name = init["nodeRegistration"]["name"]
    ip = init["localAPIEndpoint"]["advertiseAddress"]
    endpoint = cluster["controlPlaneEndpoint"]
    if (MANIFESTS / "etcd.yaml").exists():
        raise Fail("[preflight] /etc/kubernetes/manifests/etcd.yaml already exists: "
                   "run kubeadm reset")
    # kubeadm's preflight check DirAvailable--var-lib-etcd: an etcd data directory that is not
    # empty fails init unless that check is ignored (what a restore from a snapshot does)
    if ETCD_DATA.is_dir() and any(ETCD_DATA.iterdir()) and \
            "diravailable--var-lib-etcd" not in ignored and "all" not in ignored:
        raise Fail(f"[preflight] [ERROR DirAvailable--var-lib-etcd]: {ETCD_DATA} is not empty")
    say(f"[init] Using Kubernetes version: v{KUBERNETES_VERSION} (bake stand-in)")
    # like kubeadm's certs phase: a CA (or the service-account key) already in the
    # certificate directory is used, not replaced
    say("[certs] the cluster CAs (existing ones kept) and this node's certificates "
        "(openssl, P-256)")
    for ca, cn in (("ca", "kubernetes"), ("front-proxy-ca", "front-proxy-ca"),
                   ("etcd/ca", "etcd-ca")):
        if not ((PKI / f"{ca}.crt").is_file() and (PKI / f"{ca}.key").is_file()):
            new_ca(ca, cn)
    if not (PKI / "sa.key").is_file():
        new_key(PKI / "sa.key")
        run(["openssl", "pkey", "-in", str(PKI / "sa.key"), "-pubout", "-out",
             str(PKI / "sa.pub")])
    node_certs(name, ip, cluster.get("apiServer", {}).get("certSANs", []), host_port(endpoint)[0])
    control_plane_kubeconfigs(f"https://{endpoint}", f"https://{ip}:6443",
                              cluster.get("clusterName", "kubernetes"))
    super_admin = K8S / "super-admin.conf"
    shutil.copy(K8S / "admin.conf", super_admin)
    say("[etcd] static pod manifest for a new one-member etcd cluster")
    etcd_manifest(name, ip, f"{name}=https://{ip}:2380", "new")
    control_plane_manifests(ip, cluster)
    say("[kubelet-start] starting the kubelet")
    start_kubelet()
    wait("etcd to be healthy", lambda: etcd_healthy(local_etcd()), 240, 2)
    wait("the API server to be ready", lambda: api_ready(ip), 240, 2)
    etcd = local_etcd()
    etcd.put(CONFIG_KEY, json.dumps({"ClusterConfiguration": cluster}))
    # kubeadm's addon phases (addon/coredns, addon/kube-proxy) unless InitConfiguration's
    # skipPhases names them (or "addon"); kept as they are on a restore
    skipped = set(init.get("skipPhases") or [])
    if not etcd.get(object_key("Deployment", "kube-system", "coredns")):
        for obj in addon_objects():
            if {"addon", f"addon/{obj['metadata']['name']}"} & skipped:
                say(f"[addons] skipped phase addon/{obj['metadata']['name']}")
                continue
            say(f"[addons] Applied essential addon: {obj['metadata']['name']}")
            etcd.put(object_key(obj["kind"], "kube-system", obj["metadata"]["name"]),
                     json.dumps(obj))
    # [bootstrap-token]: the tokens of InitConfiguration, or kubeadm's default one of 24 h
    for bt in init.get("bootstrapTokens") or [{"token": f"{secrets.token_hex(3)}."
                                                        f"{secrets.token_hex(8)}", "ttl": "24h"}]:
        store_token(etcd, bt["token"], duration_seconds(bt.get("ttl", "24h")))
    if upload_certs:
        key = init.get("certificateKey") or secrets.token_hex(32)
        etcd.put(CERTS_KEY, encrypt(key, shared_certs_blob()), ttl=CERT_TTL)
        say(f"[upload-certs] uploaded the certificates; key (expires in {CERT_TTL} s):")
        print(key)
    kubelet_conf_for_control_plane(name, ip)
    register_node(etcd, name, ip, "control-plane")
    say("Your Kubernetes control-plane has initialized successfully! (bake stand-in)")


def kubelet_conf_for_control_plane(name, ip):
    key = PKI / "kubelet-client.key"
    new_key(key)
    with tempfile.TemporaryDirectory() as tmp:
        csr = Path(tmp) / "k.csr"
        run(["openssl", "req", "-new", "-key", str(key), "-subj",
             f"/O=system:nodes/CN=system:node:{name}", "-out", str(csr)])
        cert = sign_csr(csr.read_text())
    kubelet_kubeconfig(name, f"https://{ip}:6443", cert, key)


def register_node(etcd, name, ip, role, version=None):
    etcd.put(NODES_PREFIX + name, json.dumps({"name": name, "ip": ip, "role": role,
                                              "kubeletVersion": "v" + (version or
                                                                       KUBERNETES_VERSION),
                                              "registered": time.time()}))


def minor_of(version):
    """``(major, minor)`` of ``v1.31.2``/``1.31.2``."""
    major, minor = str(version).lstrip("v").split(".")[:2]
    return int(major), int(minor)


def kubelet_version_check(cluster):
    """kubeadm join's preflight check KubeletVersion: the kubelet's minor may not be higher
    than the control plane version of the cluster's ClusterConfiguration (the message is
    kubeadm's own)."""
    cp = cluster.get("kubernetesVersion", "")
    if cp and minor_of(KUBERNETES_VERSION) > minor_of(cp):
        raise Fail("[preflight] Some fatal errors occurred: [ERROR KubeletVersion]: the kubelet "
                   "version is higher than the control plane version. This is not a supported "
                   "version skew and may lead to a malfunctional cluster. Kubelet version: "
                   f'"{KUBERNETES_VERSION}" Control plane version: "{cp.lstrip("v")}"')


def addon_objects():
    """What kubeadm's addon phase creates: the kube-proxy DaemonSet and the CoreDNS
    Deployment, with this release's images."""
    def workload(kind, name, container, ref, api_version="apps/v1"):
        return {"apiVersion": api_version, "kind": kind,
                "metadata": {"name": name, "namespace": "kube-system"},
                "spec": {"template": {"spec": {"containers": [
                    {"name": container, "image": ref}]}}}}
    return [workload("DaemonSet", "kube-proxy", "kube-proxy", image("kube-proxy")),
            workload("Deployment", "coredns", "coredns", image("coredns"))]


def object_key(kind, namespace, name):
    return f"{APPLIED_PREFIX}{kind}/{namespace}/{name}"


def duration_seconds(text):
    """kubeadm's duration forms the agent uses (``900s``, ``15m``, ``24h``) in seconds."""
    text = str(text)
    if text[-1:] in ("s", "m", "h"):
        return float(text[:-1]) * {"s": 1, "m": 60, "h": 3600}[text[-1]]
    return float(text)


def store_token(etcd, token, ttl_seconds):
    """Keep bootstrap token ``id.secret`` for ``ttl_seconds`` under an etcd lease of that TTL:
    like the bootstrap-token Secret that kube-controller-manager's token cleaner deletes at
    its expiry, it is gone once expired."""
    token_id, _, secret = token.partition(".")
    etcd.put(TOKEN_PREFIX + token_id, json.dumps(
        {"secret": secret, "expires": time.time() + ttl_seconds}), ttl=max(1, int(ttl_seconds)))


def token_list():
    """``kubeadm token list -o json``: one JSON object per token (output.kubeadm.k8s.io)."""
    for key, value in sorted(local_etcd().prefix(TOKEN_PREFIX).items()):
        entry = json.loads(value)
        print(json.dumps({
            "kind": "BootstrapToken", "apiVersion": "output.kubeadm.k8s.io/v1alpha3",
            "token": f"{key[len(TOKEN_PREFIX):]}.{entry['secret']}",
            "expires": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry["expires"])),
            "usages": ["authentication", "signing"],
            "groups": ["system:bootstrappers:kubeadm:default-node-token"]}))


def token_create(ttl_seconds):
    token_id, secret = secrets.token_hex(3), secrets.token_hex(8)
    etcd = local_etcd()
    store_token(etcd, f"{token_id}.{secret}", ttl_seconds)
    cluster = json.loads(etcd.get(CONFIG_KEY))["ClusterConfiguration"]
    ca_hash = ca_cert_hash((PKI / "ca.crt").read_bytes())
    print(f"kubeadm join {cluster['controlPlaneEndpoint']} --token {token_id}.{secret} "
          f"--discovery-token-ca-cert-hash {ca_hash}")


def upload_certs_phase():
    key = secrets.token_hex(32)
    local_etcd().put(CERTS_KEY, encrypt(key, shared_certs_blob()), ttl=CERT_TTL)
    say("[upload-certs] Using certificate key:")
    print(key)


def api(endpoint, path, body=None, token=None, ca_file=None, client=None, retry_s=120.0,
        method=None):
    """One HTTPS call to the stand-in API (``ca_file`` None: discovery, no verification),
    retried for up to ``retry_s`` seconds on transient failures. ``method``: default GET, or
    POST with a body."""
    if ca_file:
        ctx = ssl.create_default_context(cafile=ca_file)
        if client:
            ctx.load_cert_chain(*client)
    else:
        ctx = ssl._create_unverified_context()  # noqa: S323 - discovery pins the CA by hash
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"https://{endpoint}{path}", headers=headers,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 method=method)
    # like client-go under kubeadm and the kubelet: transient failures (timeouts, refused or
    # reset connections, 5xx) are retried with backoff for a bounded time; 4xx are final
    deadline = time.monotonic() + retry_s
    delay = 1.0
    while True:
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace").strip()
            if exc.code < 500 or time.monotonic() > deadline:
                raise Fail(f"{path} on {endpoint}: HTTP {exc.code}: {detail}") from None
        except (OSError, TimeoutError) as exc:
            if time.monotonic() > deadline:
                raise Fail(f"{path} on {endpoint}: {exc}") from None
        time.sleep(delay)
        delay = min(delay * 2, 10.0)


def discover(join):
    """Token discovery: fetch cluster-info, pin the CA by hash, return (endpoint, ca pem)."""
    bt = join["discovery"]["bootstrapToken"]
    endpoint = bt["apiServerEndpoint"]
    info = wait(f"the API server at {endpoint}",
                lambda: api(endpoint, "/api/v1/namespaces/kube-public/configmaps/cluster-info",
                            retry_s=0),
                300, 3)
    ca = unb64(yaml.safe_load(info["data"]["kubeconfig"])["clusters"][0]["cluster"]
               ["certificate-authority-data"])
    if ca_cert_hash(ca) not in bt.get("caCertHashes", []):
        raise Fail("cluster CA found in cluster-info ConfigMap is invalid: none of the public keys "
                   f"{bt.get('caCertHashes')} are pinned")
    write(PKI / "ca.crt", ca, 0o644)
    return endpoint, bt["token"]


def download_certs(join):
    endpoint, token = discover(join)
    answer = api(endpoint, "/bake-standin/v1/bootstrap", {"role": "control-plane"}, token,
                 str(PKI / "ca.crt"))
    if not answer.get("kubeadm_certs"):
        raise Fail("error downloading certs: the kubeadm-certs Secret is gone (it expires "
                   f"{CERT_TTL} s after upload): re-upload with kubeadm init phase upload-certs")
    key = join["controlPlane"]["certificateKey"]
    files = json.loads(decrypt(key, answer["kubeadm_certs"]))
    for name, data in files.items():
        write(PKI / name, unb64(data), 0o600 if name.endswith(".key") else 0o644)
    say(f"[download-certs] {len(files)} shared certificates downloaded and decrypted")
    return answer


def kubeadm_join_phase(phase, config_path):
    join = load_config(config_path)["JoinConfiguration"]
    if phase == "download-certs":
        download_certs(join)
    elif phase == "certs":
        ip = join["controlPlane"]["localAPIEndpoint"]["advertiseAddress"]
        name = join["nodeRegistration"]["name"]
        endpoint = join["discovery"]["bootstrapToken"]["apiServerEndpoint"]
        node_certs(name, ip, (), host_port(endpoint)[0])
        say("[certs] this node's certificates are signed by the downloaded CAs")
    else:
        raise Fail(f"unsupported phase control-plane-prepare {phase}")


def kubeadm_join(config_path):
    join = load_config(config_path)["JoinConfiguration"]
    name = join["nodeRegistration"]["name"]
    if (K8S / "kubelet.conf").exists():
        raise Fail("[preflight] /etc/kubernetes/kubelet.conf already exists: run kubeadm reset")
    if "controlPlane" in join:
        join_control_plane(join, name)
    else:
        join_worker(join, name)


def join_worker(join, name):
    endpoint, token = discover(join)
    kubelet_version_check(api(endpoint, "/bake-standin/v1/bootstrap", {"role": "worker"}, token,
                              str(PKI / "ca.crt"))["cluster_configuration"])
    ip = node_ip(join)
    key = PKI / "kubelet-client.key"
    new_key(key)
    with tempfile.TemporaryDirectory() as tmp:
        csr = Path(tmp) / "k.csr"
        run(["openssl", "req", "-new", "-key", str(key), "-subj",
             f"/O=system:nodes/CN=system:node:{name}", "-out", str(csr)])
        answer = api(endpoint, "/bake-standin/v1/csr", {"csr": csr.read_text(), "node": name,
                                                       "ip": ip, "version": KUBERNETES_VERSION},
                     token, str(PKI / "ca.crt"))
    kubelet_kubeconfig(name, f"https://{endpoint}", answer["certificate"], key)
    say("[kubelet-start] TLS bootstrap done; starting the kubelet")
    start_kubelet()
    client = tls_client_from_kubeconfig(K8S / "kubelet.conf")
    wait("the node to register", lambda: api(endpoint, f"/bake-standin/v1/nodes/{name}",
                                             ca_file=str(PKI / "ca.crt"), client=client,
                                             retry_s=0), 240, 2)
    say("This node has joined the cluster (bake stand-in)")


def node_ip(join):
    for arg in join["nodeRegistration"].get("kubeletExtraArgs", []) or []:
        if isinstance(arg, dict) and arg.get("name") == "node-ip":
            return arg["value"]
    extra = join["nodeRegistration"].get("kubeletExtraArgs", {})
    if isinstance(extra, dict) and extra.get("node-ip"):
        return extra["node-ip"]
    return socket.gethostbyname(socket.gethostname())


def join_control_plane(join, name):
    cp = join["controlPlane"]
    ip = cp["localAPIEndpoint"]["advertiseAddress"]
    endpoint = join["discovery"]["bootstrapToken"]["apiServerEndpoint"]
    if not (PKI / "ca.key").exists():
        download_certs(join)
    if not (PKI / "apiserver-etcd-client.crt").exists():
        node_certs(name, ip, (), host_port(endpoint)[0])
    token = join["discovery"]["bootstrapToken"]["token"]
    answer = api(endpoint, "/bake-standin/v1/bootstrap", {"role": "control-plane"}, token,
                 str(PKI / "ca.crt"))
    cluster = answer["cluster_configuration"]
    kubelet_version_check(cluster)
    existing = answer["etcd_endpoints"]
    control_plane_kubeconfigs(f"https://{endpoint}", f"https://{ip}:6443",
                              cluster.get("clusterName", "kubernetes"))
    say(f"[etcd] adding {name} as a learner through {', '.join(existing)}")
    # etcd refuses a member change ("unhealthy cluster") while the newest peer link is younger
    # than its health interval; kubeadm's etcd client retries with backoff, so does this
    def add():
        proc = etcdctl(existing, "member", "add", name, f"--peer-urls=https://{ip}:2380",
                       "--learner", "-w", "json", check=False)
        if proc.returncode == 0:
            return json.loads(proc.stdout)
        if "unhealthy cluster" not in proc.stderr + proc.stdout:
            raise Fail(f"etcdctl member add failed: {proc.stderr.strip()}")
        return None

    added = wait("etcd to accept the new member", add, 60, 2)
    member_id = format(added["member"]["ID"], "x")
    peers = []
    for m in added.get("members", []):
        mname = m.get("name") or (name if m["ID"] == added["member"]["ID"] else "")
        if mname:
            peers.append(f"{mname}={m['peerURLs'][0]}")
    etcd_manifest(name, ip, ",".join(peers), "existing")
    control_plane_manifests(ip, cluster)
    kubelet_conf_for_control_plane(name, ip)
    start_kubelet()
    say(f"[etcd] promoting learner {member_id} once it is in sync")
    wait("the etcd learner to be promoted",
         lambda: etcdctl(existing, "member", "promote", member_id, check=False).returncode == 0,
         300, 3)
    wait("the API server to be ready", lambda: api_ready(ip), 240, 2)
    register_node(local_etcd(), name, ip, "control-plane")
    say("This node has joined the cluster as a control plane (bake stand-in)")


def kubeadm_reset():
    removed = False
    if (MANIFESTS / "etcd.yaml").exists() and (PKI / "apiserver-etcd-client.crt").exists():
        try:
            ip = advertise_ip()
            members = json.loads(etcdctl([f"https://{ip}:2379"], "member", "list", "-w", "json",
                                         check=True).stdout).get("members", [])
            me = [m for m in members if any(ip in u for u in m.get("peerURLs", []))]
            others = [u for m in members if m not in me for u in m.get("clientURLs", [])]
            if me and others:
                # etcd refuses ("unhealthy cluster") while a peer link is younger than its
                # health interval; kubeadm's etcd client retries with backoff, so does this
                member_id = format(me[0]["ID"], "x")
                wait("etcd to accept the member removal", lambda: etcdctl(
                    others, "member", "remove", member_id, check=False).returncode == 0, 60, 2)
                removed = True
        except Fail as exc:
            say(f"[reset] could not remove this node's etcd member: {exc}")
    stop_kubelet()
    for path in (MANIFESTS, ETCD_DATA, PKI, KUBELET_DIR):
        shutil.rmtree(path, ignore_errors=True)
    for conf in K8S.glob("*.conf"):
        conf.unlink()
    say("[reset] done" + (" (etcd member removed)" if removed else ""))


def tls_client_from_kubeconfig(path):
    doc = yaml.safe_load(Path(path).read_text())
    user = doc["users"][0]["user"]
    d = Path(tempfile.mkdtemp(prefix="bake-standin-"))
    (d / "c.crt").write_bytes(unb64(user["client-certificate-data"]))
    (d / "c.key").write_bytes(unb64(user["client-key-data"]))
    (d / "c.key").chmod(0o600)
    return str(d / "c.crt"), str(d / "c.key")


def kubeadm(args):
    if not args or args[0] in ("-h", "--help"):
        print(NOTE)
        return
    cmd, rest = args[0], args[1:]
    opt = {}
    i = 0
    positional = []
    while i < len(rest):
        a = rest[i]
        if a.startswith("--") and "=" in a:
            k, v = a[2:].split("=", 1)
            opt[k] = v
        elif a.startswith("--") and i + 1 < len(rest) and not rest[i + 1].startswith("-"):
            opt[a[2:]] = rest[i + 1]
            i += 1
        elif a.startswith("--"):
            opt[a[2:]] = True
        else:
            positional.append(a)
        i += 1
    if cmd == "version":
        kubeadm_version(rest)
    elif cmd == "config" and positional[:2] == ["images", "list"]:
        print("\n".join(IMAGES))
    elif cmd == "init" and positional[:2] == ["phase", "upload-certs"]:
        upload_certs_phase()
    elif cmd == "init":
        ignored = {c.strip().lower() for c in str(opt.get("ignore-preflight-errors", ""))
                   .split(",") if c.strip()}
        kubeadm_init(opt["config"], bool(opt.get("upload-certs")), ignored)
    elif cmd == "join" and positional[:2] == ["phase", "control-plane-prepare"]:
        kubeadm_join_phase(positional[2], opt["config"])
    elif cmd == "join":
        kubeadm_join(opt["config"])
    elif cmd == "token" and positional[:1] == ["create"]:
        token_create(duration_seconds(opt.get("ttl", "24h")))
    elif cmd == "token" and positional[:1] == ["list"]:
        token_list()
    elif cmd == "reset":
        kubeadm_reset()
    elif cmd == "certs" and positional[:2] == ["renew", "all"]:
        certs_renew_all()
    else:
        raise Fail(f"{NOTE}: unsupported arguments: {' '.join(args)}")


# ---------------------------------------------------------------- the stand-in API endpoint


class Api(BaseHTTPRequestHandler):
    """The stand-in API health endpoint (and the calls the other stand-ins make)."""

    server_version = "bake-standin-apiserver"
    etcd: Etcd = None  # set by serve_api

    def log_message(self, fmt, *args):
        pass

    def _send(self, code, body):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _token(self):
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return None
        token_id, _, secret = auth[7:].partition(".")
        stored = self.etcd.get(TOKEN_PREFIX + token_id)
        if not stored:
            return None
        entry = json.loads(stored)
        return token_id if entry["secret"] == secret and entry["expires"] > time.time() else None

    def _admin(self):
        cert = self.connection.getpeercert() if hasattr(self.connection, "getpeercert") else None
        if not cert:
            return False
        subject = dict(x[0] for x in cert.get("subject", ()))
        return subject.get("organizationName") in ("kubeadm:cluster-admins", "system:masters")

    def _client(self):
        cert = self.connection.getpeercert()
        return dict(x[0] for x in cert.get("subject", ())) if cert else None

    def _body(self):
        length = int(self.headers.get("Content-Length", "0"))
        return json.loads(self.rfile.read(length) or b"{}")

    def do_GET(self):  # noqa: N802
        try:
            if self.path in ("/readyz", "/livez", "/healthz"):
                ok = etcd_healthy(self.etcd)
                return self._send(200 if ok else 500, b"ok" if ok else b"etcd not healthy")
            if self.path == "/api/v1/namespaces/kube-public/configmaps/cluster-info":
                cluster = json.loads(self.etcd.get(CONFIG_KEY))["ClusterConfiguration"]
                kc = {"apiVersion": "v1", "kind": "Config", "clusters": [{"name": "", "cluster": {
                    "server": f"https://{cluster['controlPlaneEndpoint']}",
                    "certificate-authority-data": b64((PKI / "ca.crt").read_bytes())}}]}
                return self._send(200, {"kind": "ConfigMap", "data": {"kubeconfig":
                                                                     yaml.safe_dump(kc)}})
            if self.path.startswith(OBJECTS):
                if not self._admin():
                    return self._send(403, {"message": "needs an admin client certificate"})
                obj = self._object(*self.path[len(OBJECTS):].split("/"))
                return self._send(200, obj) if obj else \
                    self._send(404, {"message": f"{self.path[len(OBJECTS):]} not found"})
            if self.path.startswith("/bake-standin/v1/nodes"):
                if not self._client():
                    return self._send(401, {"message": "client certificate required"})
                name = self.path.rsplit("/", 1)[1] if self.path.count("/") > 3 else None
                nodes = {k[len(NODES_PREFIX):]: json.loads(v)
                         for k, v in self.etcd.prefix(NODES_PREFIX).items()}
                if name:
                    return self._send(200, nodes[name]) if name in nodes else \
                        self._send(404, {"message": f"node {name} not found"})
                return self._send(200, {"items": list(nodes.values())})
            return self._send(404, {"message": "not served by the stand-in API"})
        except Exception as exc:  # noqa: BLE001 - one answer per request
            return self._send(500, {"message": str(exc)})

    def _object(self, kind, namespace, name):
        """A stored object; the kubeadm-config ConfigMap is the ClusterConfiguration kubeadm
        keeps (CONFIG_KEY)."""
        if (kind, namespace, name) == ("ConfigMap", "kube-system", "kubeadm-config"):
            cluster = json.loads(self.etcd.get(CONFIG_KEY))["ClusterConfiguration"]
            return {"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": namespace},
                    "data": {"ClusterConfiguration": yaml.safe_dump(cluster)}}
        stored = self.etcd.get(object_key(kind, namespace, name))
        return json.loads(stored) if stored else None

    def do_PUT(self):  # noqa: N802
        """Replace a stored object (kubectl replace / set image)."""
        try:
            if not self._admin():
                return self._send(403, {"message": "needs an admin client certificate"})
            body = self._body()
            if not self.path.startswith(OBJECTS):
                return self._send(404, {"message": "not served by the stand-in API"})
            kind, namespace, name = self.path[len(OBJECTS):].split("/")
            if self._object(kind, namespace, name) is None:
                return self._send(404, {"message": f"{kind} {namespace}/{name} not found"})
            if (kind, namespace, name) == ("ConfigMap", "kube-system", "kubeadm-config"):
                cluster = yaml.safe_load(body["data"]["ClusterConfiguration"])
                self.etcd.put(CONFIG_KEY, json.dumps({"ClusterConfiguration": cluster}))
            else:
                self.etcd.put(object_key(kind, namespace, name), json.dumps(body))
            return self._send(200, body)
        except Exception as exc:  # noqa: BLE001 - one answer per request
            return self._send(500, {"message": str(exc)})

    def do_DELETE(self):  # noqa: N802
        """Delete a Node object (kubectl delete node)."""
        try:
            if not self._admin():
                return self._send(403, {"message": "needs an admin client certificate"})
            if not self.path.startswith("/bake-standin/v1/nodes/"):
                return self._send(404, {"message": "not served by the stand-in API"})
            name = self.path.rsplit("/", 1)[1]
            if not self.etcd.get(NODES_PREFIX + name):
                return self._send(404, {"message": f"node {name} not found"})
            self.etcd.delete(NODES_PREFIX + name)
            return self._send(200, {"deleted": name})
        except Exception as exc:  # noqa: BLE001 - one answer per request
            return self._send(500, {"message": str(exc)})

    def do_POST(self):  # noqa: N802
        try:
            body = self._body()
            if self.path == "/bake-standin/v1/bootstrap":
                if not self._token():
                    return self._send(401, {"message": "bootstrap token unknown or expired"})
                answer = {"cluster_configuration":
                          json.loads(self.etcd.get(CONFIG_KEY))["ClusterConfiguration"]}
                if body.get("role") == "control-plane":
                    answer["kubeadm_certs"] = self.etcd.get(CERTS_KEY)
                    members = json.loads(etcdctl([self.etcd.endpoints[0]], "member", "list",
                                                 "-w", "json").stdout).get("members", [])
                    answer["etcd_endpoints"] = sorted(
                        u for m in members if not m.get("isLearner")
                        for u in m.get("clientURLs", []))
                return self._send(200, answer)
            if self.path == "/bake-standin/v1/csr":
                if not self._token():
                    return self._send(401, {"message": "bootstrap token unknown or expired"})
                cert = sign_csr(body["csr"], lambda s: "system:node:" in s)
                register_node(self.etcd, body["node"], body.get("ip", ""), "worker",
                              body.get("version"))
                return self._send(201, {"certificate": cert})
            if self.path.startswith("/bake-standin/v1/nodes/") and \
                    self.path.endswith("/cordon"):
                if not self._admin():
                    return self._send(403, {"message": "needs an admin client certificate"})
                name = self.path.split("/")[4]
                known = self.etcd.get(NODES_PREFIX + name)
                if not known:
                    return self._send(404, {"message": f"node {name} not found"})
                record = {**json.loads(known), "unschedulable": True}
                self.etcd.put(NODES_PREFIX + name, json.dumps(record))
                return self._send(200, record)
            if self.path == "/bake-standin/v1/nodes":
                client = self._client()
                if not client or not client.get("commonName", "").startswith("system:node:"):
                    return self._send(401, {"message": "kubelet client certificate required"})
                name = client["commonName"].split(":", 2)[2]
                known = self.etcd.get(NODES_PREFIX + name)
                record = json.loads(known) if known else {"name": name, "ip": body.get("ip", ""),
                                                          "role": "worker"}
                record["seen"] = time.time()
                self.etcd.put(NODES_PREFIX + name, json.dumps(record))
                return self._send(201, {"name": name})
            if self.path == "/bake-standin/v1/apply":
                if not self._admin():
                    return self._send(403, {"message": "apply needs an admin client certificate"})
                docs = [d for d in yaml.safe_load_all(body["manifest"]) if d]
                names = []
                for d in docs:
                    key = f"{d.get('kind')}/{d.get('metadata', {}).get('namespace', '')}/" \
                          f"{d.get('metadata', {}).get('name')}"
                    self.etcd.put(APPLIED_PREFIX + key, json.dumps(d))
                    names.append(key)
                return self._send(200, {"applied": names})
            return self._send(404, {"message": "not served by the stand-in API"})
        except EtcdUnavailable as exc:
            return self._send(503, {"message": str(exc)})
        except Fail as exc:
            return self._send(400, {"message": str(exc)})
        except Exception as exc:  # noqa: BLE001
            return self._send(500, {"message": str(exc)})


def etcd_healthy(etcd):
    try:
        with urllib.request.urlopen(f"{etcd.endpoints[0]}/health", context=etcd.ctx,
                                    timeout=3) as resp:
            return json.loads(resp.read()).get("health") == "true"
    except (OSError, ValueError):
        return False


def serve_api(args):
    flags = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
    Api.etcd = Etcd([flags["etcd-servers"]])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(flags["tls-cert-file"], flags["tls-private-key-file"])
    ctx.load_verify_locations(flags["client-ca-file"])
    ctx.verify_mode = ssl.CERT_OPTIONAL
    server = ThreadingHTTPServer((flags["advertise-address"], int(flags.get("secure-port", 6443))),
                                 Api)
    server.daemon_threads = True
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    say(f"stand-in API health endpoint on https://{flags['advertise-address']}:"
        f"{flags.get('secure-port', 6443)} (not kube-apiserver)")
    server.serve_forever()


# ---------------------------------------------------------------- kubelet


def etcd_binary(ref):
    """The etcd binary of the etcd image: Debian's etcd, carried in the image stand-in."""
    if os.environ.get("BAKE_STANDIN_ETCD"):
        return os.environ["BAKE_STANDIN_ETCD"]
    target = KUBELET_DIR / "bake-standin" / hashlib.sha256(ref.encode()).hexdigest()[:12] / "etcd"
    if target.exists():
        return str(target)
    manifest = json.loads(IMAGE_MANIFEST.read_text())
    archive = next(i["archive"] for i in manifest["images"] if i["ref"] == ref)
    with tarfile.open(ROOT / archive.lstrip("/")) as outer:
        index = json.load(outer.extractfile("index.json"))
        digest = index["manifests"][0]["digest"].split(":", 1)[1]
        image_manifest = json.load(outer.extractfile(f"blobs/sha256/{digest}"))
        for layer in image_manifest["layers"]:
            blob = outer.extractfile(f"blobs/sha256/{layer['digest'].split(':', 1)[1]}")
            with tarfile.open(fileobj=blob, mode="r:gz") as inner:
                for member in inner.getmembers():
                    if member.name.lstrip("./") == "usr/local/bin/etcd":
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(inner.extractfile(member).read())
                        target.chmod(0o755)
                        return str(target)
    raise Fail(f"image {ref} carries no usr/local/bin/etcd")


def kubelet(args):
    if args and args[0] in ("--version", "version"):
        print(f"Kubernetes v{KUBERNETES_VERSION}")
        return
    if args and args[0] in ("-h", "--help"):
        print(NOTE)
        return
    if args and args[0] == "--bake-standin-apiserver":
        serve_api(args[1:])
        return
    say(f"kubelet stand-in v{KUBERNETES_VERSION}: runs the static pods in {MANIFESTS}")
    running = {}
    stopping = threading.Event()

    def stop(*_):
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    last_register = 0.0
    while not stopping.is_set():
        wanted = {}
        for path in sorted(MANIFESTS.glob("*.yaml")) if MANIFESTS.is_dir() else []:
            try:
                spec = yaml.safe_load(path.read_text())["spec"]["containers"][0]
            except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
                continue
            wanted[path.stem] = spec
        for name in list(running):
            if name not in wanted:
                say(f"stopping static pod {name}")
                running.pop(name).terminate()
        for name, spec in wanted.items():
            proc = running.get(name)
            if proc is not None and proc.poll() is None:
                continue
            if proc is not None:
                say(f"static pod {name} exited ({proc.returncode}); restarting")
            argv = pod_argv(name, spec)
            if argv is None:
                continue
            log = open(KUBELET_DIR / f"pod-{name}.log", "ab") if KUBELET_DIR.exists() else None
            running[name] = subprocess.Popen(argv, stdout=log, stderr=log)
            say(f"started static pod {name} ({spec['image']})")
            record_pods(running)
        if time.monotonic() - last_register > 30 and (K8S / "kubelet.conf").exists():
            last_register = time.monotonic()
            heartbeat()
        stopping.wait(1.0)
    for proc in running.values():
        proc.terminate()
    for proc in running.values():
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def pod_argv(name, spec):
    command = spec.get("command") or []
    if name == "etcd":
        return [etcd_binary(spec["image"]), *command[1:]]
    if name == "kube-apiserver":
        return [sys.executable, os.path.abspath(sys.argv[0]), "--bake-standin-as", "kubelet",
                "--bake-standin-apiserver", *command[1:]]
    return None  # controller-manager, scheduler: nothing to run in the stand-in world


def pods_file():
    return KUBELET_DIR / "standin-pods.json"


def record_pods(running):
    """Which static pods run, as ``{name: {"id": 64 hex, "pid": int}}`` (crictl's view)."""
    pods = {name: {"id": hashlib.sha256(f"{name}:{proc.pid}".encode()).hexdigest(),
                   "pid": proc.pid} for name, proc in running.items() if proc.poll() is None}
    if KUBELET_DIR.exists():
        write(pods_file(), json.dumps(pods), 0o644)


def crictl(args):
    """``crictl --version``, ``ps [--name N] [-q]``, ``exec [-i] [-t] ID CMD...``."""
    if not args or args[0] in ("--version", "-v", "version"):
        print(f"crictl version v{CRICTL_VERSION}")
        return
    try:
        pods = json.loads(pods_file().read_text())
    except (OSError, ValueError):
        pods = {}
    alive = {n: p for n, p in pods.items() if Path(f"/proc/{p['pid']}").exists()}
    if args[0] == "ps":
        name = args[args.index("--name") + 1] if "--name" in args else None
        quiet = "-q" in args
        rows = [(p["id"], n) for n, p in sorted(alive.items()) if name is None or name in n]
        if not quiet:
            print(f"CONTAINER{' ' * 5}NAME   ({NOTE}: static pods are host processes)")
        for cid, n in rows:
            print(cid if quiet else f"{cid[:13]} {n}")
        return
    if args[0] == "exec":
        rest = [a for a in args[1:] if a not in ("-i", "-t", "-it", "-ti")]
        if len(rest) < 2 or not any(p["id"].startswith(rest[0]) for p in alive.values()):
            raise Fail(f"crictl exec: no running container {rest[:1]}")
        os.execvp(rest[1], rest[1:])
    raise Fail(f"{NOTE}: only --version, ps and exec")


def heartbeat():
    try:
        doc = yaml.safe_load((K8S / "kubelet.conf").read_text())
        server = doc["clusters"][0]["cluster"]["server"].split("//", 1)[1]
        ca = tempfile.NamedTemporaryFile(delete=False)
        ca.write(unb64(doc["clusters"][0]["cluster"]["certificate-authority-data"]))
        ca.close()
        api(server, "/bake-standin/v1/nodes", {"ip": "", "role": "node"}, ca_file=ca.name,
            client=tls_client_from_kubeconfig(K8S / "kubelet.conf"))
    except (Fail, OSError, ValueError, KeyError) as exc:
        say(f"node status update failed: {exc}")


# ---------------------------------------------------------------- kubectl


def kubectl(args):
    if "version" in args:
        major, minor, _ = KUBERNETES_VERSION.split(".")
        if any(a in ("-o", "--output", "-ojson", "--output=json") for a in args):
            print(json.dumps({"clientVersion": {"major": major, "minor": minor,
                                                "gitVersion": f"v{KUBERNETES_VERSION}",
                                                "gitCommit": "bake-standin",
                                                "platform": "linux"}}, indent=2))
        else:
            print(f"Client Version: v{KUBERNETES_VERSION}")
        return
    if not args or args[0] in ("-h", "--help"):
        print(NOTE)
        return
    config = os.environ.get("KUBECONFIG", str(Path.home() / ".kube/config"))
    rest = []
    i = 0
    while i < len(args):
        if args[i] == "--kubeconfig":
            config = args[i + 1]
            i += 2
            continue
        if args[i].startswith("--kubeconfig="):
            config = args[i].split("=", 1)[1]
        else:
            rest.append(args[i])
        i += 1
    doc = yaml.safe_load(Path(config).read_text())
    server = doc["clusters"][0]["cluster"]["server"].split("//", 1)[1]
    ca = tempfile.NamedTemporaryFile(delete=False)
    ca.write(unb64(doc["clusters"][0]["cluster"]["certificate-authority-data"]))
    ca.close()

    def call(path, body=None, method=None, retry_s=120.0):
        return api(server, path, body, ca_file=ca.name, client=tls_client_from_kubeconfig(config),
                   retry_s=retry_s, method=method)

    namespace = "default"
    for flag in ("-n", "--namespace"):
        if flag in rest:
            namespace = rest[rest.index(flag) + 1]
    kinds = {"configmap": "ConfigMap", "cm": "ConfigMap", "daemonset": "DaemonSet",
             "ds": "DaemonSet", "deployment": "Deployment", "deploy": "Deployment"}
    if rest[:1] == ["create"] and "-f" in rest:
        # kubectl create: an object that exists is refused (AlreadyExists), the rest applied
        path = Path(rest[rest.index("-f") + 1])
        text = path.read_text()
        docs = [json.loads(text)] if path.suffix == ".json" else \
            [d for d in yaml.safe_load_all(text) if d]
        for d in docs:
            meta = d["metadata"]
            try:
                call(f"{OBJECTS}{d['kind']}/{meta.get('namespace', namespace)}/{meta['name']}",
                     retry_s=0)
            except Fail as exc:
                if "HTTP 404" not in str(exc):
                    raise
            else:
                raise Fail(f'Error from server (AlreadyExists): {d["kind"].lower()}s '
                           f'"{meta["name"]}" already exists')
        answer = wait("the API server", lambda: call(
            "/bake-standin/v1/apply", {"manifest": yaml.safe_dump_all(docs)}, retry_s=0), 120, 3)
        for name in answer["applied"]:
            print(f"{name} created (bake stand-in)")
        return
    if rest[:1] == ["apply"] and "-f" in rest:
        manifest = Path(rest[rest.index("-f") + 1]).read_text()
        answer = wait("the API server", lambda: call(
            "/bake-standin/v1/apply", {"manifest": manifest}, retry_s=0), 120, 3)
        for name in answer["applied"]:
            print(f"{name} configured (bake stand-in)")
        return
    if rest[:2] == ["get", "nodes"]:
        nodes = call("/bake-standin/v1/nodes")["items"]
        if "json" in " ".join(rest):
            role = "node-role.kubernetes.io/control-plane"
            print(json.dumps({"apiVersion": "v1", "kind": "List", "items": [{
                "metadata": {"name": n["name"],
                             "labels": {role: ""} if n.get("role") == "control-plane" else {}},
                "spec": {"unschedulable": bool(n.get("unschedulable"))},
                "status": {"nodeInfo": {"kubeletVersion": n.get("kubeletVersion", "")}}}
                for n in nodes]}, indent=2))
            return
        print("NAME  ROLE  IP  VERSION")
        for n in nodes:
            print(f"{n['name']}  {n.get('role', '')}  {n.get('ip', '')}  "
                  f"{n.get('kubeletVersion', '')}")
        return
    if rest[:1] == ["get"] and len(rest) > 2 and rest[1] in kinds:
        print(json.dumps(call(f"{OBJECTS}{kinds[rest[1]]}/{namespace}/{rest[2]}"), indent=2))
        return
    if rest[:2] == ["rollout", "status"] and len(rest) > 2:
        # no pods run under the stand-ins: "rolled out" means applied (the object exists)
        kind, _, name = rest[2].partition("/")
        kinds.update({"statefulset": "StatefulSet", "sts": "StatefulSet"})
        try:
            call(f"{OBJECTS}{kinds[kind]}/{namespace}/{name}", retry_s=0)
        except Fail as exc:
            if "HTTP 404" in str(exc):
                raise Fail(f'{kind}s.apps "{name}" not found') from None
            raise
        print(f'{kind} "{name}" successfully rolled out (bake stand-in: no pods run here)')
        return
    if rest[:1] == ["replace"] and "-f" in rest:
        obj = json.loads(Path(rest[rest.index("-f") + 1]).read_text())
        meta = obj["metadata"]
        call(f"{OBJECTS}{obj['kind']}/{meta.get('namespace', namespace)}/{meta['name']}", obj,
             method="PUT")
        print(f"{obj['kind'].lower()}/{meta['name']} replaced (bake stand-in)")
        return
    if rest[:2] == ["set", "image"] and len(rest) > 3:
        kind, _, name = rest[2].partition("/")
        container, _, ref = rest[3].partition("=")
        path = f"{OBJECTS}{kinds[kind]}/{namespace}/{name}"
        obj = call(path)
        found = [c for c in obj["spec"]["template"]["spec"]["containers"]
                 if c["name"] == container]
        if not found:
            raise Fail(f'unable to find container named "{container}"')
        found[0]["image"] = ref
        call(path, obj, method="PUT")
        print(f"{kind}/{name} image updated (bake stand-in)")
        return
    if rest[:1] == ["drain"] and len(rest) > 1:
        call(f"/bake-standin/v1/nodes/{rest[1]}/cordon", {})
        print(f"node/{rest[1]} cordoned")
        print(f"node/{rest[1]} drained (bake stand-in: it runs no pods to evict)")
        return
    if rest[:2] == ["delete", "node"] and len(rest) > 2:
        try:
            call(f"/bake-standin/v1/nodes/{rest[2]}", method="DELETE", retry_s=60)
        except Fail as exc:
            if "HTTP 404" in str(exc) and "--ignore-not-found" in rest:
                return
            raise
        print(f'node "{rest[2]}" deleted')
        return
    raise Fail(f"{NOTE}: unsupported arguments: {' '.join(args)}")


# ---------------------------------------------------------------- entry


def main():
    global NAME, NOTE
    args = sys.argv[1:]
    if args[:1] == ["--bake-standin-as"]:
        NAME, args = args[1], args[2:]
    else:
        NAME = Path(sys.argv[0]).name
    NOTE = f"bake test stand-in, not the real {NAME}"
    try:
        {"kubeadm": kubeadm, "kubelet": kubelet, "kubectl": kubectl, "crictl": crictl}[NAME](args)
    except KeyError:
        print(f"{NOTE}: unknown tool name", file=sys.stderr)
        sys.exit(1)
    except Fail as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


NAME = "kubeadm"
NOTE = "bake test stand-in"
if __name__ == "__main__":
    main()
