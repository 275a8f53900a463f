"""The rendered cluster template: golden files, cfn-lint, checkov, and the security properties
issue 5 asks for, read from the parsed template the way a reviewer would check them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from bake.launch import GATEWAY_ENDPOINTS, INTERFACE_ENDPOINTS

GOLDEN = Path(__file__).parent / "golden"
# checkov's CLI without its PyPI update check (update_checker is only there with some checkov
# versions and extras; when it is absent there is no check to switch off)
CHECKOV = (
    "import sys\n"
    "try:\n"
    "    import update_checker\n"
    "    update_checker.UpdateChecker.check = lambda *a, **k: None\n"
    "except ImportError:\n"
    "    pass\n"
    "from checkov.main import Checkov; sys.exit(Checkov().run())"
)
VARIANTS = ["airgapped", "nat", "existing-vpc"]
# checkov lives in a venv of its own (`make venv` makes .venv-tools): it pins boto3 to a release
# older than bake needs. BAKE_CHECKOV_PYTHON may point at another interpreter that has it.
CHECKOV_PYTHON = Path(
    os.environ.get(
        "BAKE_CHECKOV_PYTHON", Path(__file__).resolve().parents[2] / ".venv-tools/bin/python"
    )
)


def resources(docs, kind=None):
    res = docs.template_data["Resources"]
    return {k: v for k, v in res.items() if kind is None or v["Type"] == kind}


@pytest.mark.parametrize("variant", VARIANTS)
def test_golden_cluster_artifacts(rendered, variant, golden):
    """Every rendered artifact matches tests/launch/golden/<variant>/ (``make golden``)."""
    golden.check(GOLDEN / variant, rendered[variant].files(), complete=True)


@pytest.mark.parametrize("variant", VARIANTS)
def test_cfn_lint_has_no_errors(rendered, specs, variant):
    from cfnlint.api import ManualArgs, lint

    matches = lint(rendered[variant].template, config=ManualArgs(regions=[specs[variant].region]))
    errors = [f"{m.rule.id} {m.path}: {m.message}" for m in matches if m.rule.id.startswith("E")]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.skipif(
    not CHECKOV_PYTHON.exists(),
    reason=f"checkov's venv {CHECKOV_PYTHON} is missing: run `make venv` (make test does)",
)
def test_checkov_has_no_failed_checks_and_every_skip_has_a_reason(rendered, variant, tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text(rendered[variant].template)
    got = subprocess.run(
        # checkov's CLI, with its PyPI update check switched off and --skip-download (no call to
        # the Bridgecrew/Prisma platform): the scan itself is offline
        [
            str(CHECKOV_PYTHON),
            "-c",
            CHECKOV,
            "-f",
            str(path),
            "--framework",
            "cloudformation",
            "--skip-download",
            "--quiet",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    report = json.loads(got.stdout[got.stdout.index("{") :])
    summary = report.get("summary", report)
    assert summary["failed"] == 0, json.dumps(
        report.get("results", {}).get("failed_checks"), indent=1
    )[:4000]
    assert summary["passed"] > 50
    for name, res in resources(rendered[variant]).items():
        for skip in res.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert len(skip.get("comment", "")) > 20, (
                f"{name}: {skip['id']} suppressed without a reason"
            )


def _ingress_rules(docs):
    rules = []
    for name, res in resources(docs, "AWS::EC2::SecurityGroup").items():
        for rule in res["Properties"].get("SecurityGroupIngress", []):
            rules.append((name, rule))
    for res in resources(docs, "AWS::EC2::SecurityGroupIngress").values():
        rules.append((res["Properties"]["GroupId"]["Ref"], res["Properties"]))
    return rules


@pytest.mark.parametrize("variant", VARIANTS)
def test_security_groups(rendered, specs, variant):
    docs, spec = rendered[variant], specs[variant]
    rules = _ingress_rules(docs)
    assert rules
    for group, rule in rules:
        assert rule.get("CidrIp") != "0.0.0.0/0", f"{group} open to the world: {rule}"
        assert rule.get("CidrIpv6") is None
    # the self-referencing rule: node-to-node, pod and DNS traffic
    assert any(
        g == "NodeSecurityGroup"
        and r.get("SourceSecurityGroupId") == {"Ref": "NodeSecurityGroup"}
        and r["IpProtocol"] == "-1"
        for g, r in rules
    )
    # 6443 from outside the cluster only through the NLB group, and only from allowed CIDRs
    api_cidrs = sorted(
        r["CidrIp"] for g, r in rules if g == "ApiLoadBalancerSecurityGroup" and "CidrIp" in r
    )
    assert api_cidrs == sorted(spec.network.allowed_api_cidrs)
    assert all(
        r["FromPort"] == 6443 and r["ToPort"] == 6443
        for g, r in rules
        if g == "ApiLoadBalancerSecurityGroup"
    )
    # the nodes take no traffic by address, except ingress-nginx's NodePorts from the VPC
    # (addons.ingressNginx with serviceType NodePort: existing-vpc)
    node_cidr_rules = [r for g, r in rules if g == "NodeSecurityGroup" and "CidrIp" in r]
    ingress = spec.addons.settings("ingress-nginx").get("serviceType") == "NodePort"
    assert [(r["CidrIp"], r["FromPort"], r["ToPort"]) for r in node_cidr_rules] == (
        [(spec.network.vpc_cidr, port, port) for port in (30080, 30443)] if ingress else [])


@pytest.mark.parametrize("variant", VARIANTS)
def test_network_mode(rendered, specs, variant):
    docs, spec = rendered[variant], specs[variant]
    res = resources(docs)
    types = {r["Type"] for r in res.values()}
    endpoints = {
        r["Properties"]["ServiceName"]["Fn::Sub"].rsplit(".", 1)[1]: r["Properties"]
        for r in resources(docs, "AWS::EC2::VPCEndpoint").values()
    }
    if spec.network.air_gapped:
        assert "AWS::EC2::InternetGateway" not in types and "AWS::EC2::NatGateway" not in types
        for name in INTERFACE_ENDPOINTS:
            assert endpoints[name]["VpcEndpointType"] == "Interface"
            assert endpoints[name]["PrivateDnsEnabled"] is True
        if spec.network.mode == "create":
            for name in GATEWAY_ENDPOINTS:
                assert endpoints[name]["VpcEndpointType"] == "Gateway"
    else:
        assert endpoints == {}
        assert "AWS::EC2::NatGateway" in types
    if spec.network.mode == "existing":
        assert "AWS::EC2::VPC" not in types
        lb = res["ApiLoadBalancer"]["Properties"]
        assert lb["Subnets"] == list(spec.network.subnet_ids)


@pytest.mark.parametrize("variant", VARIANTS)
def test_nodes_launch_templates_and_groups(rendered, specs, variant):
    docs, spec = rendered[variant], specs[variant]
    res = resources(docs)
    assert docs.template_data["Parameters"]["ImageId"] == {
        "Type": "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>",
        "Default": spec.image_ssm_parameter,
        "Description": docs.template_data["Parameters"]["ImageId"]["Description"],
    }
    for role in ("ControlPlane", "Worker"):
        data = res[f"{role}LaunchTemplate"]["Properties"]["LaunchTemplateData"]
        assert data["ImageId"] == {"Ref": "ImageId"}
        assert data["MetadataOptions"]["HttpTokens"] == "required"
        ebs = data["BlockDeviceMappings"][0]["Ebs"]
        assert ebs["VolumeType"] == "gp3" and ebs["Encrypted"] is True
        assert ebs["KmsKeyId"] == {"Fn::GetAtt": ["ClusterKey", "Arn"]}
        user_data = data["UserData"]["Fn::Base64"]["Fn::Sub"]
        assert user_data == docs.user_data["control-plane" if role == "ControlPlane" else "worker"]
    cp = res["ControlPlaneGroup"]["Properties"]
    assert cp["MinSize"] == cp["DesiredCapacity"] == str(spec.control_plane.desired)
    # room for the one surge instance of `bake upgrade`, and no CloudFormation rolling update
    # (a blind pause between replacements): bake rolls control planes gated on etcd health
    assert cp["MaxSize"] == str(spec.control_plane.desired + 1)
    assert "UpdatePolicy" not in res["ControlPlaneGroup"]
    assert cp["TargetGroupARNs"] == [{"Ref": "ApiTargetGroup"}]
    assert len(cp["VPCZoneIdentifier"]) >= 2  # spread over AZs
    (hook,) = cp["LifecycleHookSpecificationList"]
    assert hook["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING"
    assert hook["DefaultResult"] == "CONTINUE"
    wk = res["WorkerGroup"]["Properties"]
    tags = {t["Key"]: t["Value"] for t in wk["Tags"]}
    if spec.addons.has("cluster-autoscaler"):  # its discovery tags (test_iam_policies.py)
        assert tags["k8s.io/cluster-autoscaler/enabled"] == "true"
        assert tags[f"k8s.io/cluster-autoscaler/{spec.name}"] == "owned"
    else:
        assert not any(k.startswith("k8s.io/cluster-autoscaler/") for k in tags)
    overrides = wk["MixedInstancesPolicy"]["LaunchTemplate"]["Overrides"]
    assert [o["InstanceType"] for o in overrides] == list(spec.workers.instance_types)
    listener = res["ApiListener"]["Properties"]
    assert (listener["Protocol"], listener["Port"]) == ("TCP", 6443)
    lb = res["ApiLoadBalancer"]["Properties"]
    assert (lb["Type"], lb["Scheme"]) == ("network", "internal")


@pytest.mark.parametrize("variant", VARIANTS)
def test_data_stores_are_encrypted_and_recoverable(rendered, variant):
    res = resources(rendered[variant])
    table = res["LockTable"]["Properties"]
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["SSESpecification"]["KMSMasterKeyId"] == {"Ref": "ClusterKey"}
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]  # bake_node's lease
    assert res["ClusterKey"]["Properties"]["EnableKeyRotation"] is True


# actions whose IAM definition supports no resource-level permission (Service Authorization
# Reference), the only ones allowed on "*"
UNSCOPABLE = {
    "ec2:DescribeInstances",
    "autoscaling:DescribeAutoScalingGroups",
    "elasticloadbalancing:DescribeTargetHealth",
    "ssm:GetCommandInvocation",
    # registry.ecrCredentialProvider's pull token (ECR GetAuthorizationToken: no resource types)
    "ecr:GetAuthorizationToken",
    # addons.clusterAutoscaler's reads (autoscaler cloudprovider/aws README)
    "autoscaling:DescribeAutoScalingInstances",
    "autoscaling:DescribeLaunchConfigurations",
    "autoscaling:DescribeScalingActivities",
    "autoscaling:DescribeTags",
    "ec2:DescribeImages",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeLaunchTemplateVersions",
    "ec2:GetInstanceTypesFromInstanceRequirements",
    # addons.awsCloudController's reads (cloud-provider-aws docs) and addons.ebsCsi's
    # (aws-ebs-csi-driver docs/example-iam-policy.json)
    "ec2:DescribeAvailabilityZones",
    "ec2:DescribeInstanceTopology",
    "ec2:DescribeRegions",
    "ec2:DescribeRouteTables",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeSubnets",
    "ec2:DescribeVpcs",
    "ec2:DescribeSnapshots",
    "ec2:DescribeTags",
    "ec2:DescribeVolumes",
    "ec2:DescribeVolumesModifications",
    "elasticloadbalancing:DescribeListeners",
    "elasticloadbalancing:DescribeLoadBalancerAttributes",
    "elasticloadbalancing:DescribeLoadBalancerPolicies",
    "elasticloadbalancing:DescribeLoadBalancers",
    "elasticloadbalancing:DescribeTags",
    "elasticloadbalancing:DescribeTargetGroupAttributes",
    "elasticloadbalancing:DescribeTargetGroups",
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_iam_roles_are_separate_and_scoped(rendered, variant):
    roles = resources(rendered[variant], "AWS::IAM::Role")
    assert {"ControlPlaneRole", "WorkerRole", "EtcdMemberCleanupRole"} <= set(roles)
    for name, role in roles.items():
        for policy in role["Properties"].get("Policies", []):
            for st in policy["PolicyDocument"]["Statement"]:
                actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
                if st["Resource"] == "*" and "Condition" not in st:
                    assert set(actions) <= UNSCOPABLE, f"{name}/{st.get('Sid')}: {actions} on *"
    worker_actions = {
        a
        for p in roles["WorkerRole"]["Properties"]["Policies"]
        for st in p["PolicyDocument"]["Statement"]
        # a write bound to the node report's keys is no write of cluster state
        # (test_iam_policies.py evaluates it request by request)
        if "dynamodb:LeadingKeys" not in json.dumps(st.get("Condition", {}))
        for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])
    }
    assert "ssm:PutParameter" not in worker_actions and "dynamodb:PutItem" not in worker_actions


def test_outputs(rendered, specs):
    outputs = rendered["airgapped"].template_data["Outputs"]
    assert outputs["ApiEndpoint"]["Value"] == {"Fn::Sub": "https://${ApiLoadBalancer.DNSName}:6443"}
    assert (
        outputs["AdminKubeconfigParameter"]["Value"]
        == "/bake/clusters/demo/control-plane/admin-kubeconfig"
    )
    assert outputs["StackVersion"]["Value"] == rendered["airgapped"].stack_version


def test_lambda_is_inline_and_under_the_zipfile_limit(rendered):
    fn = resources(rendered["airgapped"])["EtcdMemberCleanupFunction"]["Properties"]
    code = fn["Code"]["ZipFile"]
    assert code == rendered["airgapped"].lambda_source
    assert len(code) < 4096
    compile(code, "index.py", "exec")
    assert fn["Handler"] == "index.handler"
    rule = resources(rendered["airgapped"])["EtcdMemberCleanupRule"]["Properties"]
    assert rule["EventPattern"]["detail-type"] == ["EC2 Instance-terminate Lifecycle Action"]


def test_launch_deploys_the_same_template_as_compact_json_under_the_inline_limit(specs):
    """CloudFormation gets the reviewed template (cloudformation/cluster.yaml) as compact JSON,
    equal as data and about a fifth smaller, so every add-on on, the cloud controller, EBS CSI
    and the autoscaler, still leaves room under the 51,200-byte inline limit."""
    import yaml

    from bake.launch import TEMPLATE_BODY_LIMIT, render_cluster

    docs = render_cluster(specs["nat"])
    assert {"aws-cloud-controller-manager", "aws-ebs-csi-driver", "cluster-autoscaler"} <= set(
        specs["nat"].addons.names())
    assert json.loads(docs.template_body) == yaml.safe_load(docs.template) == docs.template_data
    body, text = len(docs.template_body.encode()), len(docs.template.encode())
    assert body < 0.85 * text and body < TEMPLATE_BODY_LIMIT - 8192, (body, text)


def test_render_cluster_cli_writes_every_artifact(run_bake, tmp_path):
    cluster = tmp_path / "cluster.yaml"
    assert run_bake("init", "-f", str(cluster)).exit_code == 0
    result = run_bake("render", "cluster", "-f", str(cluster), "-o", str(tmp_path / "out"))
    if result.exit_code == 2 and "No such command" in result.stderr:
        pytest.skip("`bake render` group not integrated yet (owned by the render engineer)")
    assert result.exit_code == 0, result.stderr
    written = sorted(
        p.relative_to(tmp_path / "out").as_posix()
        for p in (tmp_path / "out").rglob("*")
        if p.is_file()
    )
    assert written == [
        "cloudformation/cluster.yaml",
        "lambdas/etcd_member_cleanup.py",
        "userdata/control-plane.cloud-config.yaml",
        "userdata/worker.cloud-config.yaml",
    ]
