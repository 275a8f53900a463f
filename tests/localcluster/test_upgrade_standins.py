"""An upgrade by node replacement, on the node side, against the REAL etcd (Debian's
etcd-server run by the VM-cluster stand-ins of kubeadm and kubelet, tools/standin_k8s.py, one
release per node) and the embedded AWS.

What ``bake upgrade`` drives, step by step as it does it: two control planes of a 1.30 image
form a cluster; a control plane of a 1.31 image joins it, raising the cluster's
ClusterConfiguration to 1.31 first under the lease (without that, kubeadm's KubeletVersion
preflight check refuses the join, and its static pods would be 1.30 images this image does not
hold); each old control plane is drained from a new one (``bake-node drain``), its etcd member
is removed from there (``bake-node etcd-remove``, leadership moved away first), and its Node
object is deleted once it is gone (``bake-node delete-node``); kube-proxy is refused while a
1.30 control plane is left and follows once none is (``bake-node upgrade-addons``, which then
re-applies the CNI from the new image). A control
plane of the old image is then refused with the reason, and the keys written before the roll
are all there.
"""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from tests.support import standin_nodes

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("etcd") is None or shutil.which("etcdctl") is None,
                       reason="Debian's etcd-server and etcd-client (make deb-deps)"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed"),
]


ENDPOINT = "127.0.0.20"  # the API load balancer (standin_nodes.TcpBalancer)


@pytest.fixture
def lab(aws, tmp_path):
    lab = standin_nodes.make_lab(aws, tmp_path, ("1.30", "1.31"))
    balancer = standin_nodes.TcpBalancer(ENDPOINT, 6443,
                                         [f"127.0.0.2{n}:6443" for n in range(1, 6)])
    yield lab
    balancer.stop()
    lab.stop_all()


def _replace(lab, old: int, via: int) -> None:
    """Old control plane ``old`` leaves as ``bake upgrade`` makes it: drained from a new control
    plane, its etcd member removed from there (leadership moved first when it leads), then its
    instance terminated and, once gone, its Node object deleted."""
    out, _, _ = lab.node(via, ENDPOINT, "drain", f"node-{old}", minor="1.31")
    assert f"node/node-{old} drained" in out
    out, _, _ = lab.node(via, ENDPOINT, "etcd-remove", f"node-{old}", minor="1.31")
    assert out.startswith(f"etcd member node-{old} (") and "removed;" in out, out
    standin_nodes.stop_kubelet(lab.root(old))
    out, _, _ = lab.node(via, ENDPOINT, "delete-node", f"node-{old}", minor="1.31")
    assert f'node "node-{old}" deleted' in out


def test_a_newer_control_plane_raises_the_cluster_version_then_the_old_ones_are_replaced(lab):
    old, new = (lab.gens[m].release.kubernetes_version for m in ("1.30", "1.31"))
    out, _, _ = lab.node(1, ENDPOINT, minor="1.30")
    assert out.strip() == "bake-node: init"
    out, _, _ = lab.node(2, ENDPOINT, minor="1.30")
    assert out.strip() == "bake-node: join"
    for i in range(10):
        lab.etcdctl(1, "put", f"/registry/demo/key-{i}", f"value-{i}")

    out, state, _ = lab.node(3, ENDPOINT, minor="1.31")
    assert out.strip() == "bake-node: join"
    assert state["raised_cluster_version"] == {"from": f"v{old}", "to": f"v{new}"}
    apiserver = yaml.safe_load((lab.root(3) / "etc/kubernetes/manifests/kube-apiserver.yaml")
                               .read_text())
    assert apiserver["spec"]["containers"][0]["image"].endswith(f":v{new}")
    # the old control planes keep their own static pods
    apiserver = yaml.safe_load((lab.root(1) / "etc/kubernetes/manifests/kube-apiserver.yaml")
                               .read_text())
    assert apiserver["spec"]["containers"][0]["image"].endswith(f":v{old}")

    # kube-proxy may not be newer than an API server: refused while 1.30 control planes remain
    _, _, proc = lab.node(3, ENDPOINT, "upgrade-addons", minor="1.31", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"bake-node: error: control planes not at v{new} yet: node-1 (v{old}), node-2 "
        f"(v{old}); kube-proxy and CoreDNS follow once every control plane is replaced")

    _replace(lab, 1, via=3)
    out, state, _ = lab.node(4, ENDPOINT, minor="1.31")
    assert out.strip() == "bake-node: join"
    assert "raised_cluster_version" not in state  # already at 1.31
    _replace(lab, 2, via=3)

    # then the CNI (and the add-ons node.yaml enables) at the new image's versions, re-applied
    out, _, _ = lab.node(3, ENDPOINT, "upgrade-addons", minor="1.31")
    assert out.strip().splitlines() == [
        f"daemonset/kube-proxy: registry.k8s.io/kube-proxy:v{old} -> "
        f"registry.k8s.io/kube-proxy:v{new}", "re-applied: flannel v0.25.6 ready"]
    out, _, _ = lab.node(4, ENDPOINT, "upgrade-addons", minor="1.31")
    assert out.strip().splitlines() == [f"kube-proxy and CoreDNS already at v{new}",
                                        "re-applied: flannel v0.25.6 ready"]

    members = json.loads(lab.etcdctl(3, "member", "list", "-w", "json"))["members"]
    assert sorted(m["name"] for m in members) == ["node-3", "node-4"]
    # what `bake upgrade` reads between its steps, recorded on demand
    out, _, _ = lab.node(4, ENDPOINT, "etcd-status", minor="1.31")
    assert sorted(out.strip().split("\n")) == ["node-3 voter healthy", "node-4 voter healthy"]
    item = lab.clients.client("dynamodb").get_item(TableName="bake-demo", Key={
        "pk": {"S": "etcd-status"}})["Item"]
    assert sorted(m["name"] for m in json.loads(item["members"]["S"])) == ["node-3", "node-4"]
    assert lab.etcdctl(4, "get", "/registry/demo/key-7", "--print-value-only").strip() == \
        "value-7"

    # a control plane of the old image (a stale launch template) never joins the newer cluster
    _, state, proc = lab.node(5, ENDPOINT, minor="1.30", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"bake-node: error: this image is Kubernetes {old} but the cluster runs v{new}: a "
        "control plane never joins at an older version; the launch template names a stale "
        "image (`bake upgrade` sets the new one)")
    assert state["phases"]["bootstrap"]["status"] == "failed"
    members = json.loads(lab.etcdctl(3, "member", "list", "-w", "json"))["members"]
    assert sorted(m["name"] for m in members) == ["node-3", "node-4"]


def test_status_names_the_images_the_running_vms_booted():
    """`bake status --local` after and during `bake upgrade --local`: the images the running VMs
    booted, not the one the cluster was launched with."""
    from bake.status import local_images

    launch, target = "/d/images/1.30.12-amd64-x", "/d/images/1.31.8-amd64-y"
    state = {"image_dir": launch, "nodes": [
        {"instance_id": "i-1", "image_dir": launch, "terminated": 1.0},
        {"instance_id": "i-2", "image_dir": target},
        {"instance_id": "i-3"},  # recorded before VMs kept their image: the launch image
    ]}
    assert local_images(state) == f"{launch}, {target}"
    state["nodes"][2]["terminated"] = 2.0
    assert local_images(state) == target
    assert local_images({"image_dir": launch, "nodes": []}) == launch
