"""End to end with processes: bake-node agents (one process per node, each with its own
instance ID) against one moto server, with the stand-in kubeadm/kubectl/etcdctl.

Asserts end states: exactly one init, control-plane joins never overlap, every worker joined,
every secret in SSM a SecureString under the cluster's KMS key; a leader killed mid-init is
replaced; a token that expired before a late worker arrived is rotated and the worker joins.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from bake_node.agent import CLUSTER_KEY


def start(argv, env, **kw):
    return subprocess.Popen(
        argv,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **kw,
    )


def finish(proc, timeout=180):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"bake-node failed ({proc.returncode}):\n{err[-3000:]}"
    return out


def windows(calls, nodes, subcommand):
    """(start, end, node) of finished successful kubeadm <subcommand> calls (no phases)."""
    return sorted(
        (c["start"], c["t"], c["node"])
        for c in calls
        if c["event"] == "end"
        and c["tool"] == "kubeadm"
        and c["rc"] == 0
        and c["argv"][0] == subcommand
        and c["argv"][1] == "--config"
        and c["node"] in nodes
    )


def assert_secrets_encrypted(cluster):
    ssm = cluster.clients().client("ssm")
    params = ssm.describe_parameters()["Parameters"]
    assert {p["Name"].rsplit("/", 1)[1] for p in params} == {
        "token",
        "ca-cert-hash",
        "certificate-key",
        "admin-kubeconfig",
    }
    for p in params:
        assert p["Type"] == "SecureString" and p["KeyId"] == cluster.kms_key_id, p


@pytest.mark.slow
def test_formation_3_control_planes_20_workers(cluster):
    cps = [f"cp-{i}" for i in range(3)]
    workers = [f"w-{i:02d}" for i in range(20)]
    procs = {}
    for name in cps + workers:
        argv, env = cluster.node(name, "control-plane" if name in cps else "worker")
        env["BAKE_STANDIN_DELAY_JOIN"] = "0.5" if name in cps else "0"
        env["BAKE_STANDIN_DELAY_INIT"] = "1"
        procs[name] = start(argv, env)
    outputs = {name: finish(p) for name, p in procs.items()}

    modes = sorted(out.strip() for out in outputs.values())
    assert modes.count("bake-node: init") == 1
    assert modes.count("bake-node: join") == 22
    calls = cluster.standins.calls()
    st = cluster.standins.state()
    assert st["inits"] == 1
    # init and control-plane joins: never two at once (etcd takes one join at a time)
    spans = windows(calls, cps, "init") + windows(calls, cps, "join")
    assert len(spans) == 3
    for (_s1, e1, n1), (s2, _e2, n2) in zip(spans, spans[1:], strict=False):
        assert e1 <= s2, f"{n1} and {n2} overlapped"
    # every worker joined (the stand-in cluster saw it) and recorded it
    assert sorted(n for n in st["nodes"] if n.startswith("w-")) == workers
    assert all(cluster.state(w)["joined"] for w in workers)
    # etcd: three members, each registered against its instance
    assert sorted(m["name"] for m in st["members"]) == cps
    from bake_node.etcd import EtcdMembers

    db = cluster.clients().client("dynamodb")
    registry = EtcdMembers(db, cluster.table, None).registry()
    assert sorted(r["name"] for r in registry.values()) == cps
    item = db.get_item(TableName=cluster.table, Key=CLUSTER_KEY)["Item"]
    assert item["state"]["S"] == "initialized"
    # CNI applied once, by the node that ran init
    assert st["applied"].count("DaemonSet/kube-flannel-ds") == 1
    assert_secrets_encrypted(cluster)
    # a joined node that reboots does nothing
    before = len(cluster.standins.calls())
    argv, env = cluster.node("w-00", "worker", instance_id=cluster.state("w-00")["instance_id"])
    assert finish(start(argv, env)).strip() == "bake-node: noop"
    assert len(cluster.standins.calls()) == before


@pytest.mark.slow
def test_leader_killed_mid_init_is_replaced(cluster):
    argv1, env1 = cluster.node("cp-0", "control-plane", lease_ttl="3")
    env1["BAKE_STANDIN_DELAY_INIT"] = "60"
    leader = start(argv1, env1)
    deadline = time.monotonic() + 60
    while not any(
        c["event"] == "start" and c["argv"][:1] == ["init"] for c in cluster.standins.calls()
    ):
        assert time.monotonic() < deadline and leader.poll() is None, "init never started"
        time.sleep(0.2)
    os.killpg(leader.pid, signal.SIGKILL)  # the node dies mid-init (agent and kubeadm)
    leader.wait()
    argv2, env2 = cluster.node("cp-1", "control-plane", lease_ttl="3")
    argv3, env3 = cluster.node("w-0", "worker")
    second, worker = start(argv2, env2), start(argv3, env3)
    assert finish(second).strip() == "bake-node: init"
    assert finish(worker).strip() == "bake-node: join"
    cp1 = [
        c["argv"][0]
        for c in cluster.standins.calls()
        if c["node"] == "cp-1" and c["event"] == "end" and c["tool"] == "kubeadm"
    ]
    assert cp1[:2] == ["reset", "init"]  # half-done state reset before taking over
    assert cluster.standins.state()["inits"] == 1
    db = cluster.clients().client("dynamodb")
    item = db.get_item(TableName=cluster.table, Key=CLUSTER_KEY)["Item"]
    assert item["initialized_by"]["S"] == cluster.state("cp-1")["instance_id"]
    assert item["fence"]["N"] == "2"
    assert_secrets_encrypted(cluster)


@pytest.mark.slow
def test_expired_token_is_rotated_for_late_nodes(cluster):
    argv, env = cluster.node("cp-0", "control-plane", token_ttl="3")
    assert finish(start(argv, env)).strip() == "bake-node: init"
    time.sleep(3.5)  # the published token has expired
    argv_w, env_w = cluster.node("w-late", "worker")
    late = start(argv_w, env_w)
    # a late control plane too: it must wait without holding the lease the rotation needs
    argv_c, env_c = cluster.node("cp-late", "control-plane")
    late_cp = start(argv_c, env_c)
    time.sleep(2)
    assert late.poll() is None and late_cp.poll() is None  # expired material is never used
    rotate_argv, env = cluster.node(
        "cp-0",
        "control-plane",
        command="rotate",
        instance_id=cluster.state("cp-0")["instance_id"],
        token_ttl="600",
    )
    assert "token" in finish(start(rotate_argv, env))
    assert finish(late).strip() == "bake-node: join"
    assert finish(late_cp).strip() == "bake-node: join"
    assert cluster.state("w-late")["joined"] and cluster.state("cp-late")["joined"]
    # kubeadm init's own (never published), the one published at init, the rotated one
    assert len(cluster.standins.state()["tokens"]) == 3
    assert sorted(m["name"] for m in cluster.standins.state()["members"]) == ["cp-0", "cp-late"]


@pytest.mark.slow
def test_every_token_lives_the_ttl_of_node_yaml(cluster):
    """node.yaml's bootstrapTokenTTLSeconds (from the cluster file's bootstrapToken.ttlMinutes)
    bounds the token kubeadm init creates itself (InitConfiguration bootstrapTokens; kubeadm's
    default would be 24 h) and the published one; the init token is never published."""
    import json

    argv, env = cluster.node("cp-0", "control-plane", node_yaml={"bootstrapTokenTTLSeconds": 900})
    before = time.time()
    assert finish(start(argv, env)).strip() == "bake-node: init"
    tokens = cluster.standins.state()["tokens"]
    assert len(tokens) == 2
    assert all(before + 900 - 1 < expiry < time.time() + 900 + 1 for expiry in tokens.values())
    ssm = cluster.clients().client("ssm")
    published = json.loads(ssm.get_parameter(
        Name=f"{cluster.prefix}/shared/join/token", WithDecryption=True)["Parameter"]["Value"])
    assert published["expires"] - published["issued"] == 900
    assert published["value"] in tokens and len(set(tokens) - {published["value"]}) == 1


@pytest.mark.slow
def test_stale_member_removed_before_control_plane_join(cluster):
    import json

    from bake_node.etcd import EtcdMembers, Member

    argv, env = cluster.node("cp-0", "control-plane")
    assert finish(start(argv, env)).strip() == "bake-node: init"
    # a control plane that died after joining: its member stays, its instance is terminated
    path = cluster.standins.cluster_dir / "state.json"
    st = json.loads(path.read_text())
    st["members"].append(
        {
            "ID": 0xDEAD,
            "name": "cp-dead",
            "peerURLs": ["https://cp-dead:2380"],
            "clientURLs": ["https://cp-dead:2379"],
        }
    )
    path.write_text(json.dumps(st))
    clients = cluster.clients()
    dead = cluster.new_instance()
    EtcdMembers(clients.client("dynamodb"), cluster.table, None).register(
        dead, Member("dead", "cp-dead", ("https://cp-dead:2380",), ("https://cp-dead:2379",))
    )
    clients.client("ec2").terminate_instances(InstanceIds=[dead])

    argv, env = cluster.node("cp-1", "control-plane")
    assert finish(start(argv, env)).strip() == "bake-node: join"

    calls = [c for c in cluster.standins.calls() if c["node"] == "cp-1" and c["event"] == "end"]
    removed = next(i for i, c in enumerate(calls) if c["argv"][-3:-1] == ["member", "remove"])
    joined = next(i for i, c in enumerate(calls) if c["argv"][:2] == ["join", "--config"])
    assert removed < joined and calls[removed]["argv"][-1] == "dead"
    assert sorted(m["name"] for m in cluster.standins.state()["members"]) == ["cp-0", "cp-1"]
    assert cluster.state("cp-1")["etcd_removed"] == ["dead"]


def test_worker_joins_through_ssm_throttling(cluster):
    """SSM answers the worker's first GetParameters calls with ThrottlingException (HTTP 400,
    injected by a botocore ``before-send`` hook); botocore's standard retry mode retries them
    and the worker joins."""
    from botocore.awsrequest import AWSResponse

    from bake_node.agent import Agent, Settings
    from bake_node.aws import Clients

    argv, env = cluster.node("cp-0", "control-plane")
    assert finish(start(argv, env)).strip() == "bake-node: init"

    class Raw:
        def stream(self, **_):
            yield b""

    throttled = []

    def throttle(request, **_):
        if b"GetParameters" in (request.headers.get("X-Amz-Target") or b"") and len(throttled) < 4:
            throttled.append(request.url)
            resp = AWSResponse(
                request.url, 400, {"Content-Type": "application/x-amz-json-1.1"}, Raw()
            )
            resp._content = b'{"__type":"ThrottlingException","message":"Rate exceeded"}'
            return resp
        return None

    argv, env = cluster.node("w-0", "worker")
    opt = dict(zip(argv[::1], argv[1::1], strict=False))
    settings = Settings(
        config_path=cluster.tmp / "nodes/w-0/node.yaml",
        state_dir=cluster.tmp / "nodes/w-0/state",
        identity_override=cluster.tmp / "nodes/w-0/identity.json",
        kubernetes_dir=cluster.tmp / "nodes/w-0/root/etc/kubernetes",
        kubeadm=opt["--kubeadm"],
        kubeadm_env={k: v for k, v in env.items() if k.startswith("BAKE_STANDIN_")},
        poll=0.3,
    )
    endpoints = {s: cluster.endpoint for s in ("dynamodb", "ssm", "kms", "ec2")}
    clients = Clients("us-east-1", endpoints, hooks=[("before-send.ssm", throttle)])
    assert Agent(settings, clients).run() == "join"
    assert len(throttled) == 4
    assert "w-0" in cluster.standins.state()["nodes"]


@pytest.mark.slow
def test_join_that_failed_half_way_is_reset_before_the_retry(cluster):
    """kubeadm join wrote kubelet.conf and then failed (the kubelet never became healthy); the
    unit restarts the agent, which resets the node before joining again instead of failing
    kubeadm's preflight ("kubelet.conf already exists") on every restart."""
    argv, env = cluster.node("cp-0", "control-plane")
    assert finish(start(argv, env)).strip() == "bake-node: init"
    argv, env = cluster.node("w-0", "worker")
    env["BAKE_STANDIN_FAIL_JOIN_AFTER_KUBELET_CONF"] = "1"
    first = start(argv, env)
    first.communicate(timeout=180)
    assert first.returncode != 0
    assert not cluster.state("w-0")["joined"]
    del env["BAKE_STANDIN_FAIL_JOIN_AFTER_KUBELET_CONF"]
    assert finish(start(argv, env)).strip() == "bake-node: join"  # the unit's restart
    calls = [c["argv"][0] for c in cluster.standins.calls()
             if c["node"] == "w-0" and c["event"] == "end" and c["tool"] == "kubeadm"]
    assert calls == ["join", "reset", "join"]
    assert "w-0" in cluster.standins.state()["nodes"]


