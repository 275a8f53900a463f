"""``bake_node.upgrade``: which joins the version skew policy allows, the ClusterConfiguration
raised before a newer control plane's join, and kube-proxy held back while an older control
plane remains (a recording stand-in for kubectl; the real-etcd run is
tests/localcluster/test_upgrade_standins.py)."""

from __future__ import annotations

import json

import pytest
import yaml

from bake_node import upgrade
from bake_node.errors import NodeError


@pytest.mark.parametrize(("cluster", "mine", "action"), [
    ("v1.30.12", "1.30.12", "same"),
    ("v1.30.12", "1.30.14", "raise"),   # a newer patch: its images are the ones baked
    ("v1.30.12", "1.31.8", "raise"),    # the next minor
])
def test_joins_the_skew_policy_allows(cluster, mine, action):
    assert upgrade.join_action(cluster, mine) == action


@pytest.mark.parametrize(("cluster", "mine", "reason"), [
    ("v1.31.8", "1.30.12", "never joins at an older version"),
    ("v1.30.12", "1.30.2", "never joins at an older version"),
    ("v1.30.12", "1.32.1", "one minor at most"),
    ("v1.30.12", "2.0.0", "one minor at most"),
])
def test_joins_it_refuses_name_the_reason(cluster, mine, reason):
    with pytest.raises(upgrade.SkewError, match=reason):
        upgrade.join_action(cluster, mine)


class FakeKubectl:
    """Answers ``get``/``replace``/``set image`` from an in-memory object set."""

    def __init__(self, version="v1.30.12", nodes=()):
        self.objects = {
            ("configmap", "kubeadm-config"): {
                "kind": "ConfigMap", "metadata": {"name": "kubeadm-config",
                                                  "resourceVersion": "7"},
                "data": {"ClusterConfiguration": yaml.safe_dump(
                    {"kind": "ClusterConfiguration", "kubernetesVersion": version,
                     "clusterName": "demo"})}},
            ("daemonset", "kube-proxy"): {"spec": {"template": {"spec": {"containers": [
                {"name": "kube-proxy", "image": "registry.k8s.io/kube-proxy:v1.30.12"}]}}}},
            ("deployment", "coredns"): {"spec": {"template": {"spec": {"containers": [
                {"name": "coredns", "image": "registry.k8s.io/coredns/coredns:v1.11.3"}]}}}},
        }
        self.nodes = list(nodes)
        self.calls = []

    def run_kubectl(self, args, kubeconfig=None, timeout=900.0):
        self.calls.append(args)
        if args[:2] == ["get", "nodes"]:
            return json.dumps({"items": self.nodes})
        if args[0] == "get":
            return json.dumps(self.objects[(args[1], args[2])])
        if args[0] == "replace":
            with open(args[2]) as f:
                obj = json.load(f)
            self.objects[(obj["kind"].lower(), obj["metadata"]["name"])] = obj
            return ""
        if args[:2] == ["set", "image"]:
            kind, name = args[2].split("/")
            container, ref = args[3].split("=")
            self.objects[(kind, name)]["spec"]["template"]["spec"]["containers"][0]["image"] = ref
            return ""
        raise AssertionError(args)


def _node(name, version, control_plane=True):
    labels = {upgrade.CONTROL_PLANE_LABEL: ""} if control_plane else {}
    return {"metadata": {"name": name, "labels": labels},
            "status": {"nodeInfo": {"kubeletVersion": version}}}


def test_a_newer_control_plane_raises_the_cluster_configuration_keeping_the_rest(tmp_path):
    k = FakeKubectl()
    api = upgrade.ClusterApi(k, tmp_path / "admin.conf")
    assert upgrade.raise_cluster_version(api, "1.31.8", tmp_path) == "v1.30.12"
    cm = k.objects[("configmap", "kubeadm-config")]
    assert cm["metadata"]["resourceVersion"] == "7"  # replace is refused if it changed meanwhile
    assert yaml.safe_load(cm["data"]["ClusterConfiguration"]) == {
        "kind": "ClusterConfiguration", "kubernetesVersion": "v1.31.8", "clusterName": "demo"}
    assert list(tmp_path.glob("*.json")) == []  # the replaced object's file is gone
    # the next control plane of the same image changes nothing
    assert upgrade.raise_cluster_version(api, "1.31.8", tmp_path) is None
    assert [c[0] for c in k.calls] == ["get", "replace", "get"]


