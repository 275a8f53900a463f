"""components/bake-node.yaml.j2: renders with StrictUndefined, uses only the agreed AWSTOE
actions, verifies every download by SHA-256, and its shell passes shellcheck."""

from __future__ import annotations

import shutil
import subprocess

import pytest

CONTEXT = {
    "agent_version": "0.1.0",
    "agent_source": "http://127.0.0.1:8080/bake-node-0.1.0.tar.gz",
    "agent_sha256": "a" * 64,
    "agent_s3": False,
    "agent_bundle": "/var/tmp/bake-node-downloads/bake-node-0.1.0.tar.gz",
    "downloads_dir": "/var/tmp/bake-node-downloads",
    # from the OS data file (image-recipes/os/debian-12.yaml)
    "os": "debian-12",
    "python_site": "/usr/lib/python3/dist-packages",
    "python_modules": ["boto3", "yaml", "jinja2"],
    "python_packages": ["python3-boto3", "python3-yaml", "python3-jinja2"],
}
ALLOWED = {"ExecuteBash", "WebDownload", "CreateFile", "CreateFolder"}


@pytest.fixture(scope="module")
def component():
    from bake.templates import render_yaml

    _text, data = render_yaml("components", "bake-node.yaml.j2", CONTEXT)
    return data


def steps(component):
    return [s for phase in component["phases"] for s in phase["steps"]]


def test_structure(component):
    assert component["schemaVersion"] == 1.0
    assert [p["name"] for p in component["phases"]] == ["build", "validate", "test"]
    assert {s["action"] for s in steps(component)} <= ALLOWED
    downloads = [s for s in steps(component) if s["action"] == "WebDownload"]
    assert downloads
    for s in downloads:
        for i in s["inputs"]:
            assert i["algorithm"] == "SHA256" and len(i["checksum"]) == 64


def test_units_and_ordering(component):
    files = {
        i["path"]: i["content"]
        for s in steps(component)
        if s["action"] == "CreateFile"
        for i in s["inputs"]
    }
    unit = files["/etc/systemd/system/bake-node.service"]
    assert "After=network-online.target containerd.service" in unit
    assert "ExecStart=/usr/sbin/bake-node run" in unit
    assert "bake-node rotate" in files["/etc/systemd/system/bake-node-rotate.service"]
    snap = files["/etc/systemd/system/bake-node-snapshot.service"]
    assert "ExecStart=/usr/sbin/bake-node snapshot" in snap
    assert "ConditionPathExists=/etc/kubernetes/manifests/etcd.yaml" in snap  # control planes
    assert "OnUnitActiveSec=5min" in files["/etc/systemd/system/bake-node-snapshot.timer"]
    assert "ExecStart=/usr/sbin/bake-node certs" in files[
        "/etc/systemd/system/bake-node-certs.service"]
    assert "OnUnitActiveSec=1d" in files["/etc/systemd/system/bake-node-certs.timer"]


def test_missing_value_fails():
    import jinja2

    from bake.templates import render_yaml

    with pytest.raises((jinja2.UndefinedError, Exception)):
        render_yaml("components", "bake-node.yaml.j2", {})


@pytest.mark.skipif(not shutil.which("shellcheck"), reason="shellcheck (Debian) not installed")
def test_shell_passes_shellcheck(component, tmp_path):
    for n, s in enumerate(x for x in steps(component) if x["action"] == "ExecuteBash"):
        script = tmp_path / f"{n}.sh"
        script.write_text("#!/bin/bash\n" + "\n".join(s["inputs"]["commands"]) + "\n")
        proc = subprocess.run(
            ["shellcheck", "-S", "warning", str(script)], capture_output=True, text=True
        )
        assert proc.returncode == 0, f"{s['name']}:\n{proc.stdout}"