def test_kubelets_pull_from_ecr_through_the_baked_credential_provider(cluster):
    """registry.ecrCredentialProvider: before kubeadm runs, the agent writes the kubelet's
    CredentialProviderConfig and kubeadm's config hands the kubelet both flags; an image without
    the provider stops the node with one line, before any kubeadm call."""
    providers = cluster.tmp / "providers"
    ecr = {"registry": {"ecrCredentialProvider": True}}
    argv, env = cluster.node("cp-1", "control-plane", node_yaml=ecr,
                             credential_provider_dir=providers)
    proc = start(argv, env)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "this image has no" in err and "checksums.ecr-credential-provider" in err
    assert not [c for c in cluster.standins.calls() if c.get("node") == "cp-1"]
    providers.mkdir()
    (providers / "ecr-credential-provider").write_text("#!/bin/sh\nexit 0\n")
    (providers / "ecr-credential-provider").chmod(0o755)
    argv, env = cluster.node("cp-0", "control-plane", node_yaml=ecr,
                             credential_provider_dir=providers)
    assert finish(start(argv, env)).strip() == "bake-node: init"
    config = cluster.tmp / "nodes/cp-0/root/etc/kubernetes/image-credential-provider/config.json"
    assert json.loads(config.read_text())["providers"][0]["name"] == "ecr-credential-provider"
    # what kubeadm hands the kubelet (the stand-in writes kubeadm-flags.env as kubeadm does)
    flags = (cluster.tmp / "nodes/cp-0/root/var/lib/kubelet/kubeadm-flags.env").read_text()
    assert f"--image-credential-provider-config={config}" in flags
    assert f"--image-credential-provider-bin-dir={providers}" in flags


