"""The EC2 calls of the agent (instance liveness for etcd membership). Every function takes the
boto3 client first."""

from __future__ import annotations

from typing import Any

from bake_node.aws import call

#: instance states of an instance that is going away or gone (EC2 API, InstanceState)
ENDING_STATES = ("shutting-down", "terminated")


def live_instances(client: Any, instance_ids: list[str]) -> set[str]:
    """The subset of ``instance_ids`` that exist and are not shutting down or terminated
    (all pages of ``DescribeInstances`` filtered by ``instance-id``)."""
    if not instance_ids:
        return set()
    alive: set[str] = set()
    pages = iter(
        client.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "instance-id", "Values": instance_ids}]
        )
    )
    while (page := call("ec2:DescribeInstances", next, pages, None)) is not None:
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                if instance["State"]["Name"] not in ENDING_STATES:
                    alive.add(instance["InstanceId"])
    return alive
