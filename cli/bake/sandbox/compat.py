"""Fixes of moto's CloudFormation emulation, so the REAL cluster template deploys in the
embedded AWS.

The template is never changed to please the emulator. Where moto's CloudFormation parsing
diverges from AWS, these patches translate at moto's boundary; each is listed, with its AWS
reference, in docs/launch.md ("Embedded AWS gaps"). They are applied where moto runs: in the
embedded AWS's own process (``python -m bake.sandbox.moto_server``, what ``bake sandbox
start`` runs) and, as a context manager, around the tests' in-process moto server.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


def _kms_tags_to_api_shape(original):
    """AWS::KMS::Key Tags are ``{Key, Value}`` in CloudFormation; moto passes them unchanged to
    its KMS backend, which expects the API's ``{TagKey, TagValue}`` (KMS CreateKey reference)."""

    def create(cls, resource_name: str, cloudformation_json: Any, *args: Any, **kwargs: Any):
        props = dict(cloudformation_json.get("Properties", {}))
        props["Tags"] = [
            {"TagKey": t["Key"], "TagValue": t["Value"]} if "Key" in t else t
            for t in props.get("Tags", [])
        ]
        return original.__func__(
            cls, resource_name, {**cloudformation_json, "Properties": props}, *args, **kwargs
        )

    return classmethod(create)


def _elbv2_load_balancer_type(original):
    """moto's AWS::ElasticLoadBalancingV2::LoadBalancer ignores ``Type`` and ``Name`` and always
    makes an application load balancer, which then rejects the TCP listener of a network load
    balancer (CloudFormation reference: the resource's ``Type`` is ``network`` here)."""

    def create(
        cls,
        resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ):
        from moto.elbv2.models import elbv2_backends

        props = cloudformation_json["Properties"]
        return elbv2_backends[account_id][region_name].create_load_balancer(
            props.get("Name", resource_name),
            props.get("SecurityGroups"),
            props.get("Subnets"),
            scheme=props.get("Scheme", "internet-facing"),
            loadbalancer_type=props.get("Type", "application"),
        )

    return classmethod(create)


def _vpc_endpoint_delete(self, account_id: str, region_name: str) -> None:
    """moto's AWS::EC2::VPCEndpoint has no CloudFormation delete, so a deleted stack leaves its
    endpoints (and the gateway endpoints' routes) behind and the VPC cannot be deleted; AWS
    deletes them with the stack (DeleteVpcEndpoints)."""
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[account_id][region_name]
    backend.delete_vpc_endpoints([self.id])
    backend.vpc_end_points.pop(self.id, None)


def _route_table_delete(self, account_id: str, region_name: str) -> None:
    """moto's AWS::EC2::RouteTable has no CloudFormation delete either (the VPC then cannot be
    deleted); AWS deletes it with the stack (DeleteRouteTable)."""
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[account_id][region_name]
    if any(self.id in (e.route_table_ids or []) for e in backend.vpc_end_points.values()):
        raise RuntimeError(f"{self.id} still has gateway endpoint routes")  # moto retries later
    backend.route_tables.pop(self.id, None)


def _target_group_delete(self, account_id: str, region_name: str) -> None:
    """moto's AWS::ElasticLoadBalancingV2::TargetGroup has no CloudFormation delete, so a
    deleted stack leaves its target group and the next create of the same stack fails with
    DuplicateTargetGroupName; AWS deletes it with the stack (DeleteTargetGroup). Raises while a
    listener still uses it (moto's stack delete retries in its next pass)."""
    from moto.elbv2.models import elbv2_backends

    elbv2_backends[account_id][region_name].delete_target_group(self.arn)


def _listener_delete(self, account_id: str, region_name: str) -> None:
    """moto's AWS::ElasticLoadBalancingV2::Listener has no CloudFormation delete either
    (DeleteListener); gone already when its load balancer went first."""
    from moto.elbv2.models import elbv2_backends

    backend = elbv2_backends[account_id][region_name]
    for load_balancer in backend.load_balancers.values():
        load_balancer.listeners.pop(self.arn, None)


def _execute_change_set_with_outputs(original):
    """moto builds a stack's outputs from the template the stack had before ExecuteChangeSet,
    so a stack created through a change set has none. AWS evaluates Outputs on execution."""

    def execute(self, change_set_name: str, stack_name: str | None = None) -> None:
        original(self, change_set_name, stack_name)
        for stack in self.stacks.values():
            if any(
                cs.change_set_id == change_set_name or cs.change_set_name == change_set_name
                for cs in self.change_sets.values()
                if cs.stack_id == stack.stack_id
            ):
                stack._parse_template()
                stack.output_map = stack._create_output_map()

    return execute