def test_the_init_leader_stores_the_admin_kubeconfig_for_bake_kubeconfig(cluster):
    """After ``kubeadm init`` the leader keeps kubeadm's admin.conf under control-plane/ (what
    ``bake kubeconfig`` fetches), before the cluster is marked initialized."""
    argv, env = cluster.node("cp-0", "control-plane")
    assert finish(start(argv, env)).strip() == "bake-node: init"
    admin = cluster.tmp / "nodes/cp-0/root/etc/kubernetes/admin.conf"
    ssm = cluster.clients().client("ssm")
    name = f"{cluster.prefix}/control-plane/admin-kubeconfig"
    stored = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    assert stored == admin.read_text() and "kind: Config" in stored
    assert_secrets_encrypted(cluster)


ADDONS_ON = {"addons": {"metrics-server": {}, "local-path-provisioner": {},
                        "cluster-autoscaler": {}, "aws-cloud-controller-manager": {},
                        "aws-ebs-csi-driver": {"defaultStorageClass": "gp3"}},
             "cloudProvider": "external"}


def _applied_kinds(cluster):
    return [a for a in cluster.standins.state()["applied"]]


def _image_manifest(cluster, addons=None):
    """An image manifest with every add-on of the catalog (1.30.12), or those ``addons`` names."""
    return cluster.image_manifest(addons)


