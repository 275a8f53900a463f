"""Stand-ins for ``kubeadm``, ``kubectl`` and ``etcdctl`` (Kubernetes binaries cannot be
downloaded here). NOT the real tools: they check the flags and config files the agent passes,
write the files the real ones write (under a per-node test root), keep a shared "cluster" (CA,
bootstrap tokens with expiry, the uploaded certificate key with its 2 h expiry, etcd members)
in a directory, and append every call as a JSON line (start and end, with times) to a log.

Environment: BAKE_STANDIN_ROOT (this node's root), BAKE_STANDIN_CLUSTER (shared dir),
BAKE_STANDIN_LOG (JSON lines), BAKE_STANDIN_NODE (node label for the log),
BAKE_STANDIN_DELAY_INIT / BAKE_STANDIN_DELAY_JOIN (seconds to sleep inside init / join),
BAKE_STANDIN_CERT_TTL (certificate key lifetime, seconds; default 7200),
BAKE_STANDIN_FAIL_JOIN_AFTER_KUBELET_CONF (join fails after writing kubelet.conf, as a real
join does when the kubelet never becomes healthy).
Usage: ``standin.py kubeadm|kubectl|etcdctl ARGS...``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(os.environ.get("BAKE_STANDIN_ROOT", "/nonexistent"))
CLUSTER = Path(os.environ.get("BAKE_STANDIN_CLUSTER", "/nonexistent"))
K8S = ROOT / "etc" / "kubernetes"
CERT_TTL = float(os.environ.get("BAKE_STANDIN_CERT_TTL", "7200"))


class Fail(Exception):
    pass


def log(event: dict) -> None:
    path = os.environ.get("BAKE_STANDIN_LOG")
    if path:
        event["node"] = os.environ.get("BAKE_STANDIN_NODE", "")
        with open(path, "a") as f:
            f.write(json.dumps(event) + "\n")


@contextlib.contextmanager
def cluster_state():
    """Read-modify-write the shared cluster state under an exclusive lock."""
    CLUSTER.mkdir(parents=True, exist_ok=True)
    with open(CLUSTER / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = CLUSTER / "state.json"
        state = json.loads(path.read_text()) if path.exists() else {}
        yield state
        path.write_text(json.dumps(state, indent=1))


def kubelet_flags(registration: dict) -> None:
    """What kubeadm writes for the kubelet from nodeRegistration.kubeletExtraArgs (a map in
    v1beta3, a list of {name, value} in v1beta4): /var/lib/kubelet/kubeadm-flags.env."""
    found = registration.get("kubeletExtraArgs") or {}
    args = found if isinstance(found, dict) else {a["name"]: a["value"] for a in found}
    line = " ".join(f"--{k}={v}" for k, v in args.items())
    write(ROOT / "var" / "lib" / "kubelet" / "kubeadm-flags.env",
          f'KUBELET_KUBEADM_ARGS="{line}"\n', 0o644)


def write(path: Path, text: str, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def ca_hash(ca: str) -> str:
    return "sha256:" + hashlib.sha256(ca.encode()).hexdigest()


def load_config(path: str, expect: set[str]) -> dict[str, dict]:
    docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    by_kind = {}
    for d in docs:
        api = d.get("apiVersion", "")
        if api not in ("kubeadm.k8s.io/v1beta3", "kubeadm.k8s.io/v1beta4"):
            raise Fail(f"unsupported apiVersion {api!r}")
        by_kind[d["kind"]] = d
    if set(by_kind) != expect:
        raise Fail(f"config kinds {sorted(by_kind)} != {sorted(expect)}")
    cc = by_kind.get("ClusterConfiguration")
    if cc:
        minor = int(cc["kubernetesVersion"].lstrip("v").split(".")[1])
        want = "kubeadm.k8s.io/v1beta3" if minor <= 30 else "kubeadm.k8s.io/v1beta4"
        if cc["apiVersion"] != want:
            raise Fail(f"{cc['kubernetesVersion']} with {cc['apiVersion']} (want {want})")
        if cc["controlPlaneEndpoint"].rsplit(":", 1)[0] not in cc["apiServer"]["certSANs"]:
            raise Fail("control-plane endpoint missing from certSANs")
    return by_kind


def kubeconfig(name: str) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "users": [{"name": name}]})


def add_member(state: dict, name: str) -> None:
    members = state.setdefault("members", [])
    if not any(m["name"] == name for m in members):
        members.append(
            {
                "ID": secrets.randbits(63),
                "name": name,
                "peerURLs": [f"https://{name}:2380"],
                "clientURLs": [f"https://{name}:2379"],
            }
        )


def init_tokens(init: dict) -> dict[str, float]:
    """The bootstrap tokens ``kubeadm init`` creates: ``bootstrapTokens`` (each ``token`` of
    the kubeadm shape, ``ttl`` like ``"900s"``), or kubeadm's one 24 h token when unset."""
    out = {}
    for bt in init.get("bootstrapTokens") or [{"token": "abcdef.0123456789abcdef", "ttl": "24h"}]:
        if not re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", bt.get("token", "")):
            raise Fail(f"bootstrapTokens: invalid token {bt.get('token')!r}")
        m = re.fullmatch(r"(\d+)([smh])", str(bt.get("ttl", "24h")))
        if not m:
            raise Fail(f"bootstrapTokens: invalid ttl {bt.get('ttl')!r}")
        out[bt["token"]] = time.time() + int(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]
    return out


