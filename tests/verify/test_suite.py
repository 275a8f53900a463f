"""The shipped testinfra suite against a fake image tree: passes when whole, and reports
exactly the one check that a single breakage violates (testinfra's chroot backend, as root)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.support.fake_image import build_fake_image
from tests.verify.conftest import needs_root

from bake.errors import UsageError
from bake.verify import run_suite
from bake.verify import testinfra_args as host_args  # not collected as a test

pytestmark = [pytest.mark.root, needs_root]


def test_whole_image_passes(good_image, tmp_path):
    lines: list[str] = []
    result = run_suite(f"chroot://{good_image}", tmp_path / "logs", lines.append)
    assert result.ok, result.failures
    assert (result.failed, result.errors, result.skipped) == (0, 0, 0)
    assert result.passed >= 50  # one check per manifest file, artifact and image
    assert result.junit_path.is_file() and result.log_path.is_file()
    assert lines[-1].startswith(f"verify: {result.passed} passed, 0 failed")


def _append(root: Path, path: str, text: str) -> None:
    with (root / path.lstrip("/")).open("a") as f:
        f.write(text)


def _replace(root: Path, path: str, old: str, new: str) -> None:
    p = root / path.lstrip("/")
    p.write_text(p.read_text().replace(old, new))


def _edit_manifest(root: Path, change) -> None:
    p = root / "etc/bake/image-manifest.json"
    doc = json.loads(p.read_text())
    change(doc)
    p.write_text(json.dumps(doc))


def _kubeadm_version(doc):
    next(a for a in doc["artifacts"] if a["name"] == "kubeadm")["version"] = "1.30.99"


BREAKAGES = {
    # id: (how to break the image, the one failing check, text its reason must hold)
    "kubelet-changed-after-manifest": (
        lambda r: _append(r, "/usr/bin/kubelet", "# changed\n"),
        "test_artifact_file_sha256[kubelet:/usr/bin/kubelet]",
        "/usr/bin/kubelet (kubelet) SHA-256"),
    "portmap-not-executable": (
        lambda r: (r / "opt/cni/bin/portmap").chmod(0o644),
        "test_artifact_file_present[cni-plugins:/opt/cni/bin/portmap]", "not executable"),
    "kubeadm-other-version": (
        lambda r: _edit_manifest(r, _kubeadm_version),
        "test_artifact_version[kubeadm]", "expected v1.30.99"),
    "ssh-host-key": (
        lambda r: (r / "etc/ssh/ssh_host_ed25519_key").write_text("key"),
        "test_no_ssh_host_keys", "/etc/ssh/ssh_host_ed25519_key"),
    "systemd-cgroup-off": (
        lambda r: _replace(r, "/etc/containerd/config.toml", "SystemdCgroup = true",
                           "SystemdCgroup = false"),
        "test_containerd_systemd_cgroup", "SystemdCgroup = true"),
    "sandbox-image-other": (
        lambda r: _replace(r, "/etc/containerd/config.toml", "registry.k8s.io/pause:3.9",
                           "registry.k8s.io/pause:3.6"),
        "test_containerd_sandbox_image", "expected registry.k8s.io/pause:3.9"),
    "swap-line": (
        lambda r: _append(r, "/etc/fstab", "/swapfile none swap sw 0 0\n"),
        "test_swap_off_in_fstab", "/swapfile none swap sw 0 0"),
    "kubelet-not-enabled": (
        lambda r: (r / "etc/systemd/system/multi-user.target.wants/kubelet.service").unlink(),
        "test_unit_enabled[kubelet.service]", "kubelet.service is not enabled"),
    "ip-forward-off": (
        lambda r: _replace(r, "/etc/sysctl.d/99-kubernetes.conf", "ip_forward = 1",
                           "ip_forward = 0"),
        "test_sysctls", "net.ipv4.ip_forward = 0"),
    "machine-id-set": (
        lambda r: (r / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n"),
        "test_machine_id_empty", "not empty"),
    "pause-archive-missing": (
        lambda r: (r / "var/lib/bake/images/pause_3.9.tar").unlink(),
        "test_image_staged_or_pinned[registry.k8s.io/pause:3.9]", "is missing"),
    "apt-cache-left": (
        lambda r: (r / "var/cache/apt/archives/runc_1.1.5_amd64.deb").write_text("deb"),
        "test_no_package_caches", "runc_1.1.5_amd64.deb"),
    "cloud-init-state-left": (
        lambda r: (r / "var/lib/cloud/instance").mkdir(),
        "test_no_cloud_init_state", "/var/lib/cloud/instance"),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES), ids=list(BREAKAGES))
def test_one_breakage_one_failure(image_copy, tmp_path, breakage):
    breakit, expected_id, reason_part = BREAKAGES[breakage]
    breakit(image_copy)
    result = run_suite(f"chroot://{image_copy}", tmp_path / "logs")
    assert not result.ok
    assert [test_id for test_id, _ in result.failures] == [expected_id]
    reason = result.failures[0][1]
    assert reason_part in reason and "\n" not in reason


def test_os_package_runtime_checked_through_dpkg(standin_factory, tmp_path):
    root = tmp_path / "rootfs"
    manifest = build_fake_image(root, standin_factory(runtime="os-package"))
    containerd = next(a for a in manifest["artifacts"] if a["name"] == "containerd")
    assert containerd["source"] == "os-package"
    result = run_suite(root, tmp_path / "logs")
    assert result.ok, result.failures
    status = root / "var/lib/dpkg/status"
    status.write_text(status.read_text().replace("1.6.20~ds1-1+deb12u3", "1.6.20~ds1-1"))
    result = run_suite(root, tmp_path / "logs")
    assert result.failures == (("test_artifact_version[containerd]",
                                "containerd: installed package containerd is 1.6.20~ds1-1, "
                                "manifest says 1.6.20~ds1-1+deb12u3"),)


def test_missing_manifest_is_reported(image_copy, tmp_path):
    (image_copy / "etc/bake/image-manifest.json").unlink()
    result = run_suite(f"chroot://{image_copy}", tmp_path / "logs")
    assert not result.ok
    ids = dict(result.failures)
    assert "image-manifest.json is missing" in ids["test_image_manifest"]


def test_bad_host_spec_is_one_line(tmp_path):
    with pytest.raises(UsageError, match="not an existing absolute directory"):
        host_args(f"chroot://{tmp_path}/absent")
    assert host_args("ssh://admin@10.0.0.5") == ["--hosts=ssh://admin@10.0.0.5"]
