"""The local platform's SSM Run Command and lifecycle completion, without VMs.

A guest agent speaking the QEMU Guest Agent protocol (guest-sync-delimited, guest-exec with
capture-output, guest-exec-status; base64 output) on a unix socket stands in for a VM's
qemu-ga; the real one answers in the VM tests (tests/e2e/test_local_cluster.py drills). The
Auto Scaling side is checked with botocore's Stubber against the service model.
"""

from __future__ import annotations

import time

import boto3
import pytest
from botocore.stub import Stubber
from tests.support.guest_agent import FakeGuestAgent

from bake.localcluster.guest import GuestAgent, GuestAgentError
from bake.localcluster.runcommand import LifecycleGroup, LocalRunCommand


@pytest.fixture
def agent(tmp_path):
    path = tmp_path / "qga.sock"
    fake = FakeGuestAgent(path)
    fake.start()
    yield path
    fake.server.close()


def test_guest_agent_runs_a_script_and_returns_its_output(agent):
    result = GuestAgent(agent).run("echo out; echo err >&2; exit 3")
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")


def test_no_guest_agent_is_one_clear_error(tmp_path):
    with pytest.raises(GuestAgentError, match="cannot reach the guest agent"):
        GuestAgent(tmp_path / "absent.sock").run("true")


def test_run_command_follows_ssm_statuses(agent):
    ssm = LocalRunCommand({"i-0aaaaaaaaaaaaaaa1": agent})
    cmd = ssm.send_command(InstanceIds=["i-0aaaaaaaaaaaaaaa1"],
                           DocumentName="AWS-RunShellScript",
                           Parameters={"commands": ["sleep 1", "echo listed"]},
                           TimeoutSeconds=60)["Command"]["CommandId"]
    first = ssm.get_command_invocation(CommandId=cmd, InstanceId="i-0aaaaaaaaaaaaaaa1")
    assert first["Status"] == "InProgress"
    deadline = time.monotonic() + 20
    while ssm.get_command_invocation(CommandId=cmd, InstanceId="i-0aaaaaaaaaaaaaaa1")[
            "Status"] == "InProgress" and time.monotonic() < deadline:
        time.sleep(0.2)
    done = ssm.get_command_invocation(CommandId=cmd, InstanceId="i-0aaaaaaaaaaaaaaa1")
    assert (done["Status"], done["StandardOutputContent"], done["ResponseCode"]) == (
        "Success", "listed\n", 0)
    with pytest.raises(ssm.exceptions.InvocationDoesNotExist):
        ssm.get_command_invocation(CommandId="nope", InstanceId="i-0aaaaaaaaaaaaaaa1")
    with pytest.raises(ssm.exceptions.InvalidInstanceId):
        ssm.send_command(InstanceIds=["i-0bbbbbbbbbbbbbbb2"], DocumentName="AWS-RunShellScript",
                         Parameters={"commands": ["true"]})


def test_completing_the_lifecycle_action_terminates_without_shrinking_the_group():
    client = boto3.client("autoscaling", region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    seen = []
    group = LifecycleGroup(client, lambda i, r: seen.append((i, r)))
    with Stubber(client) as stub:
        stub.add_response("terminate_instance_in_auto_scaling_group", {"Activity": {
            "ActivityId": "a", "AutoScalingGroupName": "bake-demo-control-plane",
            "Cause": "drill", "StartTime": "2026-12-02T00:00:00Z", "StatusCode": "InProgress"}},
            {"InstanceId": "i-0aaaaaaaaaaaaaaa1", "ShouldDecrementDesiredCapacity": False})
        group.complete_lifecycle_action(
            LifecycleHookName="etcd-member-cleanup", AutoScalingGroupName="bake-demo-control-plane",
            LifecycleActionToken="t", LifecycleActionResult="CONTINUE",
            InstanceId="i-0aaaaaaaaaaaaaaa1")
    assert seen == [("i-0aaaaaaaaaaaaaaa1", "CONTINUE")]
    assert group.completed[0]["result"] == "CONTINUE"


def test_after_an_upgrades_surge_the_completion_shrinks_the_group_back():
    client = boto3.client("autoscaling", region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    group = LifecycleGroup(client, decrement=True)
    with Stubber(client) as stub:
        stub.add_response("terminate_instance_in_auto_scaling_group", {"Activity": {
            "ActivityId": "a", "AutoScalingGroupName": "bake-demo-control-plane",
            "Cause": "upgrade", "StartTime": "2026-12-05T00:00:00Z", "StatusCode": "InProgress"}},
            {"InstanceId": "i-0aaaaaaaaaaaaaaa1", "ShouldDecrementDesiredCapacity": True})
        group.complete_lifecycle_action(
            LifecycleHookName="etcd-member-cleanup", AutoScalingGroupName="bake-demo-control-plane",
            LifecycleActionToken="t", LifecycleActionResult="CONTINUE",
            InstanceId="i-0aaaaaaaaaaaaaaa1")
        stub.assert_no_pending_responses()


def test_the_cluster_run_command_reaches_vms_that_booted_after_it_was_made(agent, tmp_path):
    from bake.localcluster.runcommand import ClusterRunCommand

    running = {}
    ssm = ClusterRunCommand(lambda: dict(running))
    running["i-0ccccccccccccccc3"] = agent  # a VM booted during the roll
    cmd = ssm.send_command(InstanceIds=["i-0ccccccccccccccc3"],
                           DocumentName="AWS-RunShellScript",
                           Parameters={"commands": ["echo new"]})["Command"]["CommandId"]
    deadline = time.monotonic() + 20
    while ssm.get_command_invocation(CommandId=cmd, InstanceId="i-0ccccccccccccccc3")[
            "Status"] == "InProgress" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ssm.get_command_invocation(CommandId=cmd, InstanceId="i-0ccccccccccccccc3")[
        "StandardOutputContent"] == "new\n"
