"""``bake etcd snapshots`` and ``bake etcd restore`` against a stack deployed into the embedded
AWS: the stack's encrypted snapshot bucket, the listing of what the node agent stored, and a
restore that replaces the control planes; every refusal is one line and changes nothing."""

from __future__ import annotations

import json
import time

import boto3
import pytest

from bake_node import snapshots as node_snapshots
from bake_node.aws import Clients


def _client(aws, service):
    return boto3.client(service, endpoint_url=aws.endpoint, region_name="us-east-1")


@pytest.fixture
def launched(embedded, run_bake, cluster_file):
    aws, _ami = embedded
    result = run_bake("--endpoint-url", aws.endpoint, "launch", "-f", str(cluster_file), "--yes")
    assert result.exit_code == 0, result.stderr
    outputs = _client(aws, "cloudformation").describe_stacks(
        StackName="bake-demo")["Stacks"][0]["Outputs"]
    return {o["OutputKey"]: o["OutputValue"] for o in outputs}["EtcdSnapshotBucket"]


def _store(aws, bucket):
    """The snapshot store as the node agent sees it (its own S3 client and policy)."""
    clients = Clients("us-east-1", {"s3": aws.endpoint})
    return node_snapshots.SnapshotStore(clients.client("s3"),
                                        node_snapshots.SnapshotPolicy(bucket), "alias/bake-demo")


def _stored(aws, bucket, tmp_path, ages_s=(3600, 60)):
    store = _store(aws, bucket)
    bundle = tmp_path / "bundle"
    bundle.write_bytes(b"x" * 2048)
    ids = []
    for n, age in enumerate(ages_s):
        sid = node_snapshots.new_id(f"i-0cp{n}", time.time() - age)
        store.upload(sid, bundle, {"sha256": node_snapshots.sha256_file(bundle),
                                   "revision": str(100 + n), "total-keys": str(40 + n),
                                   "kubernetes-version": "1.30.12", "taken-by": f"i-0cp{n}"})
        ids.append(sid)
    return ids


def _error_lines(result):
    assert "Traceback" not in result.stderr
    return [x for x in result.stderr.splitlines() if x.startswith("bake: error:")]


def test_control_planes_are_told_the_stacks_bucket_and_workers_nothing(aws, launched):
    import base64

    ec2 = _client(aws, "ec2")
    for role in ("control-plane", "worker"):
        data = ec2.describe_launch_template_versions(
            LaunchTemplateName=f"bake-demo-{role}", Versions=["$Latest"])[
            "LaunchTemplateVersions"][0]["LaunchTemplateData"]["UserData"]
        text = base64.b64decode(data).decode()
        assert "${" not in text  # CloudFormation substituted every name
        assert (f"bucket: {launched}" in text) == (role == "control-plane"), text


def test_the_stack_has_an_encrypted_snapshot_bucket(aws, launched):
    # (its public access block, which moto's CloudFormation does not apply, is checkov's
    # CKV_AWS_53-56 on the rendered template in test_template_checks)
    s3 = _client(aws, "s3")
    rule = s3.get_bucket_encryption(Bucket=launched)[
        "ServerSideEncryptionConfiguration"]["Rules"][0]["ApplyServerSideEncryptionByDefault"]
    assert rule["SSEAlgorithm"] == "aws:kms"


def test_snapshots_lists_newest_first_with_their_metadata(aws, run_bake, cluster_file, launched,
                                                          tmp_path):
    empty = run_bake("--endpoint-url", aws.endpoint, "etcd", "snapshots", "-f", str(cluster_file))
    assert empty.exit_code == 0, empty.stderr
    assert "no etcd snapshots of demo yet" in empty.stdout
    older, newer = _stored(aws, launched, tmp_path)
    listed = run_bake("--endpoint-url", aws.endpoint, "etcd", "snapshots", "-f",
                      str(cluster_file))
    assert listed.exit_code == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:2] == ["SNAPSHOT", "TAKEN"]
    assert [line.split()[0] for line in lines[1:]] == [newer, older]
    assert lines[1].split()[3:] == ["101", "41", "1.30.12"]
    as_json = run_bake("--endpoint-url", aws.endpoint, "etcd", "snapshots", "-f",
                       str(cluster_file), "--output", "json")
    docs = json.loads(as_json.stdout)
    assert [d["id"] for d in docs] == [newer, older]
    assert docs[0]["size_bytes"] == 2048 and docs[0]["taken_by"] == "i-0cp1"