def test_init_applies_the_cni_then_the_addons_in_order_and_records_each(cluster):
    """The node that ran init applies the CNI, then storage, then the rest; waits for each
    workload's rollout; state.json records each add-on (status, version, objects)."""
    argv, env = cluster.node("cp-0", "control-plane", node_yaml=ADDONS_ON,
                             image_manifest=_image_manifest(cluster))
    assert finish(start(argv, env)).strip() == "bake-node: init"
    applied = _applied_kinds(cluster)
    order = [applied.index(x) for x in ("DaemonSet/kube-flannel-ds",
                                         "DaemonSet/aws-cloud-controller-manager",
                                         "Deployment/ebs-csi-controller",
                                         "Deployment/local-path-provisioner",
                                         "Deployment/metrics-server",
                                         "Deployment/cluster-autoscaler")]
    assert order == sorted(order)
    rollouts = [c["argv"][4] for c in cluster.standins.calls()
                if c["tool"] == "kubectl" and c["event"] == "end" and c["argv"][2:3] == ["rollout"]]
    assert rollouts == ["daemonset/kube-flannel-ds", "daemonset/aws-cloud-controller-manager",
                        "deployment/ebs-csi-controller", "daemonset/ebs-csi-node",
                        "deployment/local-path-provisioner",
                        "deployment/metrics-server", "deployment/cluster-autoscaler"]
    records = cluster.state("cp-0")["addons"]
    assert sorted(records, key=lambda n: records[n]["order"]) == [
        "flannel", "aws-cloud-controller-manager", "aws-ebs-csi-driver", "local-path-provisioner",
        "metrics-server", "cluster-autoscaler"]
    assert records["metrics-server"]["status"] == "ready"
    assert records["metrics-server"]["version"] == "v0.7.2"
    assert records["metrics-server"]["workloads"] == ["deployment/metrics-server in kube-system"]
    assert records["cluster-autoscaler"]["objects"] > 3
    # the rendered manifests ran the image the image manifest records
    rendered = cluster.tmp / "nodes/cp-0/state/manifests/metrics-server/metrics-server.yaml"
    assert "registry.k8s.io/metrics-server/metrics-server:v0.7.2" in rendered.read_text()


