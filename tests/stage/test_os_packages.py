"""`bake stage --os-packages`: the OS packages a build without internet needs (kubeadm's
preflight tools and their dependencies), fetched with this Debian 12 host's own apt from the
Debian archive, pinned by SHA-256 in an overlay, staged to S3 (moto), and rendered into the
offline bake-os-prep as S3Download + SHA-256 check + dpkg -i, never apt-get (issue 12.11)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml

from bake.stage import _host_os

pytestmark = pytest.mark.skipif(
    _host_os() != "debian-12" or shutil.which("apt-get") is None,
    reason="staging Debian 12 packages uses a Debian 12 host's apt",
)
BUCKET = "s3://bake-artifacts/offline"


@pytest.fixture(scope="module")
def staged_debs(tmp_path_factory):
    from bake.stage import OsPackagesOptions, download_os_packages

    mirror = tmp_path_factory.mktemp("mirror")
    overlay = mirror / "os-packages" / "catalog-overlay.yaml"
    lines: list[str] = []
    doc = download_os_packages(
        OsPackagesOptions("amd64", mirror, overlay), lines.append
    )
    return mirror, overlay, doc


def test_the_closure_is_fetched_and_pinned(staged_debs):
    mirror, overlay, doc = staged_debs
    files = doc["os_packages"]["debian-12"]["amd64"]
    names = {f.split("_", 1)[0] for f in files}
    # image-recipes/os/debian-12.yaml: kubeadm's tools and the agent's Python modules
    assert {"iptables", "conntrack", "libnetfilter-conntrack3", "libxtables12",
            "python3-boto3", "python3-botocore", "python3-yaml", "python3-jinja2"} <= names
    assert all(":" not in f and "%3a" not in f for f in files)  # Debian pool names
    for filename, sha in files.items():
        path = mirror / "os-packages" / "debian-12" / "amd64" / filename
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
    assert yaml.safe_load(overlay.read_text()) == doc


def test_staged_to_s3_and_rendered_offline_without_apt(
    run_bake, aws, staged_debs, standin_mirror, tmp_path
):
    import boto3

    mirror, overlay, doc = staged_debs
    s3 = boto3.client("s3", endpoint_url=aws.endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="bake-artifacts")
    # the release artifacts come from the stand-in mirror: put the debs beside them
    source = tmp_path / "mirror"
    shutil.copytree(standin_mirror.mirror, source)
    shutil.copytree(mirror / "os-packages", source / "os-packages")
    result = run_bake(
        "--endpoint-url", aws.endpoint, "stage", "--k8s", "1.30", "--mirror", str(source),
        "--bucket", BUCKET, "--catalog", str(standin_mirror.overlay), "--catalog", str(overlay),
    )
    assert result.exit_code == 0, result.stderr
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="bake-artifacts")["Contents"]}
    files = doc["os_packages"]["debian-12"]["amd64"]
    for filename, sha in files.items():
        key = f"offline/os-packages/debian-12/amd64/{filename}"
        assert key in keys
        assert s3.head_object(Bucket="bake-artifacts", Key=key)["Metadata"]["sha256"] == sha

    out = tmp_path / "render"
    render = run_bake(
        "render", "ami", "--k8s", "1.30", "--artifacts", BUCKET, "--catalog",
        str(standin_mirror.overlay), "--catalog", str(overlay), "-o", str(out),
    )
    assert render.exit_code == 0, render.stderr
    prep = (out / "components" / "bake-os-prep.yaml").read_text()
    assert "apt-get update" not in prep and "apt-get install" not in prep
    for filename, sha in files.items():
        assert f"{BUCKET}/os-packages/debian-12/amd64/{filename}" in prep
        assert sha in prep


def test_another_arch_is_refused(run_bake, tmp_path):
    result = run_bake("stage", "--k8s", "1.30", "--os-packages", "--arch", "arm64",
                      "--mirror", str(tmp_path))
    assert result.exit_code == 1
    assert "staging arm64 packages needs an arm64 host (this one is amd64)" in result.stderr
    assert not (Path(tmp_path) / "os-packages").exists()