def kubeadm(argv: list[str]) -> str:
    p = argparse.ArgumentParser(prog="kubeadm", exit_on_error=False)
    sub = p.add_subparsers(dest="cmd", required=True)
    init = sub.add_parser("init", exit_on_error=False)
    init.add_argument("phase", nargs="*")
    init.add_argument("--config")
    init.add_argument("--upload-certs", action="store_true")
    init.add_argument("--certificate-key")
    join = sub.add_parser("join", exit_on_error=False)
    join.add_argument("phase", nargs="*")
    join.add_argument("--config", required=True)
    reset = sub.add_parser("reset", exit_on_error=False)
    reset.add_argument("--force", "-f", action="store_true", required=True)
    token = sub.add_parser("token", exit_on_error=False)
    token.add_argument("action", choices=["create"])
    token.add_argument("--print-join-command", action="store_true", required=True)
    token.add_argument("--ttl", required=True)
    args = p.parse_args(argv)

    if args.cmd == "reset":
        shutil.rmtree(K8S, ignore_errors=True)
        return "[reset] done\n"
    if args.cmd == "token":
        if not (K8S / "admin.conf").exists():
            raise Fail("no admin.conf: not a control plane")
        m = re.fullmatch(r"(\d+)s", args.ttl)
        if not m:
            raise Fail(f"bad --ttl {args.ttl!r}")
        tok = f"{secrets.token_hex(3)}.{secrets.token_hex(8)}"
        with cluster_state() as st:
            st.setdefault("tokens", {})[tok] = time.time() + int(m.group(1))
            ca = st["ca"]
            endpoint = st["endpoint"]
        return (
            f"kubeadm join {endpoint} --token {tok} --discovery-token-ca-cert-hash {ca_hash(ca)}\n"
        )
    if args.cmd == "init" and args.phase:
        if args.phase != ["phase", "upload-certs"] or not args.upload_certs:
            raise Fail(f"unknown init phase {args.phase}")
        if not (K8S / "admin.conf").exists():
            raise Fail("no admin.conf: not a control plane")
        key = args.certificate_key or secrets.token_hex(32)
        with cluster_state() as st:
            st["certificate_key"] = [key, time.time() + CERT_TTL]
        return f"[upload-certs] Using certificate key:\n{key}\n"
    if args.cmd == "init":
        if not args.config or not args.upload_certs:
            raise Fail("init needs --config and --upload-certs")
        cfg = load_config(args.config, {"InitConfiguration", "ClusterConfiguration"})
        if (K8S / "manifests" / "kube-apiserver.yaml").exists():
            raise Fail("[preflight] /etc/kubernetes/manifests/kube-apiserver.yaml already exists")
        key = cfg["InitConfiguration"]["certificateKey"]
        if not re.fullmatch(r"[0-9a-f]{64}", key):
            raise Fail("bad certificateKey")
        ca = f"-----BEGIN CERTIFICATE-----\nSTANDIN {secrets.token_hex(16)}\n-----END CERTIFICATE-----\n"  # noqa: E501
        write(K8S / "pki" / "ca.crt", ca, 0o644)
        write(K8S / "pki" / "ca.key", secrets.token_hex(16))
        time.sleep(float(os.environ.get("BAKE_STANDIN_DELAY_INIT", "0")))
        name = cfg["InitConfiguration"]["nodeRegistration"]["name"]
        for f in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"):
            write(K8S / "manifests" / f"{f}.yaml", f"# standin {f}\n")
        write(K8S / "admin.conf", kubeconfig("kubernetes-admin"))
        write(K8S / "kubelet.conf", kubeconfig(f"system:node:{name}"))
        kubelet_flags(cfg["InitConfiguration"]["nodeRegistration"])
        write(K8S / "pki" / "etcd" / "ca.crt", ca, 0o644)
        write(K8S / "pki" / "apiserver-etcd-client.crt", "standin", 0o644)
        write(K8S / "pki" / "apiserver-etcd-client.key", "standin")
        with cluster_state() as st:
            st.update(
                ca=ca,
                endpoint=cfg["ClusterConfiguration"]["controlPlaneEndpoint"],
                tokens=init_tokens(cfg["InitConfiguration"]),
                certificate_key=[key, time.time() + CERT_TTL],
                members=[],
                initialized_by=name,
                cluster_configuration=cfg["ClusterConfiguration"],
                init_skip_phases=cfg["InitConfiguration"].get("skipPhases", []),
            )
            st["inits"] = st.get("inits", 0) + 1
            add_member(st, name)
        return "Your Kubernetes control-plane has initialized successfully!\n"
    # join (and its control-plane-prepare phases)
    cfg = load_config(args.config, {"JoinConfiguration"})["JoinConfiguration"]
    bt = cfg["discovery"]["bootstrapToken"]
    cp = cfg.get("controlPlane")
    with cluster_state() as st:
        if "ca" not in st:
            raise Fail(
                f"couldn't validate the identity of the API Server at {bt['apiServerEndpoint']}"
            )
        expiry = st.get("tokens", {}).get(bt["token"])
        if expiry is None or expiry < time.time():
            raise Fail("token id not found or expired")  # what kubeadm says in substance
        if bt["caCertHashes"] != [ca_hash(st["ca"])]:
            raise Fail(
                "cluster CA found in cluster-info configmap is invalid: public key pin mismatch"
            )
        if cp is not None:
            key, key_exp = st["certificate_key"]
            if cp["certificateKey"] != key or key_exp < time.time():
                raise Fail(
                    "error downloading certs: the Secret does not include the required "
                    "certificate or key"
                )
        ca = st["ca"]
    name = cfg["nodeRegistration"]["name"]
    if args.phase:
        if (
            args.phase[:2] != ["phase", "control-plane-prepare"]
            or args.phase[2:] not in (["download-certs"], ["certs"])
            or cp is None
        ):
            raise Fail(f"unknown join phase {args.phase}")
        write(K8S / "pki" / "ca.crt", ca, 0o644)
        write(K8S / "pki" / "etcd" / "ca.crt", ca, 0o644)
        write(K8S / "pki" / "apiserver-etcd-client.crt", "standin", 0o644)
        write(K8S / "pki" / "apiserver-etcd-client.key", "standin")
        return f"[control-plane-prepare] {args.phase[2]} done\n"
    if (K8S / "kubelet.conf").exists():
        raise Fail("[preflight] /etc/kubernetes/kubelet.conf already exists")
    time.sleep(float(os.environ.get("BAKE_STANDIN_DELAY_JOIN", "0")))
    write(K8S / "pki" / "ca.crt", ca, 0o644)
    write(K8S / "kubelet.conf", kubeconfig(f"system:node:{name}"))
    kubelet_flags(cfg["nodeRegistration"])
    if os.environ.get("BAKE_STANDIN_FAIL_JOIN_AFTER_KUBELET_CONF"):
        # what kubeadm says when the kubelet it started never becomes healthy
        raise Fail("[kubelet-check] timed out waiting for the condition")
    if cp is not None:
        write(K8S / "admin.conf", kubeconfig("kubernetes-admin"))
        for f in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"):
            write(K8S / "manifests" / f"{f}.yaml", f"# standin {f}\n")
        with cluster_state() as st:
            add_member(st, name)
    with cluster_state() as st:
        st.setdefault("nodes", []).append(name)
    return "This node has joined the cluster\n"


