"""One VM of a local cluster: a copy-on-write overlay of the baked disk, a NoCloud seed, qemu.

- Overlay: ``qemu-img create -f qcow2 -b <image>/disk.raw -F raw`` (the baked disk is only read;
  writes go to the overlay), a few GiB larger than the disk (cloud-init's resizefs grows the
  root file system on first boot, as on EC2 with a larger root volume).
- Seed: ``cloud-localds`` (Debian's cloud-image-utils) writes an ISO labelled ``cidata``
  (cloud-init's NoCloud datasource) with the instance's user-data exactly as its launch
  template carries it, ``meta-data`` (instance-id, local-hostname, as the EC2 datasource
  would report them) and ``vendor-data`` (the platform's part: the local CA, see ``pki``).
- qemu: software emulation (``-accel tcg``; KVM is not available on this kind of machine),
  direct kernel boot of the image's kernel and initrd, the overlay and the seed as virtio
  disks, one virtio NIC on a tap device of the cluster's bridge (MAC from the instance IP),
  serial console to ``console.log`` (the journal forwarded to it: the VM's own log, what
  ``bake logs`` reads, like EC2's console output), the guest agent's virtio-serial port on
  ``qga.sock`` (how the local platform carries out SSM Run Command, see ``guest``), detached
  with a pid file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bake.errors import EnvironmentProblem
from bake.localcluster.netns import exec_argv
from bake.localcluster.plan import LocalNode

QEMU = "qemu-system-x86_64"
# Local VMs only (the AMI boots with its own bootloader's command line): the modules
# blacklisted probe hardware a TCG guest lacks (a floppy probe cost 13 s), and the CPU
# vulnerability mitigations (page-table isolation flushes the emulated TLB on every syscall)
# protect nothing between VMs that share one emulator on one host. ``tsc=reliable``: a TCG
# guest's TSC follows the host's clock (one vCPU, so no cross-CPU drift), but on a loaded host
# the kernel's clocksource watchdog can judge it unstable and fall back to the HPET, whose
# 32-bit counter (100 MHz) wraps in 42.9 s: a paused VM then resumes with its clock behind by
# the whole pause (seen: 89 s behind after a 90 s SIGSTOP with clocksource=hpet; 0 s with the
# TSC), and certificates made after the pause are "not yet valid" to it.
KERNEL_ARGS = ("root=/dev/vda rw console=ttyS0 panic=-1 systemd.journald.forward_to_console=1 "
               "systemd.show_status=1 mitigations=off tsc=reliable "
               "modprobe.blacklist=floppy,parport_pc,pcspkr,kvm_intel,kvm_amd")
EXTRA_DISK_GIB = 4


@dataclass(frozen=True)
class VmFiles:
    """Where one VM's files live: ``<cluster dir>/vms/<instance id>/``."""

    dir: Path

    @property
    def overlay(self) -> Path:
        return self.dir / "overlay.qcow2"

    @property
    def seed(self) -> Path:
        return self.dir / "seed.iso"

    @property
    def console(self) -> Path:
        return self.dir / "console.log"

    @property
    def pidfile(self) -> Path:
        return self.dir / "qemu.pid"

    @property
    def user_data(self) -> Path:
        return self.dir / "user-data"

    @property
    def guest_agent(self) -> Path:
        """Host end of the VM's ``org.qemu.guest_agent.0`` port (``bake.localcluster.guest``)."""
        return self.dir / "qga.sock"


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EnvironmentProblem(f"{argv[0]} failed: {last}")


def make_overlay(disk: Path, overlay: Path) -> None:
    """A qcow2 overlay of ``disk`` (raw, never written), ``EXTRA_DISK_GIB`` larger."""
    size = disk.stat().st_size + EXTRA_DISK_GIB * 1024**3
    overlay.parent.mkdir(parents=True, exist_ok=True)
    overlay.unlink(missing_ok=True)
    _run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(disk.resolve()), "-F", "raw",
          str(overlay), str(size)])