def test_cilium_without_kube_proxy_is_applied_at_the_control_plane_endpoint(cluster):
    """cni: cilium with kubeProxyReplacement: kubeadm init skips kube-proxy, and the init node
    applies Cilium (agent and operator waited for) rendered with the control-plane endpoint
    from node.yaml; state.json records it at the baked Cilium version."""
    argv, env = cluster.node("cp-0", "control-plane", image_manifest=_image_manifest(cluster),
                             node_yaml={"cni": "cilium", "kubeProxyReplacement": True})
    assert finish(start(argv, env)).strip() == "bake-node: init"
    assert cluster.standins.state()["init_skip_phases"] == ["addon/kube-proxy"]
    applied = _applied_kinds(cluster)
    assert "DaemonSet/cilium" in applied and "Deployment/cilium-operator" in applied
    assert "DaemonSet/kube-flannel-ds" not in applied
    rendered = (cluster.tmp / "nodes/cp-0/state/manifests/cilium/cilium.yaml").read_text()
    assert '{name: KUBERNETES_SERVICE_HOST, value: "demo-api.elb.us-east-1.amazonaws.com"}' \
        in rendered
    assert "quay.io/cilium/cilium:v1.18.14" in rendered
    record = cluster.state("cp-0")["addons"]["cilium"]
    assert (record["status"], record["version"], record["order"]) == ("ready", "v1.18.14", 1)
    assert record["workloads"] == ["daemonset/cilium in kube-system",
                                   "deployment/cilium-operator in kube-system"]