def test_kube_proxy_waits_for_the_last_control_plane_and_workers_do_not_count(tmp_path):
    refs = {"kube-proxy": "registry.k8s.io/kube-proxy:v1.31.8",
            "coredns": "registry.k8s.io/coredns/coredns:v1.11.3"}
    k = FakeKubectl(nodes=[_node("cp-a", "v1.31.8"), _node("cp-b", "v1.30.12"),
                           _node("w-1", "v1.30.12", control_plane=False)])
    api = upgrade.ClusterApi(k, tmp_path / "admin.conf")
    with pytest.raises(NodeError, match=r"not at v1\.31\.8 yet: cp-b \(v1\.30\.12\)"):
        upgrade.upgrade_addons(api, "1.31.8", refs)
    assert not any(c[0] == "set" for c in k.calls)
    k.nodes[1] = _node("cp-b", "v1.31.8")
    assert upgrade.upgrade_addons(api, "1.31.8", refs) == [
        "daemonset/kube-proxy: registry.k8s.io/kube-proxy:v1.30.12 -> "
        "registry.k8s.io/kube-proxy:v1.31.8"]
    assert upgrade.upgrade_addons(api, "1.31.8", refs) == []


def test_without_kube_proxy_only_coredns_follows(tmp_path):
    """kubeProxyReplacement (Cilium serves Services): kubeadm init installed no kube-proxy, so
    the roll does not look for one; CoreDNS still follows the control planes."""
    refs = {"kube-proxy": "registry.k8s.io/kube-proxy:v1.31.8",
            "coredns": "registry.k8s.io/coredns/coredns:v1.11.3"}
    k = FakeKubectl(nodes=[_node("cp-a", "v1.31.8")])
    del k.objects[("daemonset", "kube-proxy")]
    api = upgrade.ClusterApi(k, tmp_path / "admin.conf")
    assert upgrade.upgrade_addons(api, "1.31.8", refs, without_kube_proxy=True) == []
    assert not any("kube-proxy" in " ".join(map(str, c)) for c in k.calls)


class FakeEtcd:
    """Members by name; ``down`` names do not answer; the leader is ``leader``."""

    def __init__(self, names, leader, down=(), busy=0):
        from bake_node.etcd import Member

        self.members_ = [Member(id=f"{i + 1:x}", name=n, peer_urls=(f"https://{n}:2380",),
                                client_urls=(f"https://{n}:2379",)) for i, n in enumerate(names)]
        self.leader_, self.down, self.busy, self.calls = leader, set(down), busy, []

    def members(self):
        return list(self.members_)

    def healthy(self, m):
        return m.name not in self.down

    def leader(self, m):
        return next(x.id for x in self.members_ if x.name == self.leader_)

    def move_leader(self, leader, to_id):
        self.calls.append(("move-leader", leader.name, to_id))
        self.leader_ = next(x.name for x in self.members_ if x.id == to_id)

    def remove(self, member_id):
        if self.busy:  # etcd's strict reconfiguration check right after a join
            self.busy -= 1
            raise NodeError("etcdctl member failed: ['Error: etcdserver: unhealthy cluster']")
        self.calls.append(("remove", member_id))
        self.members_ = [m for m in self.members_ if m.id != member_id]


def test_a_leaving_leader_hands_leadership_over_before_its_member_is_removed(monkeypatch):
    monkeypatch.setattr(upgrade.time, "sleep", lambda s: None)
    etcd = FakeEtcd(["old", "a", "new"], leader="old", busy=2)
    out = upgrade.remove_member(etcd, "old", keep="new")
    assert etcd.calls == [("move-leader", "old", "3"), ("remove", "1")]
    assert out == "etcd member old (1) removed; leadership moved to new; 2 members left"
    assert upgrade.remove_member(etcd, "old") == "etcd member old: already removed"


def test_a_member_is_not_removed_when_the_rest_would_lack_quorum():
    etcd = FakeEtcd(["old", "a", "b", "c"], leader="a", down=("b", "c"))
    with pytest.raises(NodeError, match=r"only 1 of the other 3 voting members are healthy "
                                        r"\(quorum 2\)"):
        upgrade.remove_member(etcd, "old")
    assert etcd.calls == []
