"""What a VM boots with: its copy-on-write overlay and NoCloud seed (user-data byte for byte
from its launch template, vendor-data trusting the local CA), the instances file the gateway's
IMDS answers from, and where its console says it has got to.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from bake.localcluster import vm
from bake.localcluster.plan import LocalNetwork, LocalNode

Echo = Callable[[str], None]


#: The vendor-data command (``sh -c SCRIPT bake-local-ca PEM``): idempotent, so it can run at
#: every boot (``bootcmd`` does).
TRUST_CA = (
    'set -eu; crt=/usr/local/share/ca-certificates/bake-local-aws.crt; '
    'mkdir -p "${crt%/*}"; printf "%s\\n" "$1" > "$crt"; '
    'b=/etc/ssl/certs/ca-certificates.crt; '
    'grep -qxF "$(sed -n 2p "$crt")" "$b" || cat "$crt" >> "$b"'
)


def vendor_data(ca_pem: str) -> str:
    """The vendor-data the platform hands the VM beside the user-data: trust the local CA of
    the AWS API endpoints, before the node agent starts.

    A cloud-config ``bootcmd`` (cloud-init's init stage, ``cloud-init.service``, which the
    agent's unit is ordered after; user-data has no ``bootcmd`` to override it) keeps the
    certificate in ``/usr/local/share/ca-certificates`` (a later ``update-ca-certificates`` keeps
    it) and appends it to ``/etc/ssl/certs/ca-certificates.crt``, the bundle Debian's botocore
    reads through certifi. Not cloud-init's ``ca_certs`` module: it runs
    ``update-ca-certificates``, 160 s per VM under TCG with five VMs (measured).

    Args:
        ca_pem: the CA certificate (PEM text).

    Returns:
        the vendor-data text (``#cloud-config``).
    """
    import yaml

    command = ["sh", "-c", TRUST_CA, "bake-local-ca", ca_pem.strip()]
    return "#cloud-config\n" + yaml.safe_dump({"bootcmd": [command]}, sort_keys=False)


def instances_file(nodes: list[LocalNode], region: str, account: str) -> dict:
    import base64

    return {n.private_ip: {
        "instance_id": n.instance_id, "private_ip": n.private_ip, "hostname": n.hostname,
        "mac": n.mac, "availability_zone": n.availability_zone or f"{region}a",
        "instance_type": n.instance_type, "image_id": n.image_id, "region": region,
        "account_id": account, "profile_role": n.profile_role,
        "user_data_b64": base64.b64encode(n.user_data).decode()} for n in nodes}


def progress_marker(console: Path) -> str:
    """What a VM's console says it has reached: the furthest milestone seen since it booted
    (the console file starts empty at every VM start), so the label never goes backwards when
    a later cloud-init stage prints its banner again."""
    try:
        text = console.read_bytes().decode(errors="replace")
    except OSError:
        return "starting"
    milestones = [("phase post: start", "post"), ("phase bootstrap: start", "init/join"),
                  ("phase config: start", "config"), ("Starting bake-node.service", "agent"),
                  ("Cloud-init v.", "cloud-init"), ("Linux version", "booting")]
    for needle, label in milestones:
        if needle in text:
            return label
    return "starting"


def prepare_vm(node: LocalNode, base: Path, image_dir: Path, vendor: str) -> None:
    """``node``'s copy-on-write overlay of the baked disk and its NoCloud seed."""
    files = vm.VmFiles(base / "vms" / node.instance_id)
    vm.make_overlay(image_dir / "disk.raw", files.overlay)
    vm.make_seed(files, node, vendor)


def start_vm(node: LocalNode, base: Path, image_dir: Path, net: LocalNetwork, memory_mib: int,
              state: dict, echo: Echo) -> None:
    """Boot ``node``'s VM (overlay and seed made already) and record it in ``state``."""
    files = vm.VmFiles(base / "vms" / node.instance_id)
    pid = vm.start(files, node, image_dir, net.netns, memory_mib)
    state["nodes"].append({"instance_id": node.instance_id, "role": node.role,
                           "private_ip": node.private_ip, "hostname": node.hostname,
                           "pid": pid, "dir": str(files.dir), "index": node.index,
                           "image_dir": str(image_dir), "started": time.time()})
    echo(f"{node.instance_id} {node.role:<13} {node.private_ip:<15} booting "
         f"(VM pid {pid}, {memory_mib} MiB, console {files.console})")