def kubeadm_config(argv: list[str]) -> str:
    """``get configmap kubeadm-config -n kube-system -o json`` and ``replace -f FILE`` of it:
    the ClusterConfiguration init stored (a control plane's join checks its version)."""
    if argv[:1] == ["replace"]:
        cm = json.loads(Path(argv[argv.index("-f") + 1]).read_text())
        with cluster_state() as st:
            st["cluster_configuration"] = yaml.safe_load(cm["data"]["ClusterConfiguration"])
        return "configmap/kubeadm-config replaced\n"
    with cluster_state() as st:
        cluster = st.get("cluster_configuration")
    if cluster is None:
        raise Fail('configmaps "kubeadm-config" not found')
    return json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
                       "data": {"ClusterConfiguration": yaml.safe_dump(cluster)}})


def kubectl(argv: list[str]) -> str:
    verbs = argv[2:] if argv[:1] == ["--kubeconfig"] else argv
    if verbs[:3] == ["get", "configmap", "kubeadm-config"] or verbs[:1] == ["replace"]:
        return kubeadm_config(verbs)
    if verbs[:2] == ["rollout", "status"]:
        return rollout_status(verbs[2:])
    p = argparse.ArgumentParser(prog="kubectl", exit_on_error=False)
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("verb", choices=["apply", "create"])
    p.add_argument("-f", dest="file", required=True)
    p.add_argument("--server-side", action="store_true")
    p.add_argument("--force-conflicts", action="store_true")
    p.add_argument("--field-manager")
    args = p.parse_args(argv)
    if not Path(args.kubeconfig).exists():
        raise Fail(f"kubeconfig {args.kubeconfig} not found")
    docs = [d for d in yaml.safe_load_all(Path(args.file).read_text()) if d]
    with cluster_state() as st:
        for d in docs:
            key = f"{d['kind']}/{d['metadata']['name']}"
            if args.verb == "create":  # what exists is refused, as the API server does
                if key in st.get("created", {}):
                    raise Fail(f'Error from server (AlreadyExists): {d["kind"].lower()}s '
                               f'"{d["metadata"]["name"]}" already exists')
                st.setdefault("created", {})[key] = d
            st.setdefault("applied", []).append(key)
            if args.server_side:
                st.setdefault("server_side", []).append(key)
    return "".join(f"{d['kind'].lower()}/{d['metadata']['name']} created\n" for d in docs)


