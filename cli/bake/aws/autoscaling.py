"""Thin Auto Scaling wrapper for ``bake launch --local`` and ``bake status``.

Clients are injected; every call goes through ``bake.aws.errors.call`` (one-line ``AwsError``).
Shapes: Auto Scaling API reference, DescribeAutoScalingGroups.
"""

from __future__ import annotations

from typing import Any

from bake.aws.errors import call


def groups(client: Any, names: list[str]) -> dict[str, dict]:
    """``{group name: DescribeAutoScalingGroups entry}`` for the groups that exist."""
    out: dict[str, dict] = {}
    kwargs: dict[str, Any] = {"AutoScalingGroupNames": names}
    while True:
        resp = call("autoscaling:DescribeAutoScalingGroups",
                    client.describe_auto_scaling_groups, **kwargs)
        for group in resp.get("AutoScalingGroups", []):
            out[group["AutoScalingGroupName"]] = group
        if not resp.get("NextToken"):
            return out
        kwargs["NextToken"] = resp["NextToken"]


def set_desired_capacity(client: Any, group: str, desired: int) -> None:
    """Set ``group``'s desired capacity to ``desired`` instances
    (``autoscaling:SetDesiredCapacity``; the group then launches or terminates to match)."""
    call("autoscaling:SetDesiredCapacity", client.set_desired_capacity,
         AutoScalingGroupName=group, DesiredCapacity=desired)


def resize(client: Any, group: str, min_size: int, desired: int) -> None:
    """Set ``group``'s minimum size and desired capacity together
    (``autoscaling:UpdateAutoScalingGroup``: SetDesiredCapacity alone cannot go below the
    minimum)."""
    call("autoscaling:UpdateAutoScalingGroup", client.update_auto_scaling_group,
         AutoScalingGroupName=group, MinSize=min_size, DesiredCapacity=desired)


def terminate(client: Any, instance_id: str, decrement: bool) -> None:
    """Terminate ``instance_id`` through its group (``autoscaling:
    TerminateInstanceInAutoScalingGroup``): its lifecycle hooks run first; with ``decrement``
    the desired capacity drops by one, else the group launches a replacement."""
    call("autoscaling:TerminateInstanceInAutoScalingGroup",
         client.terminate_instance_in_auto_scaling_group, InstanceId=instance_id,
         ShouldDecrementDesiredCapacity=decrement)
