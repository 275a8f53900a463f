"""The VM-cluster stand-ins (tools/standin_k8s.py) on one host, against the REAL etcd.

Three "nodes" share this host: each has its own root directory (BAKE_STANDIN_ROOT) and its own
loopback address (127.0.0.11-13), and starts its kubelet stand-in as a process instead of
through systemd. kubeadm init, a control-plane join (etcd learner, then promoted) and a worker
join run with the node agent's own kubeadm configuration templates; the etcd they form is
Debian's etcd-server, taken out of the etcd image stand-in exactly as on a VM. This is the
fast check of what `bake launch --local` runs inside its VMs.
"""

from __future__ import annotations

import calendar
import json
import os
import shutil
import subprocess
import time

import pytest
from tests.support import standin_nodes

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("etcd") is None or shutil.which("etcdctl") is None,
                       reason="Debian's etcd-server and etcd-client (make deb-deps)"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed"),
]
ENDPOINT = "127.0.0.11:6443"
INIT_TOKEN = "abcdef.0123456789abcdef"  # the token kubeadm init registers (bootstrapTokens)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    import standins

    work = tmp_path_factory.mktemp("standin-cluster")
    gen = standins.generate("1.31", "amd64", work / "gen", flavor="cluster")
    bindir = work / "bin"
    bindir.mkdir()
    for tool in ("kubeadm", "kubelet", "kubectl"):
        src = next(gen.mirror.rglob(f"bin/linux/amd64/{tool}"))
        shutil.copy(src, bindir / tool)
        (bindir / tool).chmod(0o755)
    crictl = next(gen.mirror.rglob("crictl-*.tar.gz"))
    subprocess.run(["tar", "-xzf", str(crictl), "-C", str(bindir), "crictl"], check=True)
    etcd_image = gen.release.image("etcd")
    nodes = {}
    for n in (1, 2, 3):
        root = work / f"node{n}"
        images = root / "var/lib/bake/images"
        images.mkdir(parents=True)
        shutil.copy(gen.mirror / etcd_image.archive_path, images / "etcd.tar")
        (root / "etc/bake").mkdir(parents=True)
        (root / "etc/bake/image-manifest.json").write_text(json.dumps({"images": [
            {"name": "etcd", "ref": etcd_image.ref, "archive": "/var/lib/bake/images/etcd.tar"}
        ]}))
        env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "BAKE_STANDIN_ROOT":
               str(root), "BAKE_STANDIN_SYSTEMD": "0", "BAKE_STANDIN_LOOPBACK": "0"}
        nodes[n] = {"root": root, "env": env, "ip": f"127.0.0.1{n}", "name": f"node-{n}"}
    yield gen, nodes
    for node in nodes.values():
        standin_nodes.stop_kubelet(node["root"])


def _run(node, *args, timeout=300):
    proc = subprocess.run(args, capture_output=True, text=True, env=node["env"], timeout=timeout)
    assert proc.returncode == 0, f"{args}: {proc.stderr[-3000:]}"
    return proc


def _config(node, kind, tmp_path, **values):
    from bake_node.kubeadm import render_config

    text, _ = render_config(kind, "1.31.8", node_name=node["name"],
                            advertise_address=node["ip"], control_plane_endpoint=ENDPOINT,
                            **values)
    path = tmp_path / f"{node['name']}-{kind}.yaml"
    path.write_text(text)
    return path


def _members(node):
    pki = node["root"] / "etc/kubernetes/pki"
    out = subprocess.run(
        ["etcdctl", "--endpoints", f"https://{node['ip']}:2379", "--cacert",
         str(pki / "etcd/ca.crt"), "--cert", str(pki / "apiserver-etcd-client.crt"), "--key",
         str(pki / "apiserver-etcd-client.key"), "member", "list", "-w", "json"],
        capture_output=True, text=True, check=True).stdout
    return json.loads(out)["members"]