def rollout_status(argv: list[str]) -> str:
    """``kubectl rollout status KIND/NAME -n NS --timeout=Ns``: rolled out once applied, unless
    the test listed the object in the state's ``not_ready`` (then it times out, as kubectl
    does: "timed out waiting for the condition")."""
    p = argparse.ArgumentParser(prog="kubectl rollout status", exit_on_error=False)
    p.add_argument("target")
    p.add_argument("-n", dest="namespace", default="default")
    p.add_argument("--timeout", required=True)
    args = p.parse_args(argv)
    kind, _, name = args.target.partition("/")
    with cluster_state() as st:
        applied = {a.lower() for a in st.get("applied", [])}
        if f"{kind}/{name}" not in applied:
            raise Fail(f'Error from server (NotFound): {kind}s.apps "{name}" not found')
        if args.target in st.get("not_ready", []):
            raise Fail("error: timed out waiting for the condition")
    return f'{kind} "{name}" successfully rolled out\n'


def etcdctl(argv: list[str]) -> str:
    p = argparse.ArgumentParser(prog="etcdctl", exit_on_error=False)
    for flag in (
        "--endpoints",
        "--dial-timeout",
        "--command-timeout",
        "--cacert",
        "--cert",
        "--key",
    ):
        p.add_argument(flag)
    p.add_argument("words", nargs="+")
    p.add_argument("-w")
    args = p.parse_args(argv)
    with cluster_state() as st:
        members = st.setdefault("members", [])
        if args.words == ["member", "list"] and args.w == "json":
            return json.dumps({"members": members})
        if args.words == ["endpoint", "health"]:
            return f"{args.endpoints} is healthy\n"
        if args.words[:2] == ["member", "remove"] and len(args.words) == 3:
            st["members"] = [m for m in members if format(m["ID"], "x") != args.words[2]]
            return "removed\n"
    raise Fail(f"unsupported etcdctl {args.words}")


def main() -> int:
    tool, argv = sys.argv[1], sys.argv[2:]
    start = time.time()
    log({"event": "start", "tool": tool, "argv": argv, "t": start})
    try:
        out = {"kubeadm": kubeadm, "kubectl": kubectl, "etcdctl": etcdctl}[tool](argv)
        rc = 0
        sys.stdout.write(out)
    except (Fail, argparse.ArgumentError, SystemExit) as exc:
        rc = 1
        print(f"error: {exc}", file=sys.stderr)
    log({"event": "end", "tool": tool, "argv": argv, "start": start, "t": time.time(), "rc": rc})
    return rc


if __name__ == "__main__":
    sys.exit(main())
