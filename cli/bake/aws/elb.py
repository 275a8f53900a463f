"""Thin Elastic Load Balancing (v2) wrapper: the cluster's API load balancer.

Shapes: Elastic Load Balancing API reference, DescribeLoadBalancers.
"""

from __future__ import annotations

from typing import Any

from bake.aws.errors import call, error_code
from bake.errors import AwsError


def load_balancer_dns(client: Any, name: str) -> str | None:
    """The DNS name of load balancer ``name``, or ``None`` when there is none."""
    try:
        resp = call("elasticloadbalancing:DescribeLoadBalancers", client.describe_load_balancers,
                    Names=[name])
    except AwsError as exc:
        if error_code(exc) == "LoadBalancerNotFound":
            return None
        raise
    balancers = resp.get("LoadBalancers", [])
    return balancers[0]["DNSName"] if balancers else None
