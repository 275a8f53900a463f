"""The rendered IAM policies and egress rules, evaluated request by request (issue 12, 9-10).

Workers read only what a worker join needs: the bootstrap token and CA cert hash under
``<ssmPrefix>/shared/``. The certificate key (which, with a token, joins a node as a control
plane and hands it the cluster CA key) and the admin kubeconfig live under
``<ssmPrefix>/control-plane/``: a worker can neither fetch nor decrypt them, because KMS use is
bound by the encryption context Parameter Store sends (``PARAMETER_ARN``; AWS KMS developer
guide, "How AWS Systems Manager Parameter Store uses AWS KMS"). The names checked are the very
names the node agent uses (``bake_node.joinmaterial``).
"""

from __future__ import annotations

import pytest
from iam_eval import KEY_ARN, REGION, Request, Role, parameter_arn

from bake_node.joinmaterial import JoinMaterial

VARIANTS = ["airgapped", "nat", "existing-vpc"]


def _names(spec) -> dict[str, str]:
    jm = JoinMaterial(None, spec.ssm_prefix, spec.kms_alias)
    return {
        "token": jm.name("token"),
        "ca-cert-hash": jm.name("ca-cert-hash"),
        "certificate-key": jm.name("certificate-key"),
        "admin-kubeconfig": spec.kubeconfig_parameter,
        "config": f"{spec.ssm_prefix}/config",
        "other-cluster-token": jm.name("token").replace(f"/{spec.name}/", "/other/"),
    }


def _get(name: str) -> Request:
    return Request("ssm:GetParameters", parameter_arn(name))


def _decrypt(name: str, via: str = "ssm") -> Request:
    context = {"kms:EncryptionContext:PARAMETER_ARN": parameter_arn(name)}
    if via:
        context["kms:ViaService"] = f"{via}.{REGION}.amazonaws.com"
    return Request("kms:Decrypt", KEY_ARN, context)


def _table_decrypt(table: str) -> Request:
    return Request(
        "kms:Decrypt",
        KEY_ARN,
        {
            "kms:ViaService": f"dynamodb.{REGION}.amazonaws.com",
            "kms:EncryptionContext:aws:dynamodb:tableName": table,
        },
    )


@pytest.mark.parametrize("variant", VARIANTS)
def test_workers_read_and_decrypt_only_the_shared_join_material(rendered, specs, variant):
    docs, spec = rendered[variant], specs[variant]
    worker = Role(docs.template_data, "WorkerRole")
    n = _names(spec)
    assert n["token"].startswith(spec.shared_prefix + "/")
    assert n["certificate-key"].startswith(spec.control_plane_prefix + "/")
    # what a worker join needs
    for part in ("token", "ca-cert-hash"):
        assert worker.allows(_get(n[part])), part
        assert worker.allows(_decrypt(n[part])), part
    assert worker.allows(_get(n["config"]))
    assert worker.allows(_table_decrypt(spec.lock_table))
    # what only control planes may have: neither fetched nor decrypted
    for secret in ("certificate-key", "admin-kubeconfig", "other-cluster-token"):
        assert not worker.allows(_get(n[secret])), secret
        assert not worker.allows(_decrypt(n[secret])), secret
    # the key is never usable outside Parameter Store or DynamoDB, nor for writing
    assert not worker.allows(_decrypt(n["token"], via=""))
    assert not worker.allows(_decrypt(n["token"], via="s3"))
    assert not worker.allows(_table_decrypt("bake-other"))
    for action in ("kms:Encrypt", "kms:GenerateDataKey", "kms:CreateGrant"):
        assert not worker.allows(Request(action, KEY_ARN, _decrypt(n["token"]).context))
    for action in ("ssm:PutParameter", "ssm:DeleteParameter", "ssm:GetParametersByPath"):
        assert not worker.allows(Request(action, parameter_arn(n["token"])))


def _table_write(spec, key: str) -> Request:
    table = f"arn:aws:dynamodb:{REGION}:123456789012:table/{spec.lock_table}"
    return Request("dynamodb:PutItem", table, {"dynamodb:LeadingKeys": [key]})


@pytest.mark.parametrize("variant", VARIANTS)
def test_workers_write_only_their_node_report(rendered, specs, variant):
    """The agent reports each node's outcome to the table (node#<instance id>); a worker may
    write such items, never the lease, the cluster item or the etcd registry."""
    docs, spec = rendered[variant], specs[variant]
    worker = Role(docs.template_data, "WorkerRole")
    assert worker.allows(_table_write(spec, "node#i-0123456789abcdef0"))
    for key in ("lease#control-plane", "cluster", "etcd#i-0123456789abcdef0", "etcd-status"):
        assert not worker.allows(_table_write(spec, key)), key
    assert Role(docs.template_data, "ControlPlaneRole").allows(_table_write(spec, "cluster"))


