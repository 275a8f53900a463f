"""The VPC's parts bake plays inside the cluster's network namespace: the DHCP and DNS
resolver (dnsmasq, with the nodes' host names), the internal network load balancer in front of
the control planes (haproxy, health-checking 6443, soft-reloaded when the targets change), the
namespace's network itself, and the check that all of them listen before a VM boots.
"""

from __future__ import annotations

import ipaddress
import subprocess
import time
from pathlib import Path

from bake.localcluster import netns
from bake.localcluster.plan import LocalNetwork, LocalNode
from bake.localcluster.state import LocalClusterError, is_ours, stop_recorded


def dnsmasq_config(net: LocalNetwork, base: Path, nlb_dns: str) -> str:
    """dnsmasq as the VPC's DHCP and DNS; the instances' MAC -> IP and DNS names live in
    ``dhcp-hosts`` and ``hosts`` (``write_hosts``), which dnsmasq re-reads on SIGHUP when
    instances come and go."""
    # user=root: dnsmasq re-reads the hosts files after it would have dropped to "nobody",
    # and they live in bake's data dir (under a 0700 home); it runs only inside the cluster's
    # own namespace. log-facility=-: its log goes to dnsmasq.log (stderr), not to syslog.
    lines = ["user=root", "log-facility=-",
             "no-resolv", "no-hosts", "bind-interfaces", f"interface={net.bridge}",
             "except-interface=lo", f"listen-address={net.dns_ip}", f"domain={net.domain}",
             f"dhcp-leasefile={base / 'dnsmasq.leases'}", "dhcp-authoritative", "log-dhcp",
             f"dhcp-hostsfile={base / 'dhcp-hosts'}", f"addn-hosts={base / 'hosts'}",
             f"dhcp-option=option:dns-server,{net.dns_ip}",
             f"dhcp-option=option:domain-name,{net.domain}",
             # the private DNS names of interface endpoints (PrivateDnsEnabled) and the NLB
             f"address=/amazonaws.com/{net.endpoints_ip}", f"address=/{nlb_dns}/{net.nlb_ip}"]
    for n, (cidr, router) in enumerate(net.subnets):
        network = cidr.split("/")[0]
        mask = str(ipaddress.IPv4Network(cidr).netmask)
        lines += [f"dhcp-range=set:s{n},{network},static,{mask},12h",
                  f"dhcp-option=tag:s{n},option:router,{router}"]
    return "\n".join(lines) + "\n"


def write_hosts(base: Path, nodes: list[LocalNode]) -> None:
    """The instances for dnsmasq: ``dhcp-hosts`` (MAC, IP, name) and ``hosts`` (DNS)."""
    dhcp, hosts = [], []
    for node in nodes:
        short = node.hostname.split(".", 1)[0]
        dhcp.append(f"{node.mac},{node.private_ip},{short}\n")
        hosts.append(f"{node.private_ip} {node.hostname} {short}\n")
    (base / "dhcp-hosts").write_text("".join(dhcp))
    (base / "hosts").write_text("".join(hosts))


def haproxy_config(net: LocalNetwork, nodes: list[LocalNode], pidfile: Path) -> str:
    """The NLB: TCP 6443 to the control planes, health-checked with HTTPS GET /readyz (the
    target group's check in the stack)."""
    servers = [f"  server {n.instance_id} {n.private_ip}:6443 check check-ssl verify none "
               "inter 5s fall 2 rise 2" for n in nodes if n.role == "control-plane"]
    return "\n".join([
        "global", f"  pidfile {pidfile}", "  maxconn 4096",
        "defaults", "  mode tcp", "  timeout connect 5s", "  timeout client 1h",
        "  timeout server 1h", "  timeout check 5s",
        "frontend api", f"  bind {net.nlb_ip}:6443", "  default_backend control_planes",
        "backend control_planes", "  option httpchk GET /readyz",
        "  http-check expect status 200", *servers, ""])


def build_network(net: LocalNetwork, nodes: list[LocalNode]) -> None:
    """The namespace, its bridge with every router and service address, one tap per VM."""
    netns.create(net.netns)
    if netns.ip("link", "show", net.bridge, netns=net.netns, check=False).returncode != 0:
        netns.ip("link", "add", net.bridge, "type", "bridge", netns=net.netns)
    addresses = [f"{router}/{cidr.split('/')[1]}" for cidr, router in net.subnets]
    addresses += [f"{net.dns_ip}/32", f"{net.endpoints_ip}/32", f"{net.nlb_ip}/32",
                  f"{net.imds_ip}/32"]
    for address in addresses:
        netns.ip("addr", "replace", address, "dev", net.bridge, netns=net.netns)
    netns.ip("link", "set", net.bridge, "up", netns=net.netns)
    subprocess.run(netns.exec_argv(net.netns, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]),
                   check=True, capture_output=True)
    for node in nodes:
        if netns.ip("link", "show", node.tap, netns=net.netns, check=False).returncode != 0:
            netns.ip("tuntap", "add", "dev", node.tap, "mode", "tap", netns=net.netns)
        netns.ip("link", "set", node.tap, "master", net.bridge, netns=net.netns)
        netns.ip("link", "set", node.tap, "up", netns=net.netns)


def spawn(argv: list[str], log: Path) -> int:
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    return proc.pid


def start_haproxy(net: LocalNetwork, base: Path, nodes: list[LocalNode],
                   replace_pid: int | None = None) -> int:
    """Start haproxy (the NLB) for ``nodes``' control planes; with ``replace_pid``, a soft
    reload (``-sf``: the new process takes the listener, the old one finishes its connections,
    as a target group change does not drop the NLB)."""
    cfg = base / "haproxy.cfg"
    cfg.write_text(haproxy_config(net, nodes, base / "haproxy.pid"))
    argv = ["haproxy", "-db", "-f", str(cfg)]
    old = replace_pid if replace_pid and is_ours(replace_pid, str(cfg)) else None
    if old:
        argv += ["-sf", str(old)]
    pid = spawn(netns.exec_argv(net.netns, argv), base / "haproxy.log")
    if old:  # the old process finishes its connections; never leave it behind unrecorded
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and is_ours(old, str(cfg)):
            time.sleep(0.5)
        stop_recorded(old, str(cfg))
    return pid


def wait_listening(net: LocalNetwork, base: Path, timeout_s: float = 20.0) -> None:
    """The gateway, dnsmasq and haproxy listen before any VM boots (or their log says why)."""
    import socket

    deadline = time.monotonic() + timeout_s
    want = [(net.imds_ip, 80, "gateway.log"), (net.endpoints_ip, 443, "gateway.log"),
            (net.nlb_ip, 6443, "haproxy.log")]
    with netns.inside(net.netns):
        pending = list(want)
        while pending and time.monotonic() < deadline:
            host, port, log = pending[0]
            try:
                socket.create_connection((host, port), timeout=1).close()
                pending.pop(0)
            except OSError:
                time.sleep(0.2)
    if pending:
        host, port, log = pending[0]
        tail = (base / log).read_text(errors="replace").strip().splitlines()[-1:] \
            if (base / log).exists() else []
        raise LocalClusterError(f"nothing listens on {host}:{port} in {net.netns} after "
                                f"{timeout_s:.0f} s; see {base / log}" +
                                (f": {tail[0]}" if tail else ""))