def test_calico_applies_its_baked_crds_server_side_before_its_own_manifests(cluster):
    """cni: calico: the init node applies Calico's CRDs from the image (the file the image
    manifest lists, SHA-256 checked) with server-side apply, then bake's Calico manifest rendered
    with the cluster's pod CIDR, and waits for calico-node and calico-kube-controllers."""
    argv, env = cluster.node("cp-0", "control-plane", image_manifest=_image_manifest(cluster),
                             node_yaml={"cni": "calico"})
    assert finish(start(argv, env)).strip() == "bake-node: init"
    st = cluster.standins.state()
    applied = st["applied"]
    crd = "CustomResourceDefinition/standins.crd.projectcalico.org"
    assert applied.index(crd) < applied.index("DaemonSet/calico-node")
    assert st["server_side"] == [crd]  # only the CRDs: bake's manifests apply client-side
    assert "Deployment/calico-kube-controllers" in applied
    assert "DaemonSet/kube-flannel-ds" not in applied
    rendered = (cluster.tmp / "nodes/cp-0/state/manifests/calico/calico.yaml").read_text()
    assert 'value: "10.244.0.0/16"' in rendered
    assert "quay.io/calico/node:v3.29.3" in rendered
    record = cluster.state("cp-0")["addons"]["calico"]
    assert record["status"] == "ready" and record["version"] == "v3.29.3"
    assert record["workloads"] == ["daemonset/calico-node in kube-system",
                                   "deployment/calico-kube-controllers in kube-system"]


def test_calico_crds_that_differ_from_the_image_manifest_are_refused(cluster):
    """A CRD file changed after the bake (its SHA-256 no longer the image manifest's) is not
    applied: the CNI fails naming the file, and nothing of Calico reaches the API."""
    manifest = _image_manifest(cluster)
    crds = cluster.addon_files_dir / "calico" / "crds.yaml"
    crds.write_text(crds.read_text() + "# changed\n")
    argv, env = cluster.node("cp-0", "control-plane", image_manifest=manifest,
                             node_yaml={"cni": "calico"})
    proc = start(argv, env)
    _out, err = proc.communicate(timeout=180)
    assert proc.returncode != 0
    assert f"calico: {crds} does not match the SHA-256" in err, err[-2000:]
    assert not any("calico" in a for a in cluster.standins.state().get("applied", []))


def test_monitoring_gets_a_generated_grafana_password_once_and_never_in_a_log(cluster):
    """The monitoring add-on's Grafana admin Secret is made by the agent with a random
    password (kubectl create), kept as it is when the add-ons are applied again, and its value
    is in no file the agent leaves and in no log line."""
    manifest = _image_manifest(cluster)
    node_yaml = {"addons": {"monitoring": {"retentionDays": 15, "persistentVolume": False}}}
    argv, env = cluster.node("cp-0", "control-plane", node_yaml=node_yaml,
                             image_manifest=manifest)
    proc = start(argv, env)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-2000:]
    created = cluster.standins.state()["created"]
    (secret,) = created.values()
    password = secret["stringData"]["admin-password"]
    assert secret["metadata"] == {"name": "grafana-admin", "namespace": "monitoring",
                                  "labels": {"app.kubernetes.io/managed-by": "bake-node"}}
    assert secret["stringData"]["admin-user"] == "admin" and len(password) == 32
    assert "secret monitoring/grafana-admin created with random values" in err
    leftover = [p for p in (cluster.tmp / "nodes/cp-0").rglob("*")
                if p.is_file() and password in p.read_text(errors="replace")]
    assert password not in out + err and leftover == []
    record = cluster.state("cp-0")["addons"]["monitoring"]
    assert record["status"] == "ready" and record["version"] == "v2.54.1"
    assert record["workloads"] == ["deployment/prometheus in monitoring",
                                   "daemonset/node-exporter in monitoring",
                                   "deployment/kube-state-metrics in monitoring",
                                   "deployment/grafana in monitoring"]
    # applied again (bake-node upgrade-addons does): the first password stays
    agent_records = _reapply(cluster, "cp-0", node_yaml, manifest)
    assert agent_records["monitoring"]["status"] == "ready"
    assert cluster.standins.state()["created"]["Secret/grafana-admin"]["stringData"][
        "admin-password"] == password