def _diff_on_resolved_parameters(original):
    """moto updates a resource whose template is unchanged only when a parameter *passed* to
    the update changed; AWS compares the parameters' resolved values, so a changed ``Default``
    (or a changed SSM parameter value behind an ``AWS::SSM::Parameter::Value<...>`` type)
    updates every resource that references it (CloudFormation user guide, "Update behaviors
    of stack resources"; "SSM parameter types": values are resolved on every update). The
    image of ``bake upgrade`` reaches the launch templates this way."""

    def diff(self, other_template: dict[str, Any], parameters: dict[str, Any] | None = None):
        from moto.cloudformation.parsing import get_references_from_template

        result = original(self, other_template, parameters)
        given = parameters if parameters is not None else self.input_parameters
        changed = []
        for name, slot in other_template.get("Parameters", {}).items():
            value = given.get(name, slot.get("Default"))
            kind = slot.get("Type", "String")
            if kind.startswith("AWS::SSM::Parameter::") and value:
                value = self.parse_ssm_parameter(value, kind)
            if name in self.resolved_parameters and self.resolved_parameters[name] != value:
                changed.append(name)
        old, new = self._resource_json_map, other_template["Resources"]
        for name in new:
            if name in old and name not in result["Modify"] and new[name] == old[name] and \
                    set(changed) & set(get_references_from_template(new[name])):
                result["Modify"].append(name)
        # and, as AWS does, whatever reads an attribute of a modified resource (the groups'
        # Fn::GetAtt of their launch template's LatestVersionNumber)
        grew = True
        while grew:
            grew = False
            for name in new:
                if name in old and name not in result["Modify"] and \
                        set(result["Modify"]) & _attribute_sources(new[name]):
                    result["Modify"].append(name)
                    grew = True
        return result

    return diff


def _attribute_sources(node: Any) -> set[str]:
    """Logical ids whose attributes ``node`` reads (``Fn::GetAtt``)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Fn::GetAtt" and isinstance(value, list) and value:
                found.add(value[0])
            else:
                found |= _attribute_sources(value)
    elif isinstance(node, list):
        for item in node:
            found |= _attribute_sources(item)
    return found


def _group_update_in_place(cls, original_resource, new_resource_name: str,
                           cloudformation_json: dict[str, Any], account_id: str,
                           region_name: str):
    """moto updates an AWS::AutoScaling::AutoScalingGroup by deleting and re-creating it (every
    instance replaced at once); AWS updates it in place (UpdateAutoScalingGroup: a new launch
    template version applies to instances launched from then on) and replaces instances only
    under an ``UpdatePolicy`` (CloudFormation user guide, "UpdatePolicy attribute")."""
    from moto.autoscaling.models import autoscaling_backends

    props = cloudformation_json["Properties"]

    def number(key: str) -> int | None:  # CloudFormation passes the sizes as strings
        return int(props[key]) if props.get(key) is not None else None

    return autoscaling_backends[account_id][region_name].update_auto_scaling_group(
        name=original_resource.name,
        availability_zones=props.get("AvailabilityZones", []),
        desired_capacity=number("DesiredCapacity"),
        max_size=number("MaxSize"),
        min_size=number("MinSize"),
        launch_config_name=props.get("LaunchConfigurationName"),
        launch_template=props.get("LaunchTemplate", {}),
        vpc_zone_identifier=",".join(props.get("VPCZoneIdentifier", [])) or None,
        health_check_period=props.get("HealthCheckGracePeriod"),
        health_check_type=props.get("HealthCheckType"),
        mixed_instances_policy=props.get("MixedInstancesPolicy", {}),
    )


def _patches() -> list[tuple[Any, str, Any]]:
    from moto.autoscaling.models import FakeAutoScalingGroup
    from moto.cloudformation.models import CloudFormationBackend
    from moto.cloudformation.parsing import ResourceMap
    from moto.ec2.models.route_tables import RouteTable
    from moto.ec2.models.vpcs import VPCEndPoint
    from moto.elbv2.models import FakeListener, FakeLoadBalancer, FakeTargetGroup
    from moto.kms.models import Key

    return [
        (
            Key,
            "create_from_cloudformation_json",
            _kms_tags_to_api_shape(Key.create_from_cloudformation_json),
        ),
        (FakeLoadBalancer, "create_from_cloudformation_json", _elbv2_load_balancer_type(None)),
        (VPCEndPoint, "delete", _vpc_endpoint_delete),
        (RouteTable, "delete", _route_table_delete),
        (FakeTargetGroup, "delete", _target_group_delete),
        (FakeListener, "delete", _listener_delete),
        (FakeAutoScalingGroup, "update_from_cloudformation_json",
         classmethod(_group_update_in_place)),
        (
            ResourceMap,
            "build_resource_diff",
            _diff_on_resolved_parameters(ResourceMap.build_resource_diff),
        ),
        (
            CloudFormationBackend,
            "execute_change_set",
            _execute_change_set_with_outputs(CloudFormationBackend.execute_change_set),
        ),
    ]


def apply() -> None:
    """Patch moto for the rest of this process (the embedded AWS's server)."""
    for cls, name, new in _patches():
        setattr(cls, name, new)


@contextlib.contextmanager
def moto_cloudformation_shims() -> Iterator[None]:
    """Apply every shim for the duration of the ``with`` block, then restore moto."""
    patches = _patches()
    missing = object()
    saved = [(cls, name, cls.__dict__.get(name, missing)) for cls, name, _ in patches]
    try:
        for cls, name, new in patches:
            setattr(cls, name, new)
        yield
    finally:
        for cls, name, old in saved:
            if old is missing:
                delattr(cls, name)
            else:
                setattr(cls, name, old)
