"""LocalBuilder: preflight errors, staging removed after a failure, and (slow) a real build.

The fast tests seed the rootfs cache with a tiny bash-only rootfs, so they need no network.
The slow test builds (or reuses) the real cached Debian 12 rootfs from the host's Debian mirror
and produces a bootable disk; its cache lives in ``$BAKE_TEST_DATA_DIR`` (default
``/var/tmp/bake-test-data``) so that only the first run is cold.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from bake.builders.local import builder as builder_mod
from bake.builders.local.builder import LocalBuilder, LocalBuildOptions
from bake.builders.local.disk import check_free_space
from bake.builders.local.rootfs import AptSource, cache_key, load_parent_spec
from bake.builders.local.runner import active_mounts
from bake.errors import BuildError, EnvironmentProblem

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: chroot, mount(8) and mkfs (CI runs the suite as root)"
)
MIRROR = "http://127.0.0.1:9/debian"  # never contacted: the cache is seeded
BUILD_ID = "1.30.4-amd64-20260101T000000Z"


def seed_cache(data_dir: Path, rootfs: Path) -> None:
    spec = load_parent_spec("amd64")
    key = cache_key(spec, [AptSource(MIRROR, spec.suite, spec.components)], "amd64")
    cache = data_dir / "cache" / "rootfs"
    cache.mkdir(parents=True)
    with tarfile.open(cache / f"{key}.tar", "w") as tar:
        tar.add(rootfs, arcname=".")


def docs(*components) -> SimpleNamespace:
    return SimpleNamespace(arch="amd64", components=list(components))


def test_not_root_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(builder_mod.os, "geteuid", lambda: 1000)
    with pytest.raises(EnvironmentProblem) as err:
        LocalBuilder(LocalBuildOptions(data_dir=tmp_path)).build(docs(), BUILD_ID)
    assert err.value.format_message() == "local builds need root: run as root or with sudo"
    assert not (tmp_path / "images" / f".staging-{BUILD_ID}").exists()


def test_disk_full_names_needed_and_free_mib(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentProblem, match=r"need \d+ MiB, \d+ MiB free"):
        check_free_space(tmp_path, 1 << 60)


@needs_root
@pytest.mark.root
def test_failed_build_removes_staging_and_mounts(tmp_path: Path, tiny_rootfs: Path) -> None:
    data = tmp_path / "data"
    seed_cache(data, tiny_rootfs)
    messages: list[str] = []
    builder = LocalBuilder(
        LocalBuildOptions(data_dir=data, debian_mirror=MIRROR, min_free_mib=1), messages.append
    )
    failing = ("bake-kubernetes", {"phases": [{"name": "build", "steps": [
        {"name": "Ok", "action": "ExecuteBash", "inputs": {"commands": ["echo ok > /ok"]}},
        {"name": "InstallKubelet", "action": "ExecuteBash",
         "inputs": {"commands": ["echo 'no kubelet' >&2", "exit 1"]}},
    ]}]}, "")
    with pytest.raises(BuildError) as err:
        builder.build(docs(failing), BUILD_ID)
    log = data / "logs" / "failed" / BUILD_ID / "bake-kubernetes/build/02-InstallKubelet.log"
    assert err.value.format_message() == (
        "component bake-kubernetes, phase build, step InstallKubelet failed (exit 1): "
        f"no kubelet; log: {log}"
    )
    assert "no kubelet" in log.read_text()  # the log outlives the staging directory
    staging = data / "images" / f".staging-{BUILD_ID}"
    assert not staging.exists()
    assert not (data / "images" / BUILD_ID).exists()
    assert active_mounts(data) == []
    assert any("unpacking cached rootfs" in m for m in messages)


@needs_root
@pytest.mark.root
def test_keep_failed_keeps_staging_without_mounts(tmp_path: Path, tiny_rootfs: Path) -> None:
    data = tmp_path / "data"
    seed_cache(data, tiny_rootfs)
    builder = LocalBuilder(LocalBuildOptions(data_dir=data, debian_mirror=MIRROR, min_free_mib=1,
                                             keep_failed=True))
    with pytest.raises(BuildError, match="did not write /etc/bake/image-manifest.json"):
        builder.build(docs(), BUILD_ID)
    staging = data / "images" / f".staging-{BUILD_ID}"
    assert (staging / "rootfs" / "usr/bin/bash").exists()
    assert active_mounts(data) == []


# --- slow: the real Debian rootfs and a bootable disk ----------------------------------------

REAL_COMPONENTS = [
    ("bake-smoke", {"name": "bake-smoke", "schemaVersion": 1.0, "phases": [
        {"name": "build", "steps": [
            {"name": "Manifest", "action": "CreateFile", "inputs": [{
                "path": "/etc/bake/image-manifest.json", "permissions": "0644",
                "content": json.dumps({"schema": "bake.image-manifest/v1", "artifacts": []}),
            }]},
            # Host keys are removed below (hygiene); regenerate them on first boot, as
            # cloud-init does on EC2 (there is no cloud-init datasource under qemu).
            {"name": "HostKeysOnBoot", "action": "CreateFile", "inputs": [{
                "path": "/etc/systemd/system/ssh.service.d/10-bake-host-keys.conf",
                "content": "[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\n"
                           "ExecStartPre=/usr/sbin/sshd -t\n",
            }]},
            {"name": "Hygiene", "action": "ExecuteBash", "inputs": {"commands": [
                "rm -f /etc/ssh/ssh_host_*", ": > /etc/machine-id",
                "dpkg-query -W -f='${Version}' systemd > /etc/bake/systemd-version",
            ]}},
        ]},
        {"name": "validate", "steps": [{"name": "Systemd", "action": "ExecuteBash",
                                        "inputs": {"commands": ["test -x /usr/bin/systemctl"]}}]},
        {"name": "test", "steps": [{
            "name": "NoHostKeys", "action": "ExecuteBash",
            "inputs": {"commands": ["! ls /etc/ssh/ssh_host_* 2>/dev/null"]},
        }]},
    ]}, ""),
]


def boot_until_login(kernel: Path, initrd: Path, disk: Path, timeout_s: float) -> str:
    """Boot the image with qemu (TCG, no network, disk snapshot) until the serial console shows
    a ``login:`` prompt; return the console output. The VM is always killed afterwards."""
    argv = ["qemu-system-x86_64", "-m", "1024", "-nographic", "-no-reboot", "-accel", "tcg",
            "-cpu", "max", "-nic", "none", "-kernel", str(kernel), "-initrd", str(initrd),
            "-append", "root=/dev/vda console=ttyS0 panic=-1",
            "-drive", f"file={disk},format=raw,if=virtio,snapshot=on"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    out = bytearray()
    os.set_blocking(proc.stdout.fileno(), False)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and proc.poll() is None and b"login:" not in out:
            chunk = proc.stdout.read(65536)
            if chunk:
                out += chunk
            else:
                time.sleep(0.5)
    finally:
        proc.kill()
        proc.wait()
    return out.decode(errors="replace")


@pytest.mark.slow
@needs_root
@pytest.mark.root
def test_real_debian_rootfs_to_bootable_disk(tmp_path: Path) -> None:
    data = Path(os.environ.get("BAKE_TEST_DATA_DIR", "/var/tmp/bake-test-data"))
    hook_calls: list[tuple[bool, Path]] = []
    builder = LocalBuilder(
        LocalBuildOptions(
            data_dir=data,
            after_test=lambda r, log: hook_calls.append(((r / "usr/bin/systemctl").exists(), log)),
        ),
        print,
    )
    build_id = f"1.30.4-amd64-test-{os.getpid()}"
    image = builder.build(docs(*REAL_COMPONENTS), build_id)
    try:
        assert hook_calls and hook_calls[0][0]  # the hook saw the finished rootfs
        assert image.kernel.stat().st_size > 1_000_000
        assert image.initrd.stat().st_size > 1_000_000
        label = subprocess.run(["blkid", "-o", "value", "-s", "LABEL", str(image.disk)],
                               capture_output=True, text=True).stdout.strip()
        assert label == "bake-root"
        fstab = subprocess.run(["debugfs", "-R", "cat /etc/fstab", str(image.disk)],
                               capture_output=True, text=True).stdout
        assert "LABEL=bake-root / ext4" in fstab
        keys = subprocess.run(["debugfs", "-R", "ls /etc/ssh", str(image.disk)],
                              capture_output=True, text=True).stdout
        assert "ssh_host_" not in keys
        assert image.manifest["schema"] == "bake.image-manifest/v1"
        if shutil.which("qemu-system-x86_64"):  # in DEB_PACKAGES; boots in about a minute (TCG)
            console = boot_until_login(image.kernel, image.initrd, image.disk, 300)
            assert "login:" in console, console[-2000:]
            assert "Failed to start" not in console, console[-2000:]
        assert (image.logs_dir / "bake-smoke/build/03-Hygiene.log").is_file()
        final = builder.commit(image, {"build_id": build_id})
        assert final.directory == data / "images" / build_id
        assert json.loads((final.directory / "build.json").read_text()) == {"build_id": build_id}
        assert final.disk.is_file() and final.rootfs_archive.is_file()
        assert not image.directory.exists()
        image = final
    finally:
        builder.discard(image)
    assert active_mounts(data) == []