def with_boot_script(user_data: bytes, script: str) -> bytes:
    """``user_data`` preceded by ``script``, as one MIME multi-part user-data.

    cloud-init runs a ``text/x-shellscript`` part in its final stage, before the cloud-config
    part's ``runcmd`` (both are scripts of ``scripts_user``, run in name order: ``part-001``,
    then ``runcmd``); cloud-init docs, "User data formats", "MIME multi-part archive".

    Args:
        user_data: the launch template's user-data (a ``#cloud-config`` document), bytes.
        script: a shell script with its ``#!`` line.
    Returns:
        the multi-part document, bytes.
    """
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText

    message = MIMEMultipart()
    message.attach(MIMEText(script, "x-shellscript"))
    message.attach(MIMEText(user_data.decode(), "cloud-config"))
    return message.as_bytes()


def make_seed(files: VmFiles, node: LocalNode, vendor_data: str) -> None:
    """The NoCloud seed: user-data byte for byte, meta-data, vendor-data."""
    files.dir.mkdir(parents=True, exist_ok=True)
    files.user_data.write_bytes(node.user_data)
    meta = files.dir / "meta-data"
    meta.write_text(json.dumps({"instance-id": node.instance_id,
                                "local-hostname": node.hostname}) + "\n")
    vendor = files.dir / "vendor-data"
    vendor.write_text(vendor_data)
    _run(["cloud-localds", "--vendor-data", str(vendor), str(files.seed), str(files.user_data),
          str(meta)])


def qemu_argv(files: VmFiles, node: LocalNode, image_dir: Path, memory_mib: int,
              cpus: int = 1) -> list[str]:
    """The qemu command line of one VM (detached; see the module docstring)."""
    return [
        QEMU, "-name", node.instance_id, "-m", str(memory_mib), "-smp", str(cpus),
        "-accel", "tcg", "-cpu", "max", "-nodefaults", "-display", "none", "-no-reboot",
        "-kernel", str(image_dir / "vmlinuz"), "-initrd", str(image_dir / "initrd.img"),
        "-append", KERNEL_ARGS,
        "-drive", f"file={files.overlay},format=qcow2,if=virtio",
        "-drive", f"file={files.seed},format=raw,if=virtio,readonly=on",
        "-netdev", f"tap,id=n0,ifname={node.tap},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=n0,mac={node.mac}",
        "-serial", f"file:{files.console}",
        "-chardev", f"socket,path={files.guest_agent},server=on,wait=off,id=qga0",
        "-device", "virtio-serial-pci",
        "-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
        "-smbios", f"type=1,serial={node.instance_id}",
        "-pidfile", str(files.pidfile), "-daemonize",
    ]


def start(files: VmFiles, node: LocalNode, image_dir: Path, netns: str, memory_mib: int) -> int:
    """Start the VM inside the cluster's namespace; returns qemu's pid.

    Raises:
        EnvironmentProblem: qemu refused to start (its message).
    """
    files.console.unlink(missing_ok=True)
    files.pidfile.unlink(missing_ok=True)
    _run(exec_argv(netns, qemu_argv(files, node, image_dir, memory_mib)))
    return int(files.pidfile.read_text().strip())


def is_our_qemu(pid: int, files: VmFiles) -> bool:
    """True when ``pid`` is a live qemu running this VM's overlay (never signal anything else)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(argv) and Path(argv[0].decode()).name == QEMU and any(
        str(files.overlay).encode() in a for a in argv)


def stop(pid: int, files: VmFiles, timeout_s: float = 10.0) -> bool:
    """Stop this VM's qemu (``pid``, checked first): SIGTERM, then SIGKILL. True if it ran."""
    if not is_our_qemu(pid, files):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and is_our_qemu(pid, files):
        time.sleep(0.2)
    if is_our_qemu(pid, files):
        os.kill(pid, signal.SIGKILL)
    return True


def remove(files: VmFiles) -> None:
    """Remove the VM's overlay, seed and logs (the baked image is not touched)."""
    shutil.rmtree(files.dir, ignore_errors=True)
