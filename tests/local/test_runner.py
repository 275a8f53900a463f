"""The local AWSTOE runner, with small synthetic component documents.

Tests that chroot are marked ``root``; the file actions and WebDownload run with ``chroot=False``
(bash on the host, cwd = the rootfs directory) so they need no privileges.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from bake.builders.local.runner import LocalRunner, active_mounts, rootfs_path
from bake.errors import ArtifactError, BuildError

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: chroot and mount(8) (CI runs the suite as root)"
)


def component(name: str, phase: str, *steps: dict) -> tuple[str, dict, str]:
    return (name, {"name": name, "schemaVersion": 1.0,
                   "phases": [{"name": phase, "steps": list(steps)}]}, "")


def bash(name: str, *commands: str, **props) -> dict:
    return {"name": name, "action": "ExecuteBash", "inputs": {"commands": list(commands)}, **props}


@needs_root
@pytest.mark.root
def test_execute_bash_in_chroot_success_and_log(tiny_rootfs: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    messages: list[str] = []
    runner = LocalRunner(tiny_rootfs, logs, messages.append)
    doc = component("bake-os", "build", bash(
        "WriteMarker",
        'test -d /proc/self || exit 7',  # /proc is mounted inside the chroot
        'echo "in chroot" > /marker',
        'echo to-stdout; echo to-stderr >&2',
    ))
    report = runner.run_phases([doc], ("build", "validate"))

    assert (tiny_rootfs / "marker").read_text() == "in chroot\n"
    log = logs / "bake-os" / "build" / "01-WriteMarker.log"
    text = log.read_text()
    assert "to-stdout" in text and "to-stderr" in text
    assert "exit code: 0" in text and "duration:" in text and "chroot" in text
    assert [s.status for s in report.steps] == ["success"]
    assert messages == ["bake-os: build (1 steps)"]
    assert active_mounts(tiny_rootfs) == []


@needs_root
@pytest.mark.root
def test_failing_step_names_component_phase_step_and_log(tiny_rootfs: Path, tmp_path: Path):
    logs = tmp_path / "logs"
    doc = component("bake-kubernetes", "build",
                    bash("Prepare", "true"),
                    bash("InstallKubelet", "echo starting", "echo 'kubelet: not found' >&2",
                         "exit 1"),
                    bash("NeverRuns", "echo never > /never"))
    with pytest.raises(BuildError) as err:
        LocalRunner(tiny_rootfs, logs).run_phases([doc], ("build",))
    log = logs / "bake-kubernetes" / "build" / "02-InstallKubelet.log"
    assert err.value.format_message() == (
        "component bake-kubernetes, phase build, step InstallKubelet failed (exit 1): "
        f"kubelet: not found; log: {log}"
    )
    assert "exit code: 1" in log.read_text()
    assert not (tiny_rootfs / "never").exists()
    # mounts torn down after the failure, policy-rc.d removed
    assert active_mounts(tiny_rootfs) == []
    assert not (tiny_rootfs / "usr/sbin/policy-rc.d").exists()
    assert not any((tiny_rootfs / "proc").iterdir())


def test_on_failure_continue_runs_next_steps_then_fails(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    doc = component("c", "validate",
                    bash("Soft", "echo soft-fail >&2", "exit 3", onFailure="Continue"),
                    bash("After", "echo ran > after"))
    with pytest.raises(BuildError, match=r"step Soft failed \(exit 3\): soft-fail"):
        LocalRunner(root, tmp_path / "logs", chroot=False).run_phases([doc], ("validate",))
    assert (root / "after").read_text() == "ran\n"


def test_on_failure_ignore_and_max_attempts(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    doc = component("c", "build",
                    bash("Ignored", "exit 5", onFailure="Ignore"),
                    bash("Flaky", "n=$(cat count 2>/dev/null || echo 0)", "echo $((n+1)) > count",
                         "[ $n -ge 2 ]", maxAttempts=3))
    report = LocalRunner(root, tmp_path / "logs", chroot=False).run_phases([doc], ("build",))
    assert [s.status for s in report.steps] == ["ignored", "success"]
    assert (root / "count").read_text() == "3\n"
    assert "attempt 3/3" in (tmp_path / "logs/c/build/02-Flaky.log").read_text()


def test_timeout_seconds(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    doc = component("c", "build", bash("Slow", "sleep 30", timeoutSeconds=1))
    with pytest.raises(BuildError, match=r"step Slow failed \(error\): timed out after 1 s"):
        LocalRunner(root, tmp_path / "logs", chroot=False).run_phases([doc], ("build",))


def test_web_download_checksum_ok(tmp_path: Path, http_files) -> None:
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    data = b"#!/bin/sh\necho stand-in kubeadm\n"
    url = http_files.add("kubeadm", data)
    doc = component("c", "build", {
        "name": "Fetch", "action": "WebDownload",
        "inputs": [{"source": url, "destination": "/usr/bin/kubeadm",
                    "checksum": hashlib.sha256(data).hexdigest(), "algorithm": "SHA256"}],
    })
    LocalRunner(root, tmp_path / "logs", chroot=False).run_phases([doc], ("build",))
    assert (root / "usr/bin/kubeadm").read_bytes() == data


def test_web_download_checksum_mismatch_leaves_nothing(tmp_path: Path, http_files) -> None:
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    url = http_files.add("kubelet", b"tampered")
    expected = "0" * 64
    doc = component("c", "build", {
        "name": "Fetch", "action": "WebDownload",
        "inputs": [{"source": url, "destination": "/usr/bin/kubelet", "checksum": expected,
                    "algorithm": "SHA256"}],
    })
    with pytest.raises(ArtifactError) as err:
        LocalRunner(root, tmp_path / "logs", chroot=False).run_phases([doc], ("build",))
    msg = err.value.format_message()
    actual = hashlib.sha256(b"tampered").hexdigest()
    assert f"checksum mismatch for {url}: expected sha256 {expected}, got {actual}" in msg
    assert list((root / "usr/bin").iterdir()) == []  # neither the file nor a .part


def test_web_download_unreachable_suggests_mirror(tmp_path: Path, http_files) -> None:
    root = tmp_path / "root"
    root.mkdir()
    url = f"{http_files.url}/missing/kubectl"
    doc = component("c", "build", {
        "name": "Fetch", "action": "WebDownload",
        "inputs": [{"source": url, "destination": "/usr/bin/kubectl", "checksum": "a" * 64}],
    })
    with pytest.raises(ArtifactError, match=rf"cannot download {url}: HTTP 404; .*--mirror"):
        LocalRunner(root, tmp_path / "logs", chroot=False).run_phases([doc], ("build",))
    assert not (root / "usr/bin/kubectl").exists()

    refused = "http://127.0.0.1:9/kubectl"  # discard port: nothing listens
    doc = component("c", "build", {"name": "Fetch", "action": "WebDownload",
                                   "inputs": [{"source": refused, "destination": "/k"}]})
    with pytest.raises(ArtifactError, match=rf"cannot download {refused}: .*--mirror"):
        LocalRunner(root, tmp_path / "logs", chroot=False).run_phases([doc], ("build",))


def test_file_actions_map_paths_into_rootfs(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/lib").mkdir(parents=True)
    (root / "lib").symlink_to("usr/lib")
    (root / "etc").mkdir()
    (root / "etc/abs").symlink_to("/usr/lib")  # absolute link: must stay inside the rootfs
    steps = [
        {"name": "Folder", "action": "CreateFolder",
         "inputs": [{"path": "/etc/containerd", "permissions": "0755"}]},
        {"name": "File", "action": "CreateFile",
         "inputs": [{"path": "/etc/containerd/config.toml", "content": "version = 2\n",
                     "permissions": "0644"},
                    {"path": "/lib/systemd/system/kubelet.service", "content": "[Unit]\n"},
                    {"path": "/etc/abs/via-absolute-link", "content": "x"}]},
        {"name": "Perms", "action": "SetFilePermissions",
         "inputs": [{"path": "/etc/containerd/config.toml", "permissions": "0600"}]},
        {"name": "Move", "action": "MoveFile",
         "inputs": [{"source": "/etc/containerd/config.toml", "destination": "/etc/config.toml"}]},
        {"name": "Delete", "action": "DeleteFile", "inputs": [{"path": "/etc/config.toml"}]},
    ]
    LocalRunner(root, tmp_path / "logs", chroot=False).run_phases(
        [component("c", "build", *steps)], ("build",))
    assert (root / "usr/lib/systemd/system/kubelet.service").read_text() == "[Unit]\n"
    assert (root / "usr/lib/via-absolute-link").read_text() == "x"
    assert not (root / "etc/config.toml").exists()
    assert not (root / "etc/containerd/config.toml").exists()
    assert rootfs_path(root, "/../../etc/passwd") == root / "etc/passwd"


def test_unknown_action_fails_clearly(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    doc = component("c", "build", {"name": "Odd", "action": "S3Upload", "inputs": []})
    with pytest.raises(BuildError, match="unsupported action 'S3Upload' in the local runner"):
        LocalRunner(root, tmp_path / "logs", chroot=False).run_phases([doc], ("build",))


def test_component_parameters_are_substituted(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    data = {"name": "c", "parameters": [{"Version": {"type": "string", "default": "1.0"}}],
            "phases": [{"name": "build", "steps": [bash("Echo", "echo {{ Version }} > v")]}]}
    LocalRunner(root, tmp_path / "logs", chroot=False,
                parameters={"c": {"Version": "1.30.4"}}).run_phases([("c", data, "")], ("build",))
    assert (root / "v").read_text() == "1.30.4\n"
