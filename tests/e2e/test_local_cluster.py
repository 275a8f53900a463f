"""`bake launch --local` end to end: the image baked in this session boots as a cluster of VMs.

Three control planes and two workers (qemu under software emulation) boot from overlays of the
baked disk with their launch templates' user-data in NoCloud seeds; they find the embedded AWS
through the VPC-like segment bake builds (IMDSv2, the API endpoints, the VPC resolver, haproxy
as the NLB) and form a cluster with the node agent: one init, control-plane joins serialized by
the lease, REAL etcd across the control planes (kubeadm, kubelet and kubectl are stand-ins; see
tools/standin_k8s.py). One cluster is booted for the whole module.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import boto3
import pytest
import yaml

pytestmark = [
    pytest.mark.slow,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="local clusters need root (netns, tap devices)"),
    pytest.mark.skipif(
        any(shutil.which(t) is None for t in ("qemu-system-x86_64", "dnsmasq", "haproxy",
                                              "cloud-localds")),
        reason="qemu-system-x86, dnsmasq-base, haproxy and cloud-image-utils (make deb-deps)",
    ),
]
JOIN_TIMEOUT = 1800
NAME = "e2e"  # not the `make demo` cluster's name: namespaces are per machine


def _aws(bake_cli, service):
    status = bake_cli("sandbox", "status", "--output", "json").json()
    return boto3.client(service, endpoint_url=status["endpoint"], region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture(scope="module")
def cluster(baked, bake_cli, tmp_path_factory):
    """The formed cluster: (cluster file, launch output, image digest before the launch)."""
    work = tmp_path_factory.mktemp("local-cluster")
    cluster_file = work / "cluster.yaml"
    init = bake_cli("init", "-f", str(cluster_file), "--local", "--name", NAME)
    assert init.returncode == 0, init.stderr
    # the shortest bootstrap token TTL: the first token has expired by the token drill
    text = cluster_file.read_text()
    assert "ttlMinutes: 30" in text
    cluster_file.write_text(text.replace("ttlMinutes: 30", "ttlMinutes: 15"))
    summary, _ = baked
    disk = Path(summary["local"]["disk"])
    before = hashlib.sha256(disk.read_bytes()).hexdigest()
    run = bake_cli("launch", "--local", "-f", str(cluster_file), "--yes", "--join-timeout",
                   str(JOIN_TIMEOUT), timeout=JOIN_TIMEOUT + 600)
    try:
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
        yield cluster_file, run, before, disk
    finally:
        down = bake_cli("destroy", "--local", "-f", str(cluster_file), "--yes", timeout=600)
        assert down.returncode == 0, down.stderr


def test_five_vms_form_one_cluster_with_real_etcd(cluster, bake_cli):
    cluster_file, run, _, _ = cluster
    out = run.stdout
    assert "5 nodes joined" in out
    rows = [line.split() for line in out.splitlines() if re.match(r"^i-[0-9a-f]{17} ", line)]
    table = [r for r in rows if r[-1] in ("yes", "no")]
    assert len(table) == 5 and all(r[-1] == "yes" for r in table), out
    modes = sorted(r[4] for r in table)
    assert modes == ["init", "join", "join", "join", "join"]  # exactly one init
    assert "stand-ins, said plainly" in out

    status = bake_cli("status", "--local", "-f", str(cluster_file), "--output", "json").json()
    assert status["stuck"] == [], status["stuck"]
    members = status["etcd"]["members"]
    assert len(members) == 3, members
    assert all(m["started"] and m["healthy"] and not m["learner"] for m in members), members
    names = {m["name"] for m in members}
    cps = {n["hostname"] for n in status["nodes"] if n["role"] == "control-plane"}
    assert names == cps  # one member per control plane, named after its node
    assert all(n["vm"] == "running" and n["status"] == "joined" for n in status["nodes"])
    assert status["join_material"]["token"]["expires_in_s"] > 0

    # the join material only as SecureString, under the split tree
    ssm = _aws(bake_cli, "ssm")
    params = ssm.describe_parameters(ParameterFilters=[
        {"Key": "Name", "Option": "BeginsWith", "Values": [f"/bake/clusters/{NAME}/"]}])
    types = {p["Name"]: p["Type"] for p in params["Parameters"]}
    for name in (f"/bake/clusters/{NAME}/shared/join/token",
                 f"/bake/clusters/{NAME}/shared/join/ca-cert-hash",
                 f"/bake/clusters/{NAME}/control-plane/join/certificate-key"):
        assert types.get(name) == "SecureString", types


def test_control_plane_joins_were_serialized_by_the_lease(cluster, bake_cli):
    """Each control plane's kubeadm work (first kubeadm call to the end of its bootstrap phase)
    happens under the control-plane lease: no two of those windows overlap, from the agents'
    own reports."""
    cluster_file, _, _, _ = cluster
    status = bake_cli("status", "--local", "-f", str(cluster_file), "--output", "json").json()
    db = _aws(bake_cli, "dynamodb")
    reports = db.scan(TableName=f"bake-{NAME}", FilterExpression="begins_with(pk, :p)",
                      ExpressionAttributeValues={":p": {"S": "node#"}})["Items"]
    windows = []
    for item in reports:
        if item["role"]["S"] != "control-plane":
            continue
        phases = json.loads(item["phases"]["S"])
        end = float(item["joined_at"]["N"]) - phases["post"]["seconds"]
        windows.append((float(item["kubeadm_started"]["N"]), end, item["mode"]["S"]))
    windows.sort()
    assert [w[2] for w in windows] == ["init", "join", "join"]
    for (_, end, _), (start, _, _) in zip(windows, windows[1:], strict=False):
        assert end <= start, windows
    assert status["cluster_state"]["state"] == "initialized"


def test_the_seed_carries_the_launch_templates_user_data_byte_for_byte(cluster, bake_cli):
    """What each VM got is exactly what EC2 would hand the instance: the launch template's
    UserData, whose only CloudFormation substitutions are the NLB's DNS name and (control
    planes) the snapshot bucket's name."""
    cluster_file, _, _, _ = cluster
    from bake.cluster import load_cluster
    from bake.launch import API_HOST_PLACEHOLDER, SNAPSHOT_BUCKET_PLACEHOLDER, render_cluster

    spec = load_cluster(cluster_file)
    docs = render_cluster(spec)
    elb = _aws(bake_cli, "elbv2")
    dns = elb.describe_load_balancers(Names=[f"bake-{NAME}-api"])["LoadBalancers"][0]["DNSName"]
    outputs = _aws(bake_cli, "cloudformation").describe_stacks(
        StackName=f"bake-{NAME}")["Stacks"][0]["Outputs"]
    bucket = {o["OutputKey"]: o["OutputValue"] for o in outputs}["EtcdSnapshotBucket"]
    ec2 = _aws(bake_cli, "ec2")
    state = json.loads((bake_cli.data_dir / f"clusters/{NAME}/local.json").read_text())
    for node in state["nodes"]:
        role = node["role"]
        version = ec2.describe_launch_template_versions(
            LaunchTemplateName=f"bake-{NAME}-{role}", Versions=["$Latest"])
        import base64

        template = base64.b64decode(version["LaunchTemplateVersions"][0]["LaunchTemplateData"]
                                    ["UserData"])
        expected = (docs.user_data[role].replace(API_HOST_PLACEHOLDER, dns)
                    .replace(SNAPSHOT_BUCKET_PLACEHOLDER, bucket).encode())
        assert template == expected
        seed = Path(node["dir"]) / "seed.iso"
        on_disk = subprocess.run(["isoinfo", "-R", "-i", str(seed), "-x", "/user-data"],
                                 capture_output=True, check=True).stdout
        assert on_disk == template, node["instance_id"]
        assert yaml.safe_load(on_disk)["runcmd"]  # no extra local-only user-data


