"""``bake verify`` as a user runs it: local images by build id, AMI id or path; bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.support.fake_image import pack_rootfs
from tests.verify.conftest import needs_root

BUILD_ID = "1.30.12-amd64-20260101T000000Z"
AMI_ID = "ami-0123456789abcdef0"


def _local_image(data_dir: Path, rootfs: Path, build_id: str = BUILD_ID) -> Path:
    image = data_dir / "images" / build_id
    image.mkdir(parents=True)
    pack_rootfs(rootfs, image / "rootfs.tar.zst")
    (image / "build.json").write_text(json.dumps({
        "build_id": build_id, "kubernetes_version": "1.30.12", "minor": "1.30", "arch": "amd64",
        "os": "debian-12", "image_id": AMI_ID}))
    return image


@pytest.mark.parametrize("args", [
    ["--image", "nope"],
    ["--image", "ami-0000000000000000f"],
    [],
    ["--image", BUILD_ID, "--host", "ssh://admin@10.0.0.5"],
], ids=["unknown-build-id", "unknown-ami", "neither", "both"])
def test_bad_image_reference_is_one_line(run_bake, tmp_path, args):
    result = run_bake("--data-dir", str(tmp_path), "verify", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith("bake: error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_unknown_build_id_lists_known_ones(run_bake, tmp_path):
    (tmp_path / "images" / BUILD_ID).mkdir(parents=True)
    result = run_bake("--data-dir", str(tmp_path), "verify", "--image", "1.30.1-amd64-x")
    assert f"known build ids: {BUILD_ID}" in result.stderr


@pytest.mark.root
@needs_root
def test_verify_local_image_by_build_id_and_ami_id(run_bake, tmp_path, good_image):
    data = tmp_path / "data"
    image = _local_image(data, good_image)
    for ref in (BUILD_ID, AMI_ID, str(image)):
        result = run_bake("--data-dir", str(data), "verify", "--image", ref)
        assert result.exit_code == 0, result.stderr
        assert result.stdout.startswith("verify: OK: ") and " 0 failed" in result.stdout
    assert not list(data.glob(".verify-rootfs-*")), "unpacked rootfs left behind"


@pytest.mark.root
@needs_root
def test_verify_broken_image_lists_failures(run_bake, tmp_path, image_copy):
    (image_copy / "etc/ssh/ssh_host_rsa_key").write_text("key")
    data = tmp_path / "data"
    _local_image(data, image_copy)
    result = run_bake("--data-dir", str(data), "verify", "--image", BUILD_ID)
    assert result.exit_code == 1
    assert result.stdout.splitlines()[-1] == (
        "FAILED test_no_ssh_host_keys: SSH host keys baked into the image: "
        "/etc/ssh/ssh_host_rsa_key")
    last = result.stderr.splitlines()[-1]
    assert last.startswith(f"bake: error: 1 image check(s) failed on {BUILD_ID} (")


@pytest.mark.root
@needs_root
def test_verify_rootfs_directory_path(run_bake, tmp_path, good_image):
    result = run_bake("--data-dir", str(tmp_path), "verify", "--image", str(good_image),
                      "--log-dir", str(tmp_path / "logs"))
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "logs" / "junit.xml").is_file()


def test_verify_host_without_manifest_fails(run_bake, tmp_path):
    """The non-chroot path (testinfra's local backend standing in for ssh here: no sshd on
    this machine): this dev box is no bake node, so the manifest check fails, in one line."""
    result = run_bake("--data-dir", str(tmp_path), "verify", "--host", "local://")
    assert result.exit_code == 1
    assert "FAILED test_image_manifest: /etc/bake/image-manifest.json is missing" in result.stdout
    assert result.stderr.splitlines()[-1].startswith("bake: error: ")
