"""``bake upgrade`` against a stack deployed into the embedded AWS.

The refusals go through the command line: each is one line, exits 2 for bad input (a skipped
or backward minor, an image not baked) and 1 for a cluster that is not healthy, and changes
nothing (the cluster file, the stack's launch templates and the groups are as they were).

The roll itself is driven through ``bake.upgrade.upgrade`` with the nodes' side simulated
between its looks (moto boots nothing): an instance of the group reports ``joined`` at the
version of the image it was launched from, and the control planes' record of etcd lists the
control planes in service. What is checked is what bake does and in which order: the stack
update (the launch templates name the new AMI), one surge control plane at a time (the group
never has more than count + 1), every old node drained before it is terminated and its Node
object deleted after (a control plane's etcd member removed before), etcd recorded again before
the next step (the SSM Run Command calls, in order), kube-proxy/CoreDNS after the last control
plane and before the first worker, and the workers replaced without shrinking their group. The
node side of the same steps runs for real in tests/localcluster/test_upgrade_standins.py.
"""

from __future__ import annotations

import json
import time

import boto3
import pytest

OLD, NEW = "1.30.12", "1.31.8"


def _client(aws, service):
    return boto3.client(service, endpoint_url=aws.endpoint, region_name="us-east-1")


def _in_service(aws, role):
    groups = _client(aws, "autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[f"bake-demo-{role}"])["AutoScalingGroups"]
    return [i["InstanceId"] for g in groups for i in g["Instances"]
            if i["LifecycleState"] == "InService"]


class Nodes:
    """The node agents' side, as their table items: every instance in service reports
    ``joined`` at its image's version; control planes record etcd as the members in service.
    Also records the largest control-plane group seen."""

    def __init__(self, aws, new_ami, fail_new=False, flaky=False):
        self.aws, self.new_ami, self.fail_new, self.flaky = aws, new_ami, fail_new, flaky
        self.failed_once: set[str] = set()
        self.db = _client(aws, "dynamodb")
        self.max_control_planes = 0

    def step(self, _seconds=0.0):
        ec2 = _client(self.aws, "ec2")
        cps = _in_service(self.aws, "control-plane")
        self.max_control_planes = max(self.max_control_planes, len(cps))
        ids = cps + _in_service(self.aws, "worker")
        images = {i["InstanceId"]: i["ImageId"] for r in ec2.describe_instances(
            InstanceIds=ids)["Reservations"] for i in r["Instances"]} if ids else {}
        for iid in ids:
            key = {"pk": {"S": f"node#{iid}"}}
            new = images[iid] == self.new_ami
            if "Item" in self.db.get_item(TableName="bake-demo", Key=key) and not (
                    self.flaky and new and iid in self.failed_once):
                continue
            item = {**key, "instance_id": {"S": iid}, "hostname": {"S": f"ip-{iid[-6:]}"},
                    "role": {"S": "control-plane" if iid in cps else "worker"},
                    "kubernetes_version": {"S": NEW if new else OLD},
                    "status": {"S": "joined"}}
            if new and self.flaky and iid not in self.failed_once:
                self.failed_once.add(iid)  # the first try fails; the agent's retry joins
                item.update(status={"S": "failed"}, failed_phase={"S": "bootstrap"},
                            error={"S": "kubeadm join failed (1): etcd 503"})
            elif self.flaky and new:
                self.failed_once.discard(iid)
            if new and self.fail_new:
                item.update(status={"S": "failed"}, failed_phase={"S": "bootstrap"},
                            error={"S": "kubeadm join failed (1): etcd cluster is unavailable"})
            self.db.put_item(TableName="bake-demo", Item=item)
        members = [{"id": iid, "name": f"ip-{iid[-6:]}", "healthy": True, "learner": False}
                   for iid in cps]
        self.db.put_item(TableName="bake-demo", Item={
            "pk": {"S": "etcd-status"}, "members": {"S": json.dumps(members)},
            "observed_at": {"N": f"{time.time() + 1:.3f}"}})


@pytest.fixture
def cluster(embedded, run_bake, cluster_file):
    """A launched 3 + 2 node cluster whose nodes all reported, and a 1.31 image published."""
    aws, ami = embedded
    result = run_bake("--endpoint-url", aws.endpoint, "launch", "-f", str(cluster_file), "--yes")
    assert result.exit_code == 0, result.stderr
    ec2 = _client(aws, "ec2")
    new_ami = next(i["ImageId"] for i in ec2.describe_images(Owners=["amazon"])["Images"]
                   if i["ImageId"] != ami)
    nodes = Nodes(aws, new_ami)
    nodes.step()
    return {"aws": aws, "old_ami": ami, "new_ami": new_ami, "nodes": nodes,
            "file": cluster_file}


def _publish(aws, ami, minor="1.31"):
    _client(aws, "ssm").put_parameter(Name=f"/bake/k8s/{minor}/debian-12/amd64/image_id",
                                      Value=ami, Type="String", Overwrite=True)


def _launch_template_image(aws, role):
    return _client(aws, "ec2").describe_launch_template_versions(
        LaunchTemplateName=f"bake-demo-{role}", Versions=["$Latest"])[
        "LaunchTemplateVersions"][0]["LaunchTemplateData"]["ImageId"]


def _error(result):
    assert "Traceback" not in result.stderr
    lines = [x for x in result.stderr.splitlines() if x.startswith("bake: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def _unchanged(cluster, text):
    aws = cluster["aws"]
    assert cluster["file"].read_text() == text
    assert _launch_template_image(aws, "control-plane") == cluster["old_ami"]
    assert len(_in_service(aws, "control-plane")) == 3


@pytest.mark.parametrize(("minor", "code", "says"), [
    ("1.32", 2, "upgrade one minor at a time (version skew policy): --k8s 1.31 first"),
    ("1.30", 2, "--k8s 1.30: the control planes run 1.31.8; Kubernetes does not support going "
                "back a minor"),
    ("1.31", 2, "no image at /bake/k8s/1.31/debian-12/amd64/image_id: bake it first (`bake ami "
                "--k8s 1.31 --os debian-12 --arch amd64`)"),
    ("1.99", 2, "1.99 is not in the catalog"),
])
def test_bad_targets_are_one_line_and_change_nothing(cluster, run_bake, minor, code, says):
    text = cluster["file"].read_text()
    if minor == "1.32":
        _publish(cluster["aws"], cluster["new_ami"], "1.32")
    if minor == "1.30":  # the control planes run 1.31 already (the file was left at 1.30)
        db = _client(cluster["aws"], "dynamodb")
        for iid in _in_service(cluster["aws"], "control-plane"):
            db.update_item(TableName="bake-demo", Key={"pk": {"S": f"node#{iid}"}},
                           UpdateExpression="SET kubernetes_version = :v",
                           ExpressionAttributeValues={":v": {"S": NEW}})
    result = run_bake("--endpoint-url", cluster["aws"].endpoint, "upgrade", "-f",
                      str(cluster["file"]), "--k8s", minor, "--yes")
    assert result.exit_code == code, result.stderr
    assert says in _error(result)
    _unchanged(cluster, text)


def test_an_unhealthy_cluster_is_refused_with_every_problem_named(cluster, run_bake):
    aws = cluster["aws"]
    _publish(aws, cluster["new_ami"])
    worker = _in_service(aws, "worker")[0]
    db = _client(aws, "dynamodb")
    db.update_item(TableName="bake-demo", Key={"pk": {"S": f"node#{worker}"}},
                   UpdateExpression="SET #s = :f, failed_phase = :p, #e = :e",
                   ExpressionAttributeNames={"#s": "status", "#e": "error"},
                   ExpressionAttributeValues={":f": {"S": "failed"}, ":p": {"S": "bootstrap"},
                                              ":e": {"S": "kubeadm join failed"}})
    members = json.loads(db.get_item(TableName="bake-demo", Key={"pk": {"S": "etcd-status"}})[
        "Item"]["members"]["S"])
    members[1]["healthy"] = False
    db.put_item(TableName="bake-demo", Item={"pk": {"S": "etcd-status"},
                                             "members": {"S": json.dumps(members)},
                                             "observed_at": {"N": str(time.time())}})
    text = cluster["file"].read_text()
    result = run_bake("--endpoint-url", aws.endpoint, "upgrade", "-f", str(cluster["file"]),
                      "--k8s", "1.31", "--yes")
    assert result.exit_code == 1, result.stderr
    line = _error(result)
    assert "demo is not healthy, so nothing was changed" in line
    assert f"{worker} (worker) is failed in phase bootstrap: kubeadm join failed" in line
    assert f"etcd member {members[1]['name']} is not healthy" in line
    _unchanged(cluster, text)


def test_without_a_terminal_or_yes_it_refuses_before_any_change(cluster, run_bake):
    _publish(cluster["aws"], cluster["new_ami"])
    text = cluster["file"].read_text()
    result = run_bake("--endpoint-url", cluster["aws"].endpoint, "upgrade", "-f",
                      str(cluster["file"]), "--k8s", "1.31")
    assert result.exit_code == 2
    assert "needs a confirmation and there is no terminal: pass --yes" in _error(result)
    _unchanged(cluster, text)


def test_launch_refuses_to_change_the_minor_and_points_at_upgrade(cluster, run_bake):
    aws = cluster["aws"]
    _publish(aws, cluster["new_ami"])
    path = cluster["file"]
    path.write_text(path.read_text().replace('"1.30"', '"1.31"').replace("/1.30/", "/1.31/"))
    result = run_bake("--endpoint-url", aws.endpoint, "launch", "-f", str(path), "--yes")
    assert result.exit_code == 2
    assert (f"the stack bake-demo runs Kubernetes 1.30, the file says 1.31; a launch never "
            f"changes the minor (no node would be replaced): `bake upgrade -f {path} --k8s "
            "1.31` does") in _error(result)
    assert _launch_template_image(aws, "control-plane") == cluster["old_ami"]


def _roll(cluster, nodes, **options):
    from bake.aws.session import AwsClients, AwsTarget
    from bake.cluster import load_checked_cluster
    from bake.upgrade import UpgradeOptions, plan_upgrade, stack_deployer, target_spec, upgrade

    aws = cluster["aws"]
    clients = AwsClients(AwsTarget(region="us-east-1", endpoint_url=aws.endpoint,
                                   access_key_id="testing", secret_access_key="testing"))
    spec = load_checked_cluster(cluster["file"])
    target = target_spec(spec, "1.31")
    plan = plan_upgrade(spec, target, clients)
    lines = []
    deploy = stack_deployer(target, clients, lines.append, 120, 1)
    result = upgrade(plan, spec, clients, UpgradeOptions("1.31", poll_s=0, **options),
                     lambda q: True, lines.append, deploy, cluster["file"], sleep=nodes.step)
    return result, lines, plan


def _commands(aws):
    listed = _client(aws, "ssm").list_commands()["Commands"]
    return [(c["InstanceIds"][0], c["Parameters"]["commands"][0])
            for c in sorted(listed, key=lambda c: c["RequestedDateTime"])]


def test_the_roll_replaces_control_planes_with_one_surge_then_workers(cluster):
    aws, nodes = cluster["aws"], cluster["nodes"]
    _publish(aws, cluster["new_ami"])
    old_cps, old_workers = _in_service(aws, "control-plane"), _in_service(aws, "worker")
    done, lines, plan = _roll(cluster, nodes)
    assert done
    # the file, the stack and every instance moved to the new image
    assert 'kubernetes: "1.31"' in cluster["file"].read_text()
    assert "/bake/k8s/1.31/debian-12/amd64/image_id" in cluster["file"].read_text()
    for role in ("control-plane", "worker"):
        assert _launch_template_image(aws, role) == cluster["new_ami"]
    cps, workers = _in_service(aws, "control-plane"), _in_service(aws, "worker")
    assert len(cps) == 3 and len(workers) == 2
    assert not set(cps) & set(old_cps) and not set(workers) & set(old_workers)
    assert nodes.max_control_planes == 4  # one surge instance, never more
    # every old node drained before it left and its Node object deleted after; kube-proxy and
    # CoreDNS after the last control plane, before the first worker
    names = {n.instance_id: n.hostname for n in plan.control_planes + plan.workers}
    sent = []
    for _, cmd in _commands(aws):  # etcd-status is asked again at each look until it holds
        cmd = cmd.removeprefix("/usr/sbin/bake-node ")
        if not (cmd == "etcd-status" and sent[-1:] == [cmd]):
            sent.append(cmd)
    expected = []
    for iid in sorted(old_cps, key=lambda i: [n.instance_id for n in plan.control_planes]
                      .index(i)):
        # etcd as the new control plane sees it once the old one left: the gate's record
        expected += [f"drain {names[iid]} --timeout 300", f"etcd-remove {names[iid]}",
                     f"delete-node {names[iid]}", "etcd-status"]
    expected.append("upgrade-addons")
    for iid in [n.instance_id for n in plan.workers]:
        expected += [f"drain {names[iid]} --timeout 300", f"delete-node {names[iid]}"]
    assert sent == expected
    assert lines[-1] == (f"demo: every node runs {cluster['new_ami']} (Kubernetes 1.31)")
    assert sum(line.startswith("control plane 3/3: ") for line in lines) == 3


def test_a_surge_control_plane_that_fails_is_removed_and_the_roll_stops(cluster):
    from bake.upgrade import UpgradeError

    aws = cluster["aws"]
    _publish(aws, cluster["new_ami"])
    old_cps = _in_service(aws, "control-plane")
    nodes = Nodes(aws, cluster["new_ami"], fail_new=True)
    with pytest.raises(UpgradeError) as failed:
        _roll(cluster, nodes, node_timeout_s=2)
    message = str(failed.value)
    assert ("failed in phase bootstrap: kubeadm join failed (1): etcd cluster is unavailable "
            "(and it had not joined after 2 s)") in message
    assert "the roll stopped" in message and "keeps its 3 control planes" in message
    assert sorted(_in_service(aws, "control-plane")) == sorted(old_cps)
    assert _commands(aws) == []  # nothing was drained


def test_upgrade_of_a_cluster_that_was_never_launched_is_one_line(embedded, run_bake,
                                                                   cluster_file):
    aws, _ = embedded
    text = cluster_file.read_text()
    result = run_bake("--endpoint-url", aws.endpoint, "upgrade", "-f", str(cluster_file),
                      "--k8s", "1.31", "--yes")
    assert result.exit_code == 1
    assert (f"no stack bake-demo in us-east-1: launch the cluster first (`bake launch -f "
            f"{cluster_file}`)") in _error(result)
    assert cluster_file.read_text() == text


def test_a_node_whose_first_join_fails_is_waited_for_while_its_agent_retries(cluster):
    aws = cluster["aws"]
    _publish(aws, cluster["new_ami"])
    nodes = Nodes(aws, cluster["new_ami"], flaky=True)
    done, lines, _ = _roll(cluster, nodes, workers=False)
    assert done
    retried = [x for x in lines if x.endswith("kubeadm join failed (1): etcd 503 (its agent "
                                              "retries)")]
    assert len(retried) == 3  # once per new control plane, each then joined
    assert len(_in_service(aws, "control-plane")) == 3