def test_a_second_launch_changes_nothing(cluster, bake_cli):
    cluster_file, _, _, _ = cluster
    again = bake_cli("launch", "--local", "-f", str(cluster_file), "--yes", timeout=600)
    assert again.returncode == 0, again.stderr
    assert "is running (5 VMs): nothing changed" in again.stdout
    assert "change set" not in again.stdout


def test_logs_show_the_node_agent(cluster, bake_cli):
    cluster_file, _, _, _ = cluster
    state = json.loads((bake_cli.data_dir / f"clusters/{NAME}/local.json").read_text())
    worker = next(n for n in state["nodes"] if n["role"] == "worker")
    logs = bake_cli("logs", "--local", "-f", str(cluster_file), worker["private_ip"])
    assert logs.returncode == 0, logs.stderr
    assert "Cloud-init v." in logs.stdout and "phase bootstrap: done" in logs.stdout
    unknown = bake_cli("logs", "--local", "-f", str(cluster_file), "i-nope")
    assert unknown.returncode == 2 and "no node 'i-nope'" in unknown.stderr


def test_kubeconfig_fetches_what_the_init_leader_stored(cluster, bake_cli, tmp_path):
    """`bake kubeconfig --local`: kubeadm's admin.conf from the control plane that ran init, as
    it stored it in the embedded AWS's Parameter Store, written 0600 and never printed."""
    cluster_file, _, _, _ = cluster
    run = bake_cli("kubeconfig", "--local", "-f", str(cluster_file), "-o", str(tmp_path))
    assert run.returncode == 0, run.stderr
    path = tmp_path / f"{NAME}.kubeconfig"
    text = path.read_text()
    assert "kind: Config" in text and ":6443" in text
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert text not in run.stdout