def _reapply(cluster, name, node_yaml, manifest):
    """``Agent.apply_addons`` on node ``name`` again, in this process (what ``bake-node
    upgrade-addons`` runs after a roll), with the stand-in kubectl; returns its records."""
    from dataclasses import replace

    from bake_node.agent import Agent, Settings

    argv, env = cluster.node(name, "control-plane", node_yaml=node_yaml, image_manifest=manifest)
    flags = [i for i, a in enumerate(argv) if a.startswith("--")]
    opts = {argv[i]: argv[i + 1] for i in flags}
    standin_env = {k: v for k, v in env.items() if k.startswith("BAKE_STANDIN_")}
    settings = replace(Settings(), kubeadm_env=standin_env,
                       config_path=Path(opts["--config"]),
                       state_dir=Path(opts["--state-dir"]),
                       identity_override=Path(opts["--identity"]),
                       image_manifest=Path(opts["--image-manifest"]),
                       manifests_dir=Path(opts["--manifests-dir"]),
                       kubernetes_dir=Path(opts["--kubernetes-dir"]),
                       kubeadm=opts["--kubeadm"], kubectl=opts["--kubectl"])
    agent = Agent(settings)
    return agent.apply_addons(agent.config_phase())


def test_a_failing_addon_names_itself_and_its_object_and_is_retried(cluster):
    """An add-on whose workload does not roll out fails the post phase naming the add-on and
    the object; the others are still applied; the next run of the agent applies them again."""
    st_path = cluster.standins.cluster_dir / "state.json"
    cluster.standins.cluster_dir.mkdir(parents=True, exist_ok=True)
    st_path.write_text(json.dumps({"not_ready": ["deployment/metrics-server"]}))
    manifest = _image_manifest(cluster)
    argv, env = cluster.node("cp-0", "control-plane", node_yaml=ADDONS_ON,
                             image_manifest=manifest)
    proc = start(argv, env)
    _out, err = proc.communicate(timeout=180)
    assert proc.returncode != 0
    assert "metrics-server: deployment/metrics-server in kube-system not ready" in err
    state = cluster.state("cp-0")
    assert state["joined"] and state["phases"]["post"]["status"] == "failed"
    assert state["addons"]["metrics-server"]["status"] == "failed"
    assert state["addons"]["cluster-autoscaler"]["status"] == "ready"  # not stopped by it
    # fixed (the workload rolls out now): the next run applies the add-ons again
    st = json.loads(st_path.read_text())
    st["not_ready"] = []
    st_path.write_text(json.dumps(st))
    argv, env = cluster.node("cp-0", "control-plane", node_yaml=ADDONS_ON,
                             image_manifest=manifest, instance_id=state["instance_id"])
    assert finish(start(argv, env)).strip() == "bake-node: init"
    state = cluster.state("cp-0")
    assert state["phases"]["post"]["status"] == "done"
    assert {r["status"] for r in state["addons"].values()} == {"ready"}
    assert cluster.standins.state()["inits"] == 1  # init itself did not run again


def test_an_addon_the_image_does_not_carry_is_named(cluster):
    manifest = _image_manifest(cluster, addons=["flannel"])
    argv, env = cluster.node("cp-0", "control-plane", image_manifest=manifest,
                             node_yaml={"addons": {"metrics-server": {}}})
    proc = start(argv, env)
    _out, err = proc.communicate(timeout=180)
    assert proc.returncode != 0
    assert ("metrics-server: not baked into this image (" in err
            and "lists flannel): bake the image with --addons including metrics-server, or "
            "turn addons.metricsServer off" in err), err[-2000:]


def test_a_cni_the_image_does_not_carry_is_named(cluster):
    """An image baked with --addons leaving the CNI out: its pods would pull at boot, so the
    init node names it instead of waiting for a rollout that cannot happen air-gapped."""
    manifest = _image_manifest(cluster, addons=["metrics-server"])
    argv, env = cluster.node("cp-0", "control-plane", image_manifest=manifest)
    proc = start(argv, env)
    _out, err = proc.communicate(timeout=180)
    assert proc.returncode != 0
    assert "flannel: not baked into this image (" in err
    assert "including flannel, or choose another kubernetesNetwork.cni" in err
