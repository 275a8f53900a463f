"""Render a ``ClusterSpec`` into CloudFormation + cloud-init user-data, and deploy or destroy it.

``render_cluster(spec)`` is pure (no AWS): it builds the template context in Python, renders
``cloudformation/cluster.yaml.j2`` and ``userdata/node.cloud-config.yaml.j2`` through
``bake.templates`` and parses both. ``launch(options, cfn, ...)`` deploys through a change set
(shown before it is executed), streams stack events and returns the outputs; ``destroy`` deletes
the stack. Failures name the first failing resource and its reason.

Facts encoded: EC2 user data limit 16384 bytes (EC2 user guide, "instance user data");
CloudFormation inline template body limit 51,200 bytes (CloudFormation quotas);
``AWS::Lambda::Function`` ``Code.ZipFile`` limit 4096 characters (CloudFormation user guide).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bake import __version__
from bake.cluster import ClusterSpec
from bake.cluster.model import SNAPSHOT_PREFIX
from bake.errors import BakeError, RenderError, UsageError
from bake.templates import render_text, render_yaml
from bake_node.addons import INGRESS_NGINX_NODE_PORTS

USER_DATA_LIMIT = 16384
TEMPLATE_BODY_LIMIT = 51200
ZIPFILE_LIMIT = 4096
INTERFACE_ENDPOINTS = (
    "ssm",
    "ssmmessages",
    "ec2messages",
    "ec2",
    "kms",
    "logs",
    "sts",
    "autoscaling",
    "elasticloadbalancing",
)
#: with registry.ecrCredentialProvider, air-gapped: ECR's API (the pull token) and its Docker
#: registry endpoint; the image layers come from S3 through its gateway endpoint (ECR user
#: guide, "Amazon ECR interface VPC endpoints")
ECR_ENDPOINTS = ("ecr.api", "ecr.dkr")
GATEWAY_ENDPOINTS = ("s3", "dynamodb")
# Air-gapped nodes reach the S3 and DynamoDB gateway endpoints at the addresses of these
# AWS-managed prefix lists (VPC user guide, "Gateway endpoints": security groups reference the
# prefix list ID); the template takes their IDs as parameters, which `bake launch` looks up.
PREFIX_LISTS = (
    {"service": "s3", "parameter": "S3PrefixListId", "label": "S3"},
    {"service": "dynamodb", "parameter": "DynamoDbPrefixListId", "label": "DynamoDB"},
)
ROLES = ("control-plane", "worker")
# the CloudFormation reference to the API load balancer's DNS name, resolved by Fn::Sub
API_HOST_PLACEHOLDER = "${ApiLoadBalancer.DNSName}"
SNAPSHOT_BUCKET_PLACEHOLDER = "${SnapshotBucket}"
HOOK_TIMEOUT_SECONDS = 300
LAMBDA_TIMEOUT_SECONDS = 240
WAIT_SECONDS = 180
# control planes `bake upgrade` adds before it removes one (Cluster API KCP's maxSurge: 1):
# the control-plane group's MaxSize is its count plus this
SURGE = 1


class LaunchError(BakeError):
    """The stack failed to deploy or delete; the message names the first failing resource."""


@dataclass(frozen=True)
class ClusterDocuments:
    """Everything ``bake render cluster`` writes.

    Attributes:
        spec: the cluster spec rendered.
        template: CloudFormation template text (YAML, for review: ``bake render cluster``).
        template_data: the parsed template.
        user_data: ``{role: #cloud-config text}`` exactly as embedded in the launch templates
            (``${ApiLoadBalancer.DNSName}`` is resolved by CloudFormation's ``Fn::Sub``).
        lambda_source: the etcd member cleanup handler as shipped inline.
        stack_version: ``<bake version>+<sha256[:12] of the rendered inputs>``.
    """

    spec: ClusterSpec
    template: str
    template_data: Any
    user_data: dict[str, str]
    lambda_source: str
    stack_version: str

    @property
    def template_body(self) -> str:
        """What ``bake launch`` sends CloudFormation: ``template_data`` as compact JSON (the same
        template as ``template``, about a fifth smaller: CloudFormation takes JSON or YAML, and
        counts the body's bytes against its 51,200-byte inline limit, CloudFormation quotas)."""
        return template_body(self.template_data)

    def files(self) -> dict[str, str]:
        """``{relative path: text}`` of every artifact."""
        out = {"cloudformation/cluster.yaml": self.template}
        for role, text in self.user_data.items():
            out[f"userdata/{role}.cloud-config.yaml"] = text
        out["lambdas/etcd_member_cleanup.py"] = self.lambda_source
        return out

    def write(self, out_dir: Path, option: str = "-o") -> list[Path]:
        """Write every artifact under ``out_dir``, all or nothing; returns the paths, sorted.

        Raises:
            UsageError: the directory cannot be written (nothing is left behind).
        """
        from bake.userfiles import write_files

        return sorted(write_files(out_dir, dict(sorted(self.files().items())), option))


def node_config(spec: ClusterSpec, role: str, api_host: str,
                snapshot_bucket: str = SNAPSHOT_BUCKET_PLACEHOLDER) -> dict[str, Any]:
    """The ``/etc/bake/node.yaml`` mapping (docs/node-config.md, apiVersion bake.node/v1).

    Args:
        spec: the cluster.
        role: ``control-plane`` or ``worker``.
        api_host: the API load balancer's DNS name (or the ``Fn::Sub`` placeholder).
        snapshot_bucket: the etcd snapshot bucket's name (or the ``Fn::Sub`` placeholder);
            control planes only, when snapshots are enabled.

    Returns:
        the mapping, keys in documentation order; holds no secret.
    """
    config = {
        "apiVersion": "bake.node/v1",
        "clusterName": spec.name,
        "role": role,
        "region": spec.region,
        "controlPlaneEndpoint": f"{api_host}:6443",
        "lockTable": spec.lock_table,
        "ssmPrefix": spec.ssm_prefix,
        "kmsKeyId": spec.kms_alias,
        "podCIDR": spec.pod_cidr,
        "serviceCIDR": spec.service_cidr,
        "vpcCIDR": spec.network.vpc_cidr,
        "cni": spec.cni,
        "bootstrapTokenTTLSeconds": spec.bootstrap_token_ttl_minutes * 60,
    }
    registry = spec.registry.node_yaml()
    if registry:
        config["registry"] = registry
    if spec.addons.has("aws-cloud-controller-manager"):  # every kubelet defers to it
        config["cloudProvider"] = "external"
    if spec.kube_proxy_replacement and role == "control-plane":  # kubeadm init skips kube-proxy
        config["kubeProxyReplacement"] = True
    group = spec.control_plane if role == "control-plane" else spec.workers
    kubelet = group.kubelet.node_yaml()
    if kubelet:
        config["kubelet"] = kubelet
    if role == "control-plane":
        config["certificateRenewBeforeDays"] = spec.cert_renew_before_days
        addons = spec.addons.node_yaml()  # applied by the control plane that runs init
        if addons:
            config["addons"] = addons
    snaps = spec.etcd_snapshots
    if role == "control-plane" and snaps.enabled:
        config["etcdSnapshots"] = {
            "bucket": snapshot_bucket,
            "prefix": SNAPSHOT_PREFIX,
            "intervalMinutes": snaps.interval_minutes,
            "keepHourlyHours": snaps.keep_hourly_hours,
            "keepDailyDays": snaps.keep_daily_days,
        }
    return config


def render_user_data(spec: ClusterSpec, role: str, api_host: str = API_HOST_PLACEHOLDER,
                     snapshot_bucket: str = SNAPSHOT_BUCKET_PLACEHOLDER) -> str:
    """The ``#cloud-config`` user-data of one node role.

    Args:
        spec: the cluster.
        role: ``control-plane`` or ``worker``.
        api_host: the API endpoint host; default the CloudFormation placeholder.
        snapshot_bucket: the etcd snapshot bucket; default the CloudFormation placeholder.

    Returns:
        the text (parsed once to check it is YAML).

    Raises:
        RenderError: invalid output, or larger than 16384 bytes (EC2 user data limit).
    """
    node_yaml = yaml.safe_dump(node_config(spec, role, api_host, snapshot_bucket),
                               sort_keys=False).rstrip("\n")
    text, _ = render_yaml(
        "userdata",
        "node.cloud-config.yaml.j2",
        {"role": role, "cluster_name": spec.name, "node_yaml": node_yaml},
    )
    size = len(text.encode())
    if size > USER_DATA_LIMIT:
        raise RenderError(f"user-data for {role} is {size} bytes, over EC2's {USER_DATA_LIMIT}")
    return text


def lambda_source() -> str:
    """The etcd member cleanup handler, compacted for ``ZipFile`` (< 4096 chars).

    Raises:
        RenderError: the compacted handler is over the limit (a bake bug).
    """
    from bake.lambdas import etcd_member_cleanup

    source = etcd_member_cleanup.compact_source()
    if len(source) >= ZIPFILE_LIMIT:
        raise RenderError(
            f"etcd member cleanup Lambda is {len(source)} chars, over ZipFile's {ZIPFILE_LIMIT}"
        )
    return source


def _subnets(spec: ClusterSpec) -> tuple[list[dict[str, Any]], str]:
    """Three private subnets (and one small public NAT subnet) carved from the VPC CIDR."""
    vpc = ipaddress.IPv4Network(spec.network.vpc_cidr)
    blocks = list(vpc.subnets(prefixlen_diff=2))
    private = [
        {"logical": f"PrivateSubnet{i}", "cidr": str(blocks[i]), "index": i} for i in range(3)
    ]
    public = next(blocks[3].subnets(new_prefix=min(28, blocks[3].prefixlen + 4)))
    return private, str(public)


def _context(spec: ClusterSpec, user_data: dict[str, str], source: str, version: str) -> dict:
    create = spec.network.mode == "create"
    private, public = _subnets(spec)
    subnet_refs: list[Any] = (
        [{"Ref": s["logical"]} for s in private] if create else list(spec.network.subnet_ids)
    )
    groups = [
        {
            "logical": "ControlPlane",
            "role": "control-plane",
            "profile": "ControlPlaneInstanceProfile",
            "instance_type": spec.control_plane.instance_types[0],
            "instance_types": spec.control_plane.instance_types,
            "volume_size_gib": spec.control_plane.volume_size_gib,
            "min_size": spec.control_plane.min_size,
            "max_size": spec.control_plane.max_size + SURGE,
            "desired": spec.control_plane.desired,
            "user_data": user_data["control-plane"],
        },
        {
            "logical": "Worker",
            "role": "worker",
            "profile": "WorkerInstanceProfile",
            "instance_type": spec.workers.instance_types[0],
            "instance_types": spec.workers.instance_types,
            "volume_size_gib": spec.workers.volume_size_gib,
            "min_size": spec.workers.min_size,
            "max_size": spec.workers.max_size,
            "desired": spec.workers.desired,
            "user_data": user_data["worker"],
        },
    ]
    cluster_config = {
        "clusterName": spec.name,
        "kubernetes": spec.kubernetes_minor,
        "controlPlaneEndpoint": f"{API_HOST_PLACEHOLDER}:6443",
        "podCIDR": spec.pod_cidr,
        "serviceCIDR": spec.service_cidr,
        "cni": spec.cni,
        "lockTable": spec.lock_table,
        "kmsKeyId": spec.kms_alias,
    }
    return {
        "name": spec.name,
        "minor": spec.kubernetes_minor,
        "bake_version": __version__,
        "stack_version": version,
        "image_parameter": spec.image_ssm_parameter,
        "create_vpc": create,
        "air_gapped": spec.network.air_gapped,
        "vpc_cidr": spec.network.vpc_cidr,
        "vpc_ref": {"Ref": "Vpc"} if create else spec.network.vpc_id,
        "subnets": private,
        "public_subnet_cidr": public,
        "subnet_refs": subnet_refs,
        "interface_endpoints": [
            {"name": n, "logical": "Endpoint" + "".join(p.capitalize() for p in n.split("."))}
            for n in (*INTERFACE_ENDPOINTS,
                      *(ECR_ENDPOINTS if spec.registry.ecr_credential_provider else ()))
        ],
        "gateway_endpoints": [
            {"name": n, "logical": "Endpoint" + n.capitalize()} for n in GATEWAY_ENDPOINTS
        ],
        "allowed_api_cidrs": list(spec.network.allowed_api_cidrs),
        "kms_alias": spec.kms_alias,
        "lock_table": spec.lock_table,
        "ssm_prefix": spec.ssm_prefix,
        "shared_prefix": spec.shared_prefix,
        "prefix_lists": list(PREFIX_LISTS),
        "kubeconfig_parameter": spec.kubeconfig_parameter,
        "etcd_snapshots": (
            {"prefix": SNAPSHOT_PREFIX, "interval_minutes": spec.etcd_snapshots.interval_minutes}
            if spec.etcd_snapshots.enabled else None
        ),
        "cluster_config_json": json.dumps(cluster_config, sort_keys=True),
        # addons.clusterAutoscaler: its IAM statements and the worker group's discovery tags
        "cluster_autoscaler": spec.addons.has("cluster-autoscaler"),
        # addons.awsCloudController: its IAM statements (kubelets get --cloud-provider=external)
        "cloud_controller": spec.addons.has("aws-cloud-controller-manager"),
        # addons.ebsCsi: its volume and cluster-key statements
        "ebs_csi": spec.addons.has("aws-ebs-csi-driver"),
        # registry.ecrCredentialProvider: the nodes' ECR pull statements
        "ecr_credential_provider": spec.registry.ecr_credential_provider,
        # addons.ingressNginx with serviceType NodePort: the ports its Service opens on every
        # node (manifests/addons/ingress-nginx/), admitted from inside the VPC; a LoadBalancer
        # Service's rules are the cloud controller's to make
        "ingress_node_ports": (
            list(INGRESS_NGINX_NODE_PORTS)
            if spec.addons.settings("ingress-nginx").get("serviceType") == "NodePort" else []),
        "groups": groups,
        "hook_timeout_seconds": HOOK_TIMEOUT_SECONDS,
        "lambda_timeout_seconds": LAMBDA_TIMEOUT_SECONDS,
        "wait_seconds": WAIT_SECONDS,
        "lambda_source": source,
    }


def render_cluster(spec: ClusterSpec) -> ClusterDocuments:
    """Render the cluster's CloudFormation template and user-data (no AWS calls).

    Args:
        spec: a validated ``ClusterSpec``.

    Returns:
        the ``ClusterDocuments``.

    Raises:
        RenderError: a template failed, or a size limit (user data, template body, ZipFile)
            was exceeded.
    """
    user_data = {role: render_user_data(spec, role) for role in ROLES}
    source = lambda_source()
    draft = render_text("cloudformation", "cluster.yaml.j2", _context(spec, user_data, source, ""))
    version = f"{__version__}+{hashlib.sha256(draft.encode()).hexdigest()[:12]}"
    text, data = render_yaml(
        "cloudformation", "cluster.yaml.j2", _context(spec, user_data, source, version)
    )
    size = len(template_body(data).encode())
    if size > TEMPLATE_BODY_LIMIT:
        raise RenderError(
            f"cluster template is {size} bytes as compact JSON, over CloudFormation's inline "
            f"{TEMPLATE_BODY_LIMIT}: turn off add-ons you do not need or shorten "
            "registry.caBundle")
    return ClusterDocuments(spec, text, data, user_data, source, version)


def template_body(data: Any) -> str:
    """A parsed CloudFormation template as the compact JSON ``bake launch`` deploys (key order
    kept, no whitespace, non-ASCII kept as UTF-8)."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class LaunchOptions:
    """What ``bake launch`` was asked to do.

    Attributes:
        spec: the cluster.
        yes: execute the change set without asking.
        timeout_seconds: how long to follow the stack before giving up.
        poll_seconds: seconds between event polls.
        change_minor: the update may change the stack's Kubernetes minor (only ``bake
            upgrade`` sets it: it rolls the nodes after the update).
    """

    spec: ClusterSpec
    yes: bool = False
    timeout_seconds: float = 3600
    poll_seconds: float = 5
    change_minor: bool = False


@dataclass(frozen=True)
class LaunchResult:
    """Outcome: ``status`` (final stack status, or ``NO_CHANGES``/``DECLINED``), ``outputs``."""

    stack_name: str
    status: str
    outputs: dict[str, str]


def format_change(change: dict) -> str:
    """One line for a DescribeChangeSet ``Changes`` entry: action, logical id, type, replacement."""
    rc = change.get("ResourceChange", {})
    action = rc.get("Action", "?")
    replace = rc.get("Replacement")
    extra = (
        " (replacement)"
        if replace == "True"
        else " (may replace)"
        if replace == "Conditional"
        else ""
    )
    return (
        f"  {action:<7} {rc.get('LogicalResourceId', '?'):<34} {rc.get('ResourceType', '')}{extra}"
    )


def format_event(event) -> str:
    """One progress line for a stack event."""
    stamp = event.timestamp.strftime("%H:%M:%S") if hasattr(event.timestamp, "strftime") else ""
    reason = f"  {event.reason}" if event.reason else ""
    return f"{stamp} {event.status:<20} {event.logical_id} ({event.resource_type}){reason}"


# the status of a stack that has only a never-executed CREATE change set (DescribeStacks)
REVIEW_IN_PROGRESS = "REVIEW_IN_PROGRESS"


def _left_in_review(cfn, stack: str) -> list[dict]:
    """bake's change sets of a stack in REVIEW_IN_PROGRESS: ListChangeSets summaries whose name
    starts with ``bake-`` (the names ``launch`` gives); ``[]`` if none is bake's."""
    return [c for c in cfn.change_sets(stack) if c.get("ChangeSetName", "").startswith("bake-")]


def _discard_review(cfn, stack: str, change_set_ids: list[str], echo) -> None:
    """Delete never-executed change sets and the empty stack they created (CREATE only)."""
    for cs_id in change_set_ids:
        try:
            cfn.delete_change_set(cs_id)
        except BakeError:
            pass  # already gone; deleting the stack below removes what is left
    if cfn.stack_status(stack) == REVIEW_IN_PROGRESS:
        cfn.delete_stack(stack)
        echo(f"deleted the empty stack {stack} (it held only the change set)")


def stack_parameters(spec: ClusterSpec, ec2=None) -> dict[str, str]:
    """Values for the template's parameters that have no default.

    Air-gapped clusters: the IDs of the S3 and DynamoDB AWS-managed prefix lists of the
    cluster's region (``bake.aws.ec2.managed_prefix_list_ids``), which the node security group's
    egress rules reference. NAT clusters: none.

    Args:
        spec: the cluster.
        ec2: boto3 EC2 client of the cluster's region (needed when air-gapped).

    Raises:
        UsageError: a prefix list is missing in the region; AwsError: the lookup failed.
    """
    if not spec.network.air_gapped:
        return {}
    from bake.aws.ec2 import managed_prefix_list_ids

    ids = managed_prefix_list_ids(ec2, spec.region, [p["service"] for p in PREFIX_LISTS])
    return {p["parameter"]: ids[p["service"]] for p in PREFIX_LISTS}


def launch(
    options: LaunchOptions,
    cfn,
    echo: Callable[[str], None],
    confirm: Callable[[str], bool],
    docs: ClusterDocuments | None = None,
    parameters: dict[str, str] | None = None,
) -> LaunchResult:
    """Deploy (create or update) the cluster stack through a change set.

    A change set that is not applied (the user declines, presses Ctrl-C at the question, or
    the question cannot be asked) is deleted, together with the empty stack a CREATE change
    set makes (status ``REVIEW_IN_PROGRESS``), so the next launch starts clean. A stack an
    earlier launch left in review is recognised (bake's change set name) and, once the user
    agrees (``--yes`` agrees), cleared before the new change set is made.

    Args:
        options: the launch options.
        cfn: a ``bake.aws.cloudformation.CloudFormation``.
        echo: prints one line of progress.
        confirm: asks the user; not called when ``options.yes``; may raise
            ``click.Abort``/``KeyboardInterrupt`` (cleaned up, then re-raised).
        docs: pre-rendered documents (default: rendered here).
        parameters: template parameter values (``stack_parameters``).

    Returns:
        the ``LaunchResult`` (outputs empty unless the stack completed).

    Raises:
        LaunchError: the change set or the stack failed (names the first failing resource
            and its reason; a failed create leaves CloudFormation's rollback to clean up), or a
            stack in review that bake did not make.
    """
    from bake.aws.cloudformation import TERMINAL_OK, first_failure

    spec = options.spec
    docs = docs or render_cluster(spec)
    stack = spec.stack_name
    ask = (lambda question: True) if options.yes else confirm
    status = cfn.stack_status(stack)
    if status == "ROLLBACK_COMPLETE":
        raise LaunchError(
            f"stack {stack} is in ROLLBACK_COMPLETE from a failed create: "
            f"run `bake destroy -f {spec.source}` first"
        )
    if status == REVIEW_IN_PROGRESS:
        left = _left_in_review(cfn, stack)
        if not left:
            raise LaunchError(
                f"stack {stack} is in {REVIEW_IN_PROGRESS} with change sets bake did not make: "
                "execute or delete them in CloudFormation, then retry"
            )
        echo(
            f"stack {stack} was left in review by an earlier `bake launch` that was not "
            f"applied ({', '.join(c['ChangeSetName'] for c in left)})"
        )
        if not ask(f"delete that change set and the empty stack {stack}, then launch?"):
            echo("nothing changed")
            return LaunchResult(stack, "DECLINED", {})
        _discard_review(cfn, stack, [c["ChangeSetId"] for c in left], echo)
        status = cfn.stack_status(stack)
    if status is not None and status.endswith("_IN_PROGRESS"):
        raise LaunchError(f"stack {stack} is busy ({status}); wait for it to finish and retry")
    running = cfn.outputs(stack).get("KubernetesMinor") if status is not None else None
    if running and running != spec.kubernetes_minor and not options.change_minor:
        raise UsageError(
            f"{spec.source}: kubernetes: the stack {stack} runs Kubernetes {running}, the file "
            f"says {spec.kubernetes_minor}; a launch never changes the minor (no node would be "
            f"replaced): `bake upgrade -f {spec.source} --k8s {spec.kubernetes_minor}` does, or "
            f"set kubernetes: \"{running}\" back")
    kind = "CREATE" if status is None else "UPDATE"
    name = "bake-" + docs.stack_version.replace(".", "-").replace("+", "-")
    tags = {"bake:cluster": spec.name, "bake:stack-version": docs.stack_version}
    seen = set(cfn.iter_event_ids(stack))
    cs_id = cfn.create_change_set(stack, name, docs.template_body, kind, tags, parameters)
    applied = False
    try:
        cs = cfn.wait_change_set(cs_id)
        if cs["Status"] == "FAILED":
            reason = cs.get("StatusReason", "")
            if "didn't contain changes" in reason or "No updates" in reason:
                echo(f"stack {stack} is up to date ({docs.stack_version})")
                return LaunchResult(stack, "NO_CHANGES", cfn.outputs(stack))
            raise LaunchError(f"change set for {stack} failed: {reason}")
        echo(f"change set {name} for stack {stack} ({kind.lower()}):")
        for change in cs.get("Changes", []):
            echo(format_change(change))
        if not ask(f"apply {len(cs.get('Changes', []))} changes to {stack}?"):
            echo("not applied; change set deleted")
            return LaunchResult(stack, "DECLINED", {})
        cfn.execute_change_set(cs_id)
        applied = True
    finally:
        if not applied and kind == "CREATE":
            _discard_review(cfn, stack, [cs_id], lambda line: None)
        elif not applied:
            _delete_quietly(cfn, cs_id)
    final, events = cfn.follow(
        stack,
        lambda e: echo(format_event(e)),
        since=seen,
        timeout=options.timeout_seconds,
        poll=options.poll_seconds,
    )
    if final not in TERMINAL_OK:
        bad = first_failure(events)
        where = f": {bad.logical_id} ({bad.resource_type}): {bad.reason}" if bad else ""
        raise LaunchError(f"stack {stack} ended {final}{where}")
    outputs = cfn.outputs(stack)
    return LaunchResult(stack, final, outputs)


def _delete_quietly(cfn, change_set_id: str) -> None:
    try:
        cfn.delete_change_set(change_set_id)
    except BakeError:
        pass


def destroy(
    spec: ClusterSpec, cfn, echo: Callable[[str], None], timeout: float = 3600, poll: float = 5,
    ssm=None,
) -> str:
    """Delete the cluster stack and follow it until gone, then the parameters its nodes wrote
    under ``spec.ssm_prefix`` (join material, admin kubeconfig: not stack resources), so a
    cluster launched again under the same name never reads the old cluster's.

    Args:
        ssm: the SSM client of the cluster's region (``None``: leave the parameters).

    Returns:
        ``"DELETE_COMPLETE"`` or ``"NOT_FOUND"`` when there was no stack.

    Raises:
        LaunchError: the deletion failed (names the first failing resource and reason).
        AwsError: the parameters could not be deleted.
    """
    from bake.aws.cloudformation import first_failure

    stack = spec.stack_name
    if cfn.stack_status(stack) is None:
        echo(f"no stack {stack}: nothing to delete")
        return "NOT_FOUND"
    outputs = cfn.outputs(stack)
    kept, key = outputs.get("EtcdSnapshotBucket"), outputs.get("EtcdSnapshotKey")
    seen = set(cfn.iter_event_ids(stack))
    cfn.delete_stack(stack)
    final, events = cfn.follow(
        stack, lambda e: echo(format_event(e)), since=seen, timeout=timeout, poll=poll
    )
    if final != "DELETE_COMPLETE":
        bad = first_failure(events)
        where = f": {bad.logical_id} ({bad.resource_type}): {bad.reason}" if bad else ""
        raise LaunchError(f"deleting stack {stack} ended {final}{where}")
    if ssm is not None:
        from bake.aws import ssm as ssm_api

        left = [p.name for p in ssm_api.list_by_path(ssm, spec.ssm_prefix)]
        if left:
            ssm_api.delete_parameters(ssm, left)
            echo(f"deleted {len(left)} parameters the nodes wrote under {spec.ssm_prefix} "
                 "(join material, admin kubeconfig)")
    if kept:  # DeletionPolicy: Retain (the template): backups outlive their cluster
        echo(f"kept: s3://{kept} (the etcd snapshots of {spec.name}) and KMS key {key} (their "
             "encryption key): empty and delete the bucket, then schedule the key's deletion, "
             "when you no longer need them")
    return final