def _drill(bake_cli, cluster_file, name):
    run = bake_cli("drill", "--local", "-f", str(cluster_file), name, "--output", "json",
                   timeout=JOIN_TIMEOUT + 900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    result = run.json()
    assert result["passed"] and not result["failures"], result
    return result


def test_drill_stale_learner(cluster, bake_cli):
    """A control-plane replacement through the lifecycle hook path on VMs, with an unstarted
    etcd learner left behind first (cluster-api #13221): the very Lambda removes the member
    (its Run Command carried out in a control-plane VM) before the VM goes; the replacement's
    pre-join reconcile removes the learner and joins; 3 started, healthy members again."""
    cluster_file = cluster[0]
    result = _drill(bake_cli, cluster_file, "stale-learner")
    assert any("gone before its VM stopped" in c for c in result["checked"]), result
    assert any("the next join removed the stale learner" in c for c in result["checked"])
    assert result["details"]["lambda"][0]["result"] == "removed"
    members = result["details"]["etcd_after"]["members"]
    assert len(members) == 3 and all(m["healthy"] and m["started"] for m in members)
    assert not any(m["learner"] for m in members)
    status = bake_cli("status", "--local", "-f", str(cluster_file), "--output", "json").json()
    gone = [n for n in status["nodes"] if n["status"] == "gone"]
    assert len(gone) == 1 and gone[0]["role"] == "control-plane"
    assert status["stuck"] == [], status["stuck"]


def test_drill_quorum_guard(cluster, bake_cli):
    """With one control plane frozen, a second one's removal is refused and its lifecycle
    action still completes within the bounded wait; the cluster then heals itself."""
    result = _drill(bake_cli, cluster[0], "quorum-guard")
    assert result["details"]["lambda"][0]["result"] == "quorum-would-be-lost"
    assert any("nothing half-removed" in c for c in result["checked"]), result


def test_drill_embedded_aws_outage(cluster, bake_cli):
    """A worker joins through a 60 s outage of the embedded AWS: botocore's retries carry it,
    no second init, no secret written twice; the group is scaled back afterwards."""
    cluster_file = cluster[0]
    result = _drill(bake_cli, cluster_file, "embedded-aws-outage")
    assert any("no secret written twice" in c for c in result["checked"]), result
    assert any("kubeadm init ran once" in c for c in result["checked"]), result
    assert any("ran through the outage" in c for c in result["checked"]), result


def test_drill_worker_after_token_expiry(cluster, bake_cli):
    """With a 15 min bootstrap token TTL, the first published token has expired (the drill
    waits if not), kubeadm on a control plane no longer lists it, the rotate timer published a
    new one, and a worker added now joins with it."""
    result = _drill(bake_cli, cluster[0], "worker-after-token-expiry")
    assert any("is no longer valid in the cluster" in c for c in result["checked"]), result
    assert any("the published token is a rotated one" in c for c in result["checked"])
    assert any("after the first token expired" in c for c in result["checked"])
    published = result["details"]["tokens"]["published"]
    assert len(published) >= 2 and result["details"]["tokens"]["ttl_s"] == 900
    assert all(set(p) == {"id", "version", "issued", "expires"} for p in published)


def test_control_planes_snapshot_etcd_into_the_stacks_bucket(cluster, bake_cli):
    """The control planes' snapshot timer (every 5 min, first 5 min after boot) stores REAL
    etcd snapshots in the stack's bucket through the S3 endpoint; `bake etcd snapshots` lists
    them and `bake status` shows the last one. By this point in the module the control planes
    have run well over 5 min; the wait covers a snapshot the outage drill made fail."""
    import time

    cluster_file = cluster[0]
    deadline = time.monotonic() + 600
    while True:
        listed = bake_cli("etcd", "snapshots", "--local", "-f", str(cluster_file), "--output",
                          "json")
        assert listed.returncode == 0, listed.stderr
        snapshots = listed.json()
        if snapshots or time.monotonic() > deadline:
            break
        time.sleep(20)
    assert snapshots, "no etcd snapshot in 10 min: see `bake logs --local NODE`"
    newest = snapshots[0]
    assert newest["revision"] > 0 and newest["total_keys"] > 0 and newest["size_bytes"] > 0
    status = bake_cli("status", "--local", "-f", str(cluster_file), "--output", "json").json()
    assert status["snapshot"]["id"] in {s["id"] for s in snapshots}
    text = bake_cli("etcd", "snapshots", "--local", "-f", str(cluster_file))
    assert newest["id"] in text.stdout


def test_destroy_leaves_the_image_untouched(cluster, bake_cli):
    """Runs last in the module: after `bake destroy --local` nothing of the cluster is left."""
    cluster_file, _, before, disk = cluster
    state = json.loads((bake_cli.data_dir / f"clusters/{NAME}/local.json").read_text())
    down = bake_cli("destroy", "--local", "-f", str(cluster_file), "--yes", timeout=600)
    assert down.returncode == 0, down.stderr
    assert "stopped 5 VMs" in down.stdout
    for node in state["nodes"]:
        assert not Path(f"/proc/{node['pid']}").exists() or b"qemu" not in Path(
            f"/proc/{node['pid']}/cmdline").read_bytes()
        assert not Path(node["dir"]).exists()
    assert not Path(f"/var/run/netns/bake-{NAME}").exists()
    assert hashlib.sha256(disk.read_bytes()).hexdigest() == before
    again = bake_cli("destroy", "--local", "-f", str(cluster_file), "--yes", timeout=300)
    assert again.returncode == 0 and "nothing to delete" in again.stdout


# ------------------------------------------------------------------ bad input: one line each


def _one_line(run) -> str:
    assert run.returncode != 0, run
    errors = [line for line in run.stderr.splitlines() if line.startswith("bake: error:")]
    assert len(errors) == 1 and "Traceback" not in run.stderr, run.stderr
    return errors[0]


def test_bad_input_starts_nothing(baked, bake_cli, tmp_path):
    other = tmp_path / "other.yaml"
    assert bake_cli("init", "-f", str(other), "--local", "--name", "other", "--k8s",
                    "1.31").returncode == 0
    line = _one_line(bake_cli("launch", "--local", "-f", str(other), "--yes"))
    assert "no local image for Kubernetes 1.31 (amd64)" in line and "bake ami" in line

    big = tmp_path / "big.yaml"
    assert bake_cli("init", "-f", str(big), "--local", "--name", "big").returncode == 0
    big.write_text(big.read_text().replace("vmMemoryMiB: 1024", "vmMemoryMiB: 16384"))
    line = _one_line(bake_cli("launch", "--local", "-f", str(big), "--yes"))
    assert "5 VMs of 16384 MiB need" in line and "MiB available" in line

    noqemu = tmp_path / "bin"
    noqemu.mkdir()
    for tool in ("qemu-img", "cloud-localds", "dnsmasq", "haproxy", "ip", "openssl"):
        (noqemu / tool).symlink_to(shutil.which(tool))
    line = _one_line(bake_cli("launch", "--local", "-f", str(big), "--yes",
                              env={"PATH": str(noqemu)}))
    assert "needs qemu-system-x86" in line
    for name in ("other", "big"):
        assert not Path(f"/var/run/netns/bake-{name}").exists()
        assert not (bake_cli.data_dir / "clusters" / name / "local.json").exists()