@pytest.mark.parametrize("variant", VARIANTS)
def test_control_planes_own_the_cluster_tree_and_nothing_else(rendered, specs, variant):
    docs, spec = rendered[variant], specs[variant]
    cp = Role(docs.template_data, "ControlPlaneRole")
    n = _names(spec)
    for part in ("token", "ca-cert-hash", "certificate-key", "admin-kubeconfig"):
        for action in ("ssm:GetParameters", "ssm:PutParameter", "ssm:DeleteParameters"):
            assert cp.allows(Request(action, parameter_arn(n[part]))), (part, action)
        for action in ("kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"):
            assert cp.allows(Request(action, KEY_ARN, _decrypt(n[part]).context)), (part, action)
    assert cp.allows(_table_decrypt(spec.lock_table))
    assert not cp.allows(_get(n["other-cluster-token"]))
    assert not cp.allows(_decrypt(n["other-cluster-token"]))
    assert not cp.allows(_decrypt(n["certificate-key"], via=""))


def _egress(docs, group: str) -> list[dict]:
    return docs.template_data["Resources"][group]["Properties"]["SecurityGroupEgress"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_egress_leaves_the_vpc_only_where_it_must(rendered, specs, variant):
    docs, spec = rendered[variant], specs[variant]
    nodes, fn = _egress(docs, "NodeSecurityGroup"), _egress(docs, "EtcdMemberCleanupSecurityGroup")
    world = [r for r in nodes + fn if r.get("CidrIp") == "0.0.0.0/0"]
    params = docs.template_data["Parameters"]
    if spec.network.air_gapped:
        assert world == [], world
        prefix = sorted(r["DestinationPrefixListId"]["Ref"] for r in nodes
                        if "DestinationPrefixListId" in r)
        assert prefix == ["DynamoDbPrefixListId", "S3PrefixListId"]
        for name in prefix:
            assert params[name]["AllowedPattern"].startswith("^pl-")
        assert all(r["FromPort"] == r["ToPort"] == 443 for r in nodes
                   if "DestinationPrefixListId" in r)
    else:
        # NAT mode: explicit, documented HTTPS egress through the NAT gateway, nothing else
        assert [(r["FromPort"], r["ToPort"]) for r in world] == [(443, 443), (443, 443)]
        assert all("NAT" in r["Description"] for r in world)
        assert "S3PrefixListId" not in params
    assert all(r.get("CidrIp") in (spec.network.vpc_cidr, "0.0.0.0/0") or
               "DestinationPrefixListId" in r for r in nodes + fn)


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_agent_stores_the_kubeconfig_where_bake_kubeconfig_reads_it(specs, variant):
    """The one name, from both sides: the agent (bake_node, which must not import bake) and the
    cluster file (``ClusterSpec.kubeconfig_parameter``, the CloudFormation output)."""
    spec = specs[variant]
    agent = JoinMaterial(None, spec.ssm_prefix, spec.kms_alias).admin_kubeconfig_name()
    assert agent == spec.kubeconfig_parameter


def _bucket_arn(docs) -> str:
    from iam_eval import _resolve

    return _resolve({"Fn::GetAtt": ["SnapshotBucket", "Arn"]}, docs.template_data)


@pytest.mark.parametrize("variant", VARIANTS)
def test_only_control_planes_reach_the_snapshots_and_only_under_their_prefix(rendered, specs,
                                                                             variant):
    """What ``bake-node snapshot`` and a restoring init do (bake_node.aws.s3): Put, Get and
    Delete of objects under etcd-snapshots/, a listing of that prefix, and SSE-KMS through S3
    (with a Bucket Key, the encryption context is the bucket's ARN)."""
    from bake.cluster.model import SNAPSHOT_PREFIX

    docs = rendered[variant]
    cp = Role(docs.template_data, "ControlPlaneRole")
    worker = Role(docs.template_data, "WorkerRole")
    bucket = _bucket_arn(docs)
    obj = f"{bucket}/{SNAPSHOT_PREFIX}20261205T100000Z-i-0abc.tar.gz"
    s3_kms = {"kms:ViaService": f"s3.{REGION}.amazonaws.com",
              "kms:EncryptionContext:aws:s3:arn": bucket}
    for action in ("s3:PutObject", "s3:GetObject", "s3:DeleteObject"):
        assert cp.allows(Request(action, obj)), action
        assert not cp.allows(Request(action, f"{bucket}/elsewhere/x")), action
        assert not worker.allows(Request(action, obj)), action
    listing = Request("s3:ListBucket", bucket, {"s3:prefix": SNAPSHOT_PREFIX})
    assert cp.allows(listing) and not worker.allows(listing)
    assert not cp.allows(Request("s3:ListBucket", bucket, {"s3:prefix": ""}))
    for action in ("kms:GenerateDataKey", "kms:Decrypt"):
        assert cp.allows(Request(action, KEY_ARN, s3_kms)), action
        assert not worker.allows(Request(action, KEY_ARN, s3_kms)), action
        other = {**s3_kms, "kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::someone-else"}
        assert not cp.allows(Request(action, KEY_ARN, other)), action


def _group_arn(group: str) -> str:
    return (f"arn:aws:autoscaling:{REGION}:123456789012:autoScalingGroup:"
            f"0000aaaa-bbbb-cccc-dddd-eeeeffff0000:autoScalingGroupName/{group}")


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_autoscaler_may_resize_only_this_clusters_tagged_groups(rendered, specs, variant):
    """addons.clusterAutoscaler grants the control planes (where it runs) SetDesiredCapacity
    and TerminateInstanceInAutoScalingGroup on this cluster's groups tagged for it, and the
    Describe calls it makes; without the add-on none of it, and the worker group carries no
    discovery tags. Workers never get it."""
    docs, spec = rendered[variant], specs[variant]
    cp = Role(docs.template_data, "ControlPlaneRole")
    worker = Role(docs.template_data, "WorkerRole")
    own = _group_arn(f"bake-{spec.name}-worker")
    tag = f"autoscaling:ResourceTag/k8s.io/cluster-autoscaler/{spec.name}"
    enabled = spec.addons.has("cluster-autoscaler")
    for action in ("autoscaling:SetDesiredCapacity",
                   "autoscaling:TerminateInstanceInAutoScalingGroup"):
        assert cp.allows(Request(action, own, {tag: "owned"})) == enabled, action
        assert not cp.allows(Request(action, own, {}))  # untagged
        assert not cp.allows(Request(action, _group_arn("bake-other-worker"),
                                     {"autoscaling:ResourceTag/k8s.io/cluster-autoscaler/other":
                                      "owned"}))
        assert not worker.allows(Request(action, own, {tag: "owned"}))
    for action in ("autoscaling:DescribeTags", "ec2:DescribeLaunchTemplateVersions",
                   "ec2:DescribeInstanceTypes"):
        assert cp.allows(Request(action, "*")) == enabled, action
    group = docs.template_data["Resources"]["WorkerGroup"]["Properties"]
    keys = {t["Key"] for t in group["Tags"]}
    assert ({"k8s.io/cluster-autoscaler/enabled", f"k8s.io/cluster-autoscaler/{spec.name}"}
            <= keys) == enabled
    assert f"kubernetes.io/cluster/{spec.name}" in keys


def _ec2(kind: str, rid: str) -> str:
    return f"arn:aws:ec2:{REGION}:123456789012:{kind}/{rid}"


def _elb(kind: str, rid: str) -> str:
    return f"arn:aws:elasticloadbalancing:{REGION}:123456789012:{kind}/{rid}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_cloud_controller_changes_only_what_is_tagged_for_this_cluster(rendered, specs,
                                                                           variant):
    """addons.awsCloudController grants the control planes (where it runs) the load balancer
    and security group calls it makes: creating them, tagging them only with this cluster's
    tag, and changing or deleting only those tagged for this cluster (its --cluster-name).
    Without the add-on none of it; workers never."""
    docs, spec = rendered[variant], specs[variant]
    cp = Role(docs.template_data, "ControlPlaneRole")
    worker = Role(docs.template_data, "WorkerRole")
    enabled = spec.addons.has("aws-cloud-controller-manager")
    ours = {f"aws:ResourceTag/kubernetes.io/cluster/{spec.name}": "owned"}
    theirs = {"aws:ResourceTag/kubernetes.io/cluster/other": "owned"}
    tag = {f"aws:RequestTag/kubernetes.io/cluster/{spec.name}": "owned"}
    lb = _elb("loadbalancer", "net/a1b2/0123456789abcdef")
    sg = _ec2("security-group", "sg-0123456789abcdef0")
    creates = [Request("elasticloadbalancing:CreateLoadBalancer", lb),
               Request("ec2:CreateSecurityGroup", sg),
               Request("ec2:CreateTags", sg, tag),
               Request("elasticloadbalancing:AddTags", lb, tag),
               Request("elasticloadbalancing:DescribeLoadBalancers", "*"),
               Request("ec2:DescribeSubnets", "*")]
    changes = [Request("elasticloadbalancing:DeleteLoadBalancer", lb, ours),
               Request("elasticloadbalancing:RegisterTargets",
                       _elb("targetgroup", "k8s-a/0123456789abcdef"), ours),
               Request("ec2:AuthorizeSecurityGroupIngress", sg, ours),
               Request("ec2:DeleteSecurityGroup", sg, ours),
               Request("ec2:ModifyInstanceAttribute", _ec2("instance", "i-0123456789abcdef0"),
                       ours)]
    for request in creates + changes:
        assert cp.allows(request) == enabled, request
        assert not worker.allows(request), request
    for request in changes:  # another cluster's, or untagged
        assert not cp.allows(Request(request.action, request.resource, theirs)), request
        assert not cp.allows(Request(request.action, request.resource, {})), request
    # tagging with another cluster's tag, which would hand it that cluster's resources
    assert not cp.allows(Request("ec2:CreateTags", sg,
                                 {"aws:RequestTag/kubernetes.io/cluster/other": "owned"}))
    assert not cp.allows(Request("elasticloadbalancing:AddTags", lb, {}))
    link = "arn:aws:iam::123456789012:role/aws-service-role/elasticloadbalancing.amazonaws.com/x"
    assert cp.allows(Request("iam:CreateServiceLinkedRole", link, {
        "iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"})) == enabled
    assert not cp.allows(Request("iam:CreateServiceLinkedRole", link, {
        "iam:AWSServiceName": "ec2.amazonaws.com"}))


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_ebs_csi_driver_changes_only_this_clusters_volumes(rendered, specs, variant):
    """addons.ebsCsi grants the control planes (where its controller runs): creating volumes
    only with this cluster's tag (its --extra-tags), tagging only while creating, attaching,
    detaching, resizing and deleting only volumes and instances tagged for this cluster, and
    the cluster key through EC2 only (grants for AWS resources only). Without it none of it;
    workers never."""
    docs, spec = rendered[variant], specs[variant]
    cp = Role(docs.template_data, "ControlPlaneRole")
    worker = Role(docs.template_data, "WorkerRole")
    enabled = spec.addons.has("aws-ebs-csi-driver")
    vol = _ec2("volume", "vol-0123456789abcdef0")
    inst = _ec2("instance", "i-0123456789abcdef0")
    ours = {f"aws:ResourceTag/kubernetes.io/cluster/{spec.name}": "owned"}
    allowed = [
        Request("ec2:CreateVolume", vol, {
            f"aws:RequestTag/kubernetes.io/cluster/{spec.name}": "owned"}),
        Request("ec2:CreateTags", vol, {"ec2:CreateAction": "CreateVolume"}),
        Request("ec2:AttachVolume", vol, ours), Request("ec2:AttachVolume", inst, ours),
        Request("ec2:DetachVolume", vol, ours), Request("ec2:ModifyVolume", vol, ours),
        Request("ec2:DeleteVolume", vol, ours),
        Request("ec2:DescribeVolumes", "*"),
        Request("kms:GenerateDataKeyWithoutPlaintext", KEY_ARN, {
            "kms:ViaService": f"ec2.{REGION}.amazonaws.com"}),
        Request("kms:CreateGrant", KEY_ARN, {"kms:GrantIsForAWSResource": "true"}),
    ]
    for request in allowed:
        assert cp.allows(request) == enabled, request
        assert not worker.allows(request), request
    denied = [
        Request("ec2:CreateVolume", vol, {}),  # untagged
        Request("ec2:CreateTags", vol, {}),  # re-tagging an existing volume
        Request("ec2:DeleteVolume", vol, {"aws:ResourceTag/kubernetes.io/cluster/other": "owned"}),
        Request("ec2:AttachVolume", inst, {}),
        Request("kms:Decrypt", KEY_ARN, {"kms:ViaService": f"s3.{REGION}.amazonaws.com",
                                         "kms:EncryptionContext:aws:s3:arn": "x"}),
        Request("kms:CreateGrant", KEY_ARN, {"kms:GrantIsForAWSResource": "false"}),
    ]
    for request in denied:
        assert not cp.allows(request), request