def test_init_control_plane_join_worker_join_and_reset(cluster, tmp_path):
    gen, nodes = cluster
    cert_key = "ab" * 32
    init = _config(nodes[1], "init", tmp_path, cluster_name="lab", pod_cidr="10.244.0.0/16",
                   service_cidr="10.96.0.0/12", cert_sans=["127.0.0.11"],
                   certificate_key=cert_key, init_token=INIT_TOKEN, bootstrap_token_ttl=900)
    _run(nodes[1], "kubeadm", "init", "--config", str(init), "--upload-certs")
    pki1 = nodes[1]["root"] / "etc/kubernetes/pki"
    for name in ("ca.crt", "ca.key", "apiserver.crt", "etcd/ca.crt", "etcd/server.crt",
                 "apiserver-etcd-client.crt", "sa.key", "front-proxy-ca.crt"):
        assert (pki1 / name).is_file(), name
    for conf in ("admin.conf", "kubelet.conf", "controller-manager.conf", "scheduler.conf"):
        assert (nodes[1]["root"] / "etc/kubernetes" / conf).is_file(), conf
    (member,) = _members(nodes[1])
    assert member["name"] == "node-1" and not member.get("isLearner")

    # init registered the configured token with the configured lifetime, not kubeadm's 24 h
    listed = [json.loads(line) for line in _run(
        nodes[1], "kubeadm", "token", "list", "-o", "json").stdout.splitlines() if line.strip()]
    (entry,) = [t for t in listed if t["token"] == INIT_TOKEN]
    expires = calendar.timegm(time.strptime(entry["expires"], "%Y-%m-%dT%H:%M:%SZ"))
    assert 0 < expires - time.time() <= 900

    # the etcd member cleanup's Run Command script works against the stand-in's static pod
    from bake.lambdas.etcd_member_cleanup import ETCDCTL

    script = ETCDCTL.replace("127.0.0.1", nodes[1]["ip"]) + "member list -w json"
    out = _run(nodes[1], "sh", "-c", script.replace("/etc/kubernetes", str(
        nodes[1]["root"] / "etc/kubernetes")))
    assert [m["name"] for m in json.loads(out.stdout)["members"]] == ["node-1"]

    out = _run(nodes[1], "kubeadm", "token", "create", "--print-join-command", "--ttl", "600s")
    words = out.stdout.split()
    token = words[words.index("--token") + 1]
    ca_hash = words[words.index("--discovery-token-ca-cert-hash") + 1]
    assert words[:3] == ["kubeadm", "join", ENDPOINT] and ca_hash.startswith("sha256:")

    join = _config(nodes[2], "join", tmp_path, token=token, ca_hash=ca_hash, control_plane=True,
                   certificate_key=cert_key)
    for phase in ("download-certs", "certs"):
        _run(nodes[2], "kubeadm", "join", "phase", "control-plane-prepare", phase,
             "--config", str(join))
    _run(nodes[2], "kubeadm", "join", "--config", str(join))
    members = {m["name"]: m for m in _members(nodes[1])}
    assert set(members) == {"node-1", "node-2"}
    assert not any(m.get("isLearner") for m in members.values())  # promoted

    wrong = _config(nodes[3], "join", tmp_path, token=token, ca_hash="sha256:" + "0" * 64,
                    control_plane=False)
    bad = subprocess.run(["kubeadm", "join", "--config", str(wrong)], capture_output=True,
                         text=True, env=nodes[3]["env"], timeout=120)
    assert bad.returncode == 1 and "none of the public keys" in bad.stderr

    worker = _config(nodes[3], "join", tmp_path, token=token, ca_hash=ca_hash,
                     control_plane=False)
    _run(nodes[3], "kubeadm", "join", "--config", str(worker))
    assert (nodes[3]["root"] / "etc/kubernetes/kubelet.conf").is_file()
    assert not (nodes[3]["root"] / "etc/kubernetes/pki/ca.key").exists()  # workers get no CA key

    manifest = tmp_path / "cni.yaml"
    manifest.write_text("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kube-flannel\n")
    admin = nodes[1]["root"] / "etc/kubernetes/admin.conf"
    applied = _run(nodes[1], "kubectl", "--kubeconfig", str(admin), "apply", "-f", str(manifest))
    assert "Namespace//kube-flannel configured" in applied.stdout
    listed = _run(nodes[1], "kubectl", "--kubeconfig", str(admin), "get", "nodes")
    for n in ("node-1", "node-2", "node-3"):
        assert n in listed.stdout

    reset = _run(nodes[2], "kubeadm", "reset", "--force")
    assert "etcd member removed" in reset.stderr, reset.stderr
    assert [m["name"] for m in _members(nodes[1])] == ["node-1"]
    assert not (nodes[2]["root"] / "etc/kubernetes/pki").exists()
