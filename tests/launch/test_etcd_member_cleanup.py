"""The etcd member cleanup Lambda, against botocore Stubbers (request parameters are checked
against each service's model). moto implements neither lifecycle hooks nor
complete_lifecycle_action, so these stubs are the test of that code path (docs/launch.md)."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import ANY, Stubber

from bake.lambdas import etcd_member_cleanup as cleanup

TARGET, PEER, OTHER = "i-0aaaaaaaaaaaaaaa1", "i-0bbbbbbbbbbbbbbb2", "i-0ccccccccccccccc3"
GROUP, HOOK, TOKEN = (
    "bake-demo-control-plane",
    "etcd-member-cleanup",
    "a1b2c3d4-0000-4000-8000-000000000001",
)
C1, C2 = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
IPS = {TARGET: "10.0.1.10", PEER: "10.0.2.20", OTHER: "10.0.3.30"}
IDS = {TARGET: 11111111111111111111, PEER: 2222222222, OTHER: 3333333333}


def event():
    return {
        "source": "aws.autoscaling",
        "detail-type": "EC2 Instance-terminate Lifecycle Action",
        "detail": {
            "LifecycleActionToken": TOKEN,
            "AutoScalingGroupName": GROUP,
            "LifecycleHookName": HOOK,
            "EC2InstanceId": TARGET,
            "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
        },
    }


class Context:
    def get_remaining_time_in_millis(self):
        return 240_000


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setattr(cleanup.time, "sleep", lambda s: None)
    clients = [boto3.client(s, region_name="us-east-1") for s in ("ec2", "autoscaling", "ssm")]
    stubs = [Stubber(c) for c in clients]
    for s in stubs:
        s.activate()
    yield clients, stubs
    for s in stubs:
        s.assert_no_pending_responses()
        s.deactivate()


def instance_exists(ec2, present=True):
    instances = [{"InstanceId": TARGET, "PrivateIpAddress": IPS[TARGET]}] if present else []
    ec2.add_response(
        "describe_instances",
        {"Reservations": [{"Instances": instances}] if present else []},
        {"Filters": [{"Name": "instance-id", "Values": [TARGET]}]},
    )


def group(asg, healthy_peers=(PEER, OTHER)):
    instances = [
        {"InstanceId": TARGET, "LifecycleState": "Terminating:Wait", "HealthStatus": "Healthy"}
    ]
    instances += [
        {"InstanceId": i, "LifecycleState": "InService", "HealthStatus": "Healthy"}
        for i in healthy_peers
    ]
    base = {"AvailabilityZone": "us-east-1a", "ProtectedFromScaleIn": False}
    asg.add_response(
        "describe_auto_scaling_groups",
        {
            "AutoScalingGroups": [
                {
                    "AutoScalingGroupName": GROUP,
                    "MinSize": 3,
                    "MaxSize": 3,
                    "DesiredCapacity": 3,
                    "DefaultCooldown": 300,
                    "AvailabilityZones": ["us-east-1a"],
                    "HealthCheckType": "EC2",
                    "CreatedTime": "2026-01-01T00:00:00Z",
                    "Instances": [{**base, **i} for i in instances],
                }
            ]
        },
        {"AutoScalingGroupNames": [GROUP]},
    )


def ssm_run(ssm, command_id, status="Success", stdout="", expect=None, instance=PEER,
            instances=None):
    """One Run Command: sent to ``instances`` (default ``[instance]``), then one invocation
    read per instance in order: ``status`` for ``instance``, the others still in progress
    before it, or failed when ``status`` is a list of (instance, status) pairs."""
    targets = instances or [instance]
    ssm.add_response(
        "send_command",
        {"Command": {"CommandId": command_id}},
        {
            "InstanceIds": targets,
            "DocumentName": "AWS-RunShellScript",
            "Parameters": {"commands": expect or ANY},
            "TimeoutSeconds": 60,
        },
    )
    answers = status if isinstance(status, list) else [(instance, status)]
    for target, state in answers:
        ssm.add_response(
            "get_command_invocation",
            {
                "CommandId": command_id,
                "InstanceId": target,
                "Status": state,
                "StandardOutputContent": stdout if state == "Success" else "",
                "StandardErrorContent": "etcdserver: unhealthy cluster"
                if state != "Success" else "",
            },
            {"CommandId": command_id, "InstanceId": target},
        )


def etcd_state(members=(TARGET, PEER, OTHER), healthy=(TARGET, PEER, OTHER)):
    listing = {
        "members": [
            {
                "ID": IDS[i],
                "name": f"ip-{IPS[i].replace('.', '-')}",
                "peerURLs": [f"https://{IPS[i]}:2380"],
                "clientURLs": [f"https://{IPS[i]}:2379"],
            }
            for i in members
        ]
    }
    health = [{"endpoint": f"https://{IPS[i]}:2379", "health": i in healthy} for i in members]
    return json.dumps(listing) + "\n" + json.dumps(health) + "\n"


def completes(asg, error=None):
    params = {
        "LifecycleHookName": HOOK,
        "AutoScalingGroupName": GROUP,
        "LifecycleActionToken": TOKEN,
        "LifecycleActionResult": "CONTINUE",
        "InstanceId": TARGET,
    }
    if error:
        asg.add_client_error(
            "complete_lifecycle_action", "ValidationError", error, expected_params=params
        )
    else:
        asg.add_response("complete_lifecycle_action", {}, params)


def test_member_found_and_removed(aws):
    clients, (ec2, asg, ssm) = aws
    instance_exists(ec2)
    group(asg)
    ssm_run(ssm, C1, stdout=etcd_state(), instances=[PEER, OTHER])
    ssm_run(ssm, C2, expect=[cleanup.ETCDCTL + f"member remove {IDS[TARGET]:x}"])
    completes(asg)
    assert cleanup.handler(event(), Context(), clients) == {"instance": TARGET, "result": "removed"}


def test_instance_already_gone_still_completes(aws):
    clients, (ec2, asg, ssm) = aws
    instance_exists(ec2, present=False)
    completes(asg)
    assert cleanup.handler(event(), Context(), clients)["result"] == "instance-gone"


def test_quorum_would_be_lost_so_member_is_kept(aws):
    clients, (ec2, asg, ssm) = aws
    instance_exists(ec2)
    group(asg)
    # the two other members are unhealthy: removing one more would leave no majority
    ssm_run(ssm, C1, stdout=etcd_state(healthy=(TARGET, PEER)), instances=[PEER, OTHER])
    completes(asg)
    assert cleanup.handler(event(), Context(), clients)["result"] == "quorum-would-be-lost"


def test_ssm_command_failure_on_every_peer_still_completes_the_lifecycle_action(aws):
    clients, (ec2, asg, ssm) = aws
    instance_exists(ec2)
    group(asg)
    ssm_run(ssm, C1, status=[(PEER, "Failed"), (OTHER, "Failed")], instances=[PEER, OTHER])
    completes(asg)
    result = cleanup.handler(event(), Context(), clients)["result"]
    assert result.startswith("no-peer-answered (SSM command " + C1 + " failed")
    assert PEER in result and OTHER in result
    assert "unhealthy cluster" in result


def test_a_peer_that_does_not_answer_is_skipped(aws):
    """A control plane can be down while its group still reports it Healthy (EC2 status checks
    take minutes): every peer gets the command at once, so the hung one costs no time; the one
    that answers lists and removes the member."""
    clients, (ec2, asg, ssm) = aws
    instance_exists(ec2)
    group(asg)
    ssm_run(ssm, C1, status=[(PEER, "InProgress"), (OTHER, "Success")],
            stdout=etcd_state(healthy=(TARGET, OTHER, PEER)), instances=[PEER, OTHER])
    ssm_run(ssm, C2, instance=OTHER, expect=[cleanup.ETCDCTL + f"member remove {IDS[TARGET]:x}"])
    completes(asg)
    assert cleanup.handler(event(), Context(), clients)["result"] == "removed"


def test_duplicate_event_is_a_no_op(aws):
    clients, (ec2, asg, ssm) = aws
    instance_exists(ec2)
    group(asg)
    ssm_run(ssm, C1, stdout=etcd_state(members=(PEER, OTHER), healthy=(PEER, OTHER)),
            instances=[PEER, OTHER])
    completes(asg, error="No active Lifecycle Action found with instance ID " + TARGET)
    assert cleanup.handler(event(), Context(), clients)["result"] == "already-removed"


def test_no_healthy_peer_completes_without_removal(aws):
    clients, (ec2, asg, ssm) = aws
    instance_exists(ec2)
    group(asg, healthy_peers=())
    completes(asg)
    assert cleanup.handler(event(), Context(), clients)["result"] == "no-healthy-peer"


def test_wait_is_bounded(aws, monkeypatch):
    clients, (ec2, asg, ssm) = aws
    instance_exists(ec2)
    group(asg)
    clock = iter(range(0, 10_000, 10))
    monkeypatch.setattr(cleanup.time, "time", lambda: next(clock))
    # 10 s per clock read: the deadline is read at 0 s (+ WAIT_SECONDS, 120 s), then one read per
    # round (10 s .. 110 s): 11 rounds polling both peers, then the action is completed anyway
    ssm.add_response("send_command", {"Command": {"CommandId": C1}}, None)
    for _ in range(cleanup.WAIT_SECONDS // 10 - 1):
        for peer in (PEER, OTHER):
            ssm.add_response(
                "get_command_invocation",
                {"CommandId": C1, "InstanceId": peer, "Status": "InProgress"},
                {"CommandId": C1, "InstanceId": peer},
            )
    completes(asg)
    result = cleanup.handler(event(), Context(), clients)["result"]
    assert result == f"no-peer-answered (SSM command {C1} timed out)"


@pytest.mark.parametrize(
    ("members", "healthy", "safe"),
    [
        ([1, 2, 3], {1, 2, 3}, True),
        ([1, 2, 3], {2, 3}, True),  # the leaving member is already sick; 2 healthy remain
        ([1, 2, 3], {1, 3}, False),  # 2 remain, one healthy: no majority of 2
        ([1, 2, 3, 4, 5], {2, 3, 4}, True),
        ([1, 2, 3, 4, 5], {1, 2, 3}, False),  # 4 remain, 2 healthy: no majority of 4
        ([1], {1}, False),  # never remove the last member
    ],
    ids=["3-all", "3-target-sick", "3-one-healthy-left", "5-majority", "5-minority", "last"],
)
def test_quorum_rule(members, healthy, safe):
    assert cleanup.quorum_safe(members, healthy, 1) is safe