def test_restore_replaces_the_control_planes_and_records_the_request(aws, run_bake, cluster_file,
                                                                     launched, tmp_path):
    _older, newer = _stored(aws, launched, tmp_path)
    ssm = _client(aws, "ssm")
    token = "/bake/clusters/demo/shared/join/token"
    ssm.put_parameter(Name=token, Value="{}", Type="SecureString")
    before = _group(aws)
    result = run_bake("--endpoint-url", aws.endpoint, "etcd", "restore", "-f",
                      str(cluster_file), "--snapshot", newer, "--yes")
    assert result.exit_code == 0, result.stderr
    assert "scaled to 0" in result.stdout and "scaled to 3" in result.stdout
    after = _group(aws)
    assert after["DesiredCapacity"] == 3 and after["MinSize"] == 3
    assert not {i["InstanceId"] for i in before["Instances"]} & {
        i["InstanceId"] for i in after["Instances"]}  # every control plane is a new one
    item = _client(aws, "dynamodb").get_item(TableName="bake-demo", Key={"pk": {"S": "cluster"}},
                                             ConsistentRead=True)["Item"]
    assert item["state"]["S"] == "restore-requested"
    assert item["restore_snapshot"]["S"] == newer
    assert not ssm.get_parameters(Names=[token])["Parameters"]  # the old cluster's token


def _group(aws):
    return _client(aws, "autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=["bake-demo-control-plane"])["AutoScalingGroups"][0]


@pytest.mark.parametrize(("snapshot", "message"), [
    ("latest", "--snapshot 'latest' is not a snapshot id"),
    ("20200101T000000Z-i-0none", "no snapshot 20200101T000000Z-i-0none in s3://"),
])
def test_restore_of_an_unknown_snapshot_is_one_line_and_changes_nothing(
        aws, run_bake, cluster_file, launched, snapshot, message):
    before = _group(aws)
    result = run_bake("--endpoint-url", aws.endpoint, "etcd", "restore", "-f",
                      str(cluster_file), "--snapshot", snapshot, "--yes")
    assert result.exit_code == 2
    [line] = _error_lines(result)
    assert message in line and "bake etcd snapshots -f" in line
    assert _group(aws)["Instances"] == before["Instances"]
    assert "Item" not in _client(aws, "dynamodb").get_item(
        TableName="bake-demo", Key={"pk": {"S": "cluster"}})


def test_restore_without_a_terminal_or_yes_refuses(aws, run_bake, cluster_file, launched,
                                                   tmp_path):
    _older, newer = _stored(aws, launched, tmp_path)
    result = run_bake("--endpoint-url", aws.endpoint, "etcd", "restore", "-f",
                      str(cluster_file), "--snapshot", newer)
    assert result.exit_code == 2
    [line] = _error_lines(result)
    assert "needs a confirmation and there is no terminal: pass --yes" in line
    assert _group(aws)["DesiredCapacity"] == 3


def test_no_such_cluster_is_one_line(aws, run_bake, cluster_file):
    for args in (("snapshots",), ("restore", "--snapshot", "20200101T000000Z-i-0x", "--yes")):
        result = run_bake("--endpoint-url", aws.endpoint, "etcd", *args, "-f",
                          str(cluster_file))
        assert result.exit_code == 1, result.stderr
        [line] = _error_lines(result)
        assert "no stack bake-demo in us-east-1: launch the cluster first" in line


def test_status_shows_the_last_snapshot_a_pending_restore_and_the_earliest_certificate(
        aws, run_bake, cluster_file, launched):
    db = _client(aws, "dynamodb")
    cp = _group(aws)["Instances"][0]["InstanceId"]
    now = time.time()
    db.put_item(TableName="bake-demo", Item={
        "pk": {"S": "etcd-snapshot"}, "snapshot_id": {"S": "20261205T100000Z-" + cp},
        "taken_by": {"S": cp}, "taken_at": {"N": f"{now - 600:.0f}"}})
    db.put_item(TableName="bake-demo", Item={
        "pk": {"S": f"certs#{cp}"}, "instance_id": {"S": cp}, "hostname": {"S": "cp-1"},
        "earliest": {"S": "apiserver"}, "earliest_expiry": {"N": f"{now + 3 * 86400:.0f}"}})
    db.put_item(TableName="bake-demo", Item={
        "pk": {"S": "cluster"}, "state": {"S": "restore-requested"},
        "restore_snapshot": {"S": "20261205T100000Z-" + cp},
        "restore_requested_at": {"S": "2026-12-05T10:30:00Z"}})
    result = run_bake("--endpoint-url", aws.endpoint, "status", "-f", str(cluster_file))
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert f"kubeadm: restore of etcd snapshot 20261205T100000Z-{cp} requested" in out
    assert f"etcd snapshot: 20261205T100000Z-{cp}, 10 min" in out
    assert "certificates: earliest expiry" in out and "(apiserver on cp-1)" in out
    # within 7 days of expiry: listed as stuck, with what to do
    assert "certificate apiserver of cp-1 expires" in out and "bake-node certs --force" in out
    doc = json.loads(run_bake("--endpoint-url", aws.endpoint, "status", "-f", str(cluster_file),
                              "--output", "json").stdout)
    assert doc["snapshot"]["taken_by"] == cp
    assert doc["certificates"]["certificate"] == "apiserver"
    assert 2 * 86400 < doc["certificates"]["expires_in_s"] <= 3 * 86400
