"""Addresses and names of a local VM cluster, computed from the cluster file and the stack (pure).

The segment is shaped like the VPC the stack describes: every subnet's router at its base + 1
and the VPC's DNS resolver at the VPC base + 2 (Amazon VPC user guide, "Subnet CIDR blocks":
the first four addresses and the last one of a subnet are reserved; "Amazon DNS server": the
VPC network range plus two), the instance metadata service at 169.254.169.254 (EC2 user guide,
"Instance metadata"), and two addresses near the top of the first subnet for what AWS runs
there: the interface endpoints of the AWS APIs and the internal network load balancer.
Instances keep the private IPs and DNS names the embedded AWS gave them; a VM's MAC address
is derived from its IP, so DHCP hands each VM exactly its instance's address.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

IMDS_IP = "169.254.169.254"


@dataclass(frozen=True)
class LocalNode:
    """One EC2 instance of the embedded AWS, booted as a VM.

    Attributes:
        instance_id: e.g. ``i-0123456789abcdef0``.
        role: ``control-plane`` or ``worker`` (the ``bake:role`` tag).
        private_ip: the instance's private IPv4 address.
        hostname: its private DNS name (IMDS ``local-hostname``), e.g.
            ``ip-10-0-0-4.ec2.internal``.
        subnet_cidr: its subnet; ``gateway``: that subnet's router (base + 1).
        mac: the VM's MAC address (``52:54:00`` + the IP's last three octets).
        availability_zone, instance_type, image_id: as EC2 reports them.
        profile_role: the IAM role of its instance profile (IMDS credentials name).
        user_data: the launch template's user-data, bytes, exactly as EC2 would hand it over.
        index: position in the cluster (tap device ``<tap prefix><index>``).
    """

    instance_id: str
    role: str
    private_ip: str
    hostname: str
    subnet_cidr: str
    gateway: str
    mac: str
    availability_zone: str
    instance_type: str
    image_id: str
    profile_role: str
    user_data: bytes = field(repr=False)
    index: int = 0

    @property
    def tap(self) -> str:
        """The VM's tap device in the namespace (<= 15 characters, an interface name)."""
        return f"bktap{self.index}"

    @property
    def short(self) -> str:
        """A short name for tables and file names: the instance id."""
        return self.instance_id


@dataclass(frozen=True)
class LocalNetwork:
    """The segment of one local cluster.

    Attributes:
        netns: network namespace name; ``bridge``: the bridge in it.
        vpc_cidr: the cluster file's VPC CIDR.
        subnets: ``(cidr, router)`` of every subnet of the stack.
        dns_ip: the VPC resolver (DHCP and DNS; dnsmasq).
        endpoints_ip: where the AWS API names resolve (the interface endpoints).
        nlb_ip: the control-plane endpoint's address (haproxy on 6443).
        domain: the private DNS domain (``ec2.internal`` in us-east-1, else
            ``<region>.compute.internal``; EC2 user guide, "EC2 instance hostnames").
    """

    netns: str
    bridge: str
    vpc_cidr: str
    subnets: tuple[tuple[str, str], ...]
    dns_ip: str
    endpoints_ip: str
    nlb_ip: str
    domain: str
    imds_ip: str = IMDS_IP


def network_for(cluster_name: str, region: str, vpc_cidr: str, subnet_cidrs) -> LocalNetwork:
    """The segment for a cluster.

    Args:
        cluster_name: the cluster file's name.
        region: its region (names the private DNS domain).
        vpc_cidr: the VPC CIDR.
        subnet_cidrs: the stack's subnet CIDRs (the first holds the endpoints and the NLB).

    Returns:
        a ``LocalNetwork``.
    """
    vpc = ipaddress.IPv4Network(vpc_cidr)
    subnets = [ipaddress.IPv4Network(c) for c in sorted(subnet_cidrs,
                                                         key=lambda c: ipaddress.IPv4Network(c))]
    first = subnets[0]
    return LocalNetwork(
        netns=f"bake-{cluster_name}",
        bridge="bkbr0",
        vpc_cidr=str(vpc),
        subnets=tuple((str(s), str(s.network_address + 1)) for s in subnets),
        dns_ip=str(vpc.network_address + 2),
        endpoints_ip=str(first.broadcast_address - 2),
        nlb_ip=str(first.broadcast_address - 3),
        domain="ec2.internal" if region == "us-east-1" else f"{region}.compute.internal",
    )


def mac_for(ip: str) -> str:
    """``52:54:00:xx:yy:zz`` from the last three octets of ``ip`` (qemu's locally administered
    prefix), so each instance's address maps to one MAC."""
    octets = [int(o) for o in ip.split(".")]
    return "52:54:00:" + ":".join(f"{o:02x}" for o in octets[1:])


def subnet_of(ip: str, subnets: tuple[tuple[str, str], ...]) -> tuple[str, str]:
    """``(cidr, router)`` of the subnet holding ``ip``.

    Raises:
        ValueError: no subnet holds it.
    """
    address = ipaddress.IPv4Address(ip)
    for cidr, router in subnets:
        if address in ipaddress.IPv4Network(cidr):
            return cidr, router
    raise ValueError(f"{ip} is in none of the subnets {[c for c, _ in subnets]}")
