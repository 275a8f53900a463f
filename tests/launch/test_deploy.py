"""`bake launch` / `bake destroy` against the embedded AWS (moto server), and the failure paths
against a Stubber. moto's gaps are bridged by bake.sandbox.compat, never by changing the
template (docs/launch.md lists each gap)."""

from __future__ import annotations

import base64
import datetime as dt
import re

import boto3
import jsonschema
import pytest
import yaml
from botocore.stub import ANY, Stubber

from bake.aws.cloudformation import CloudFormation
from bake.launch import LaunchError, LaunchOptions, launch, render_cluster, stack_parameters


def load_cluster_file(path):
    from bake.cluster import load_cluster

    return load_cluster(path)


def client(aws, service):
    return boto3.client(service, endpoint_url=aws.endpoint, region_name="us-east-1")


def test_launch_and_destroy_in_the_embedded_aws(embedded, run_bake, cluster_file, node_schema):
    aws, ami = embedded
    result = run_bake("--endpoint-url", aws.endpoint, "launch", "-f", str(cluster_file), "--yes")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "change set bake-0-1-0-" in out and "Add     ControlPlaneGroup" in out
    assert re.search(r"CREATE_COMPLETE\s+bake-demo \(AWS::CloudFormation::Stack\)", out)
    assert "stack bake-demo: CREATE_COMPLETE" in out
    endpoint = re.search(r"ApiEndpoint\s+(https://\S+:6443)", out).group(1)
    assert "AdminKubeconfigParameter   /bake/clusters/demo/control-plane/admin-kubeconfig" in out

    # what the stack made, read back through the ordinary APIs
    asg = client(aws, "autoscaling")
    groups = {
        g["AutoScalingGroupName"]: g
        for g in asg.describe_auto_scaling_groups()["AutoScalingGroups"]
    }
    cp = groups["bake-demo-control-plane"]
    assert cp["DesiredCapacity"] == 3 and len(cp["Instances"]) == 3
    assert len(cp["TargetGroupARNs"]) == 1
    worker_tags = {t["Key"]: t["Value"] for t in groups["bake-demo-worker"]["Tags"]}
    assert worker_tags["k8s.io/cluster-autoscaler/demo"] == "owned"

    ec2 = client(aws, "ec2")
    (lt,) = ec2.describe_launch_templates(LaunchTemplateNames=["bake-demo-control-plane"])[
        "LaunchTemplates"
    ]
    data = ec2.describe_launch_template_versions(LaunchTemplateId=lt["LaunchTemplateId"])[
        "LaunchTemplateVersions"
    ][0]["LaunchTemplateData"]
    assert data["ImageId"] == ami  # resolved from the SSM parameter
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    user_data = base64.b64decode(data["UserData"]).decode()
    node = yaml.safe_load(yaml.safe_load(user_data)["write_files"][0]["content"])
    jsonschema.validate(node, node_schema)
    assert f"https://{node['controlPlaneEndpoint']}" == endpoint  # Fn::Sub resolved the NLB name

    elb = client(aws, "elbv2")
    (lb,) = elb.describe_load_balancers(Names=["bake-demo-api"])["LoadBalancers"]
    assert (lb["Type"], lb["Scheme"]) == ("network", "internal")
    (listener,) = elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
    assert (listener["Protocol"], listener["Port"]) == ("TCP", 6443)

    # the change set carried the prefix-list IDs looked up in the region (air-gapped egress)
    params = {p["ParameterKey"]: p["ParameterValue"] for p in client(aws, "cloudformation")
              .describe_stacks(StackName="bake-demo")["Stacks"][0].get("Parameters", [])}
    wanted = stack_parameters(load_cluster_file(cluster_file), ec2)
    assert {k: params.get(k) for k in wanted} == wanted

    table = client(aws, "dynamodb").describe_table(TableName="bake-demo")["Table"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert client(aws, "ssm").get_parameter(Name="/bake/clusters/demo/config")["Parameter"]["Value"]
    # what the first control plane publishes (not a stack resource): a cluster launched again
    # under this name must never find it
    for name in ("shared/join/token", "shared/join/ca-cert-hash",
                 "control-plane/admin-kubeconfig"):
        client(aws, "ssm").put_parameter(Name=f"/bake/clusters/demo/{name}", Value="old",
                                         Type="SecureString")

    result = run_bake("--endpoint-url", aws.endpoint, "destroy", "-f", str(cluster_file), "--yes")
    assert result.exit_code == 0, result.stderr
    assert "stack bake-demo: DELETE_COMPLETE" in result.stdout
    assert ("deleted 3 parameters the nodes wrote under /bake/clusters/demo (join material, "
            "admin kubeconfig)") in result.stdout
    assert client(aws, "ssm").get_parameters_by_path(
        Path="/bake/clusters/demo", Recursive=True)["Parameters"] == []
    # the backups outlive the cluster, and the user is told where they are
    assert re.search(r"kept: s3://\S+ \(the etcd snapshots of demo\) and KMS key \S+",
                     result.stdout), result.stdout
    again = run_bake("--endpoint-url", aws.endpoint, "destroy", "-f", str(cluster_file), "--yes")
    assert again.exit_code == 0 and "nothing to delete" in again.stdout


def test_declined_change_set_is_deleted_and_nothing_deployed(embedded, cluster_file):
    aws, _ = embedded
    from bake.cluster import load_cluster

    cfn = CloudFormation(client(aws, "cloudformation"), sleep=lambda s: None)
    lines: list[str] = []
    result = launch(LaunchOptions(load_cluster(cluster_file)), cfn, lines.append, lambda q: False)
    assert result.status == "DECLINED"
    assert lines[-1] == "not applied; change set deleted"
    assert cfn.client.list_change_sets(StackName="bake-demo")["Summaries"] == []


# --- failure paths (Stubber: CloudFormation API model) -------------------------------------

ARN = "arn:aws:cloudformation:us-east-1:123456789012"
STACK_ID = f"{ARN}:stack/bake-demo/00000000-0000-0000-0000-000000000000"
CS_ID = f"{ARN}:changeSet/bake-x/00000000-0000-0000-0000-000000000001"
VCPU_LIMIT = "You have requested more vCPU capacity than your current vCPU limit of 4 allows"
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _event(n, logical, rtype, status, reason=""):
    e = {
        "StackId": STACK_ID,
        "EventId": f"e{n}",
        "StackName": "bake-demo",
        "LogicalResourceId": logical,
        "ResourceType": rtype,
        "Timestamp": NOW,
        "ResourceStatus": status,
    }
    if reason:
        e["ResourceStatusReason"] = reason
    return e


def _stack(status):
    return {
        "Stacks": [
            {
                "StackName": "bake-demo",
                "StackId": STACK_ID,
                "CreationTime": NOW,
                "StackStatus": status,
            }
        ]
    }


def test_failed_stack_names_the_first_failing_resource(specs):
    spec = specs["airgapped"]
    docs = render_cluster(spec)
    cf = boto3.client("cloudformation", region_name="us-east-1")
    with Stubber(cf) as stub:
        missing = {
            "Error": {
                "Code": "ValidationError",
                "Message": "Stack with id bake-demo does not exist",
            }
        }
        stub.add_client_error("describe_stacks", "ValidationError", missing["Error"]["Message"])
        stub.add_client_error("describe_stacks", "ValidationError", missing["Error"]["Message"])
        stub.add_response(
            "create_change_set",
            {"Id": CS_ID, "StackId": STACK_ID},
            {
                "StackName": "bake-demo",
                "ChangeSetName": ANY,
                "TemplateBody": docs.template_body,
                "ChangeSetType": "CREATE",
                "Capabilities": ["CAPABILITY_NAMED_IAM"],
                "Tags": ANY,
            },
        )
        stub.add_response(
            "describe_change_set",
            {
                "Status": "CREATE_COMPLETE",
                "ChangeSetId": CS_ID,
                "Changes": [
                    {
                        "Type": "Resource",
                        "ResourceChange": {
                            "Action": "Add",
                            "LogicalResourceId": "Vpc",
                            "ResourceType": "AWS::EC2::VPC",
                        },
                    }
                ],
            },
            {"ChangeSetName": CS_ID},
        )
        stub.add_response("execute_change_set", {}, {"ChangeSetName": CS_ID})
        stub.add_response(
            "describe_stacks", _stack("ROLLBACK_COMPLETE"), {"StackName": "bake-demo"}
        )
        stub.add_response(
            "describe_stack_events",
            {
                "StackEvents": list(
                    reversed(
                        [
                            _event(
                                1,
                                "bake-demo",
                                "AWS::CloudFormation::Stack",
                                "CREATE_IN_PROGRESS",
                                "User Initiated",
                            ),
                            _event(
                                2,
                                "ControlPlaneGroup",
                                "AWS::AutoScaling::AutoScalingGroup",
                                "CREATE_FAILED",
                                VCPU_LIMIT,
                            ),
                            _event(
                                3,
                                "WorkerGroup",
                                "AWS::AutoScaling::AutoScalingGroup",
                                "CREATE_FAILED",
                                "Resource creation cancelled",
                            ),
                            _event(
                                4, "bake-demo", "AWS::CloudFormation::Stack", "ROLLBACK_COMPLETE"
                            ),
                        ]
                    )
                )
            },
            {"StackName": "bake-demo"},
        )
        lines: list[str] = []
        with pytest.raises(LaunchError) as err:
            launch(
                LaunchOptions(spec, yes=True),
                CloudFormation(cf, sleep=lambda s: None),
                lines.append,
                lambda q: pytest.fail("asked despite --yes"),
                docs=docs,
            )
        stub.assert_no_pending_responses()
    assert str(err.value.format_message()) == (
        "stack bake-demo ended ROLLBACK_COMPLETE: "
        "ControlPlaneGroup (AWS::AutoScaling::AutoScalingGroup): "
        + VCPU_LIMIT
    )
    assert any("CREATE_FAILED" in line and "ControlPlaneGroup" in line for line in lines)


def test_launch_refuses_a_rolled_back_stack(specs):
    cf = boto3.client("cloudformation", region_name="us-east-1")
    with Stubber(cf) as stub:
        stub.add_response(
            "describe_stacks", _stack("ROLLBACK_COMPLETE"), {"StackName": "bake-demo"}
        )
        with pytest.raises(LaunchError, match="bake destroy"):
            launch(
                LaunchOptions(specs["airgapped"], yes=True),
                CloudFormation(cf),
                print,
                lambda q: True,
            )


def test_launch_without_aws_credentials_is_one_line(run_bake, cluster_file, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    result = run_bake(
        "--endpoint-url", "http://127.0.0.1:9", "launch", "-f", str(cluster_file), "--yes"
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("bake: error: ") and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# --- an unanswered question leaves nothing behind (issue 12.2) ------------------------------


def test_no_terminal_and_no_yes_refuses_before_anything_is_made(embedded, run_bake, cluster_file):
    aws, _ = embedded
    result = run_bake("--endpoint-url", aws.endpoint, "launch", "-f", str(cluster_file))
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "bake: error: bake launch of stack bake-demo needs a confirmation and there is no "
        "terminal: pass --yes"
    ]
    cfn = CloudFormation(client(aws, "cloudformation"))
    assert cfn.stack_status("bake-demo") is None
    destroy = run_bake("--endpoint-url", aws.endpoint, "destroy", "-f", str(cluster_file))
    assert destroy.exit_code == 2 and "pass --yes" in destroy.stderr


@pytest.mark.parametrize("answer", ["decline", "ctrl-c"])
def test_an_unapplied_create_leaves_no_stack_in_review(embedded, cluster_file, answer):
    aws, _ = embedded
    import click

    from bake.cluster import load_cluster

    cfn = CloudFormation(client(aws, "cloudformation"), sleep=lambda s: None)

    def confirm(question):
        if answer == "ctrl-c":
            raise click.exceptions.Abort()
        return False

    spec = load_cluster(cluster_file)
    params = stack_parameters(spec, client(aws, "ec2"))
    if answer == "ctrl-c":
        with pytest.raises(click.exceptions.Abort):
            launch(LaunchOptions(spec), cfn, lambda line: None, confirm, parameters=params)
    else:
        declined = launch(LaunchOptions(spec), cfn, lambda line: None, confirm, parameters=params)
        assert declined.status == "DECLINED"
    assert cfn.stack_status("bake-demo") is None  # not REVIEW_IN_PROGRESS
    # and the next launch goes through
    lines: list[str] = []
    result = launch(LaunchOptions(spec, yes=True, poll_seconds=0), cfn, lines.append, confirm,
                    parameters=params)
    assert result.status == "CREATE_COMPLETE", lines[-5:]


def test_a_stack_left_in_review_by_bake_is_recognised_and_cleared(embedded, cluster_file):
    """What an older bake (or a killed process) left: a CREATE change set never executed."""
    aws, _ = embedded
    from bake.cluster import load_cluster

    spec = load_cluster(cluster_file)
    cfn = CloudFormation(client(aws, "cloudformation"), sleep=lambda s: None)
    docs = render_cluster(spec)
    params = stack_parameters(spec, client(aws, "ec2"))
    cfn.wait_change_set(cfn.create_change_set("bake-demo", "bake-0-1-0-old", docs.template,
                                              "CREATE", {"bake:cluster": "demo"}, params))
    assert cfn.stack_status("bake-demo") == "REVIEW_IN_PROGRESS"

    lines: list[str] = []
    declined = launch(LaunchOptions(spec), cfn, lines.append, lambda q: False, docs=docs,
                      parameters=params)
    assert declined.status == "DECLINED"
    assert any("left in review by an earlier `bake launch`" in line for line in lines)
    assert cfn.stack_status("bake-demo") == "REVIEW_IN_PROGRESS"  # the user said no: untouched

    questions: list[str] = []
    done = launch(LaunchOptions(spec, poll_seconds=0), cfn, lines.append,
                  lambda q: questions.append(q) or True, docs=docs, parameters=params)
    assert done.status == "CREATE_COMPLETE"
    assert questions[0].startswith("delete that change set and the empty stack bake-demo")


def test_destroy_checks_the_target_before_asking(run_bake, cluster_file, tmp_path):
    """An embedded AWS that is not running is reported before any question."""
    result = run_bake("--data-dir", str(tmp_path / "nodata"), "destroy", "-f", str(cluster_file),
                      "--local", "--yes")
    assert result.exit_code == 1
    assert "the embedded AWS is not running" in result.stderr


def test_destroy_of_a_missing_stack_asks_nothing(embedded, run_bake, cluster_file, monkeypatch):
    aws, _ = embedded
    monkeypatch.setattr("bake.commands.common.interactive", lambda: True)
    monkeypatch.setattr("click.confirm", lambda *a, **k: pytest.fail("asked"))
    result = run_bake("--endpoint-url", aws.endpoint, "destroy", "-f", str(cluster_file))
    assert result.exit_code == 0 and "nothing to delete" in result.stdout
