"""``bake render ami``: the files a user gets, golden copies of them, and the errors they see.

Golden files live in tests/render/golden/ami-1.30.12-amd64/; ``make golden`` rewrites them
(``tests.support.golden``). A mismatch shows a unified diff.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bake.errors import RenderError, UsageError

GOLDEN = Path(__file__).parent / "golden" / "ami-1.30.12-amd64"
EXPECTED = [
    "components/bake-os-prep.yaml",
    "components/bake-container-runtime.yaml",
    "components/bake-kubernetes.yaml",
    "components/bake-images.yaml",
    # one component per add-on the catalog pins for 1.30 (bake ami --addons all, the default)
    "components/bake-addon-aws-cloud-controller-manager.yaml",
    "components/bake-addon-aws-ebs-csi-driver.yaml",
    "components/bake-addon-calico.yaml",
    "components/bake-addon-cilium.yaml",
    "components/bake-addon-cluster-autoscaler.yaml",
    "components/bake-addon-flannel.yaml",
    "components/bake-addon-ingress-nginx.yaml",
    "components/bake-addon-local-path-provisioner.yaml",
    "components/bake-addon-metrics-server.yaml",
    "components/bake-addon-monitoring.yaml",
    "components/bake-image-manifest.yaml",
    "components/bake-hygiene.yaml",
    "image-recipes/image-recipe.yaml",
    "image-recipes/infrastructure-configuration.yaml",
    "image-recipes/distribution-configuration.yaml",
]


def test_render_ami_golden(run_bake, tmp_path, golden):
    result = run_bake("render", "ami", "--k8s", "1.30.12", "--arch", "amd64", "-o", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [str(tmp_path / p) for p in EXPECTED]
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(EXPECTED)
    golden.check(
        GOLDEN, {rel: (tmp_path / rel).read_text() for rel in EXPECTED}, complete=True
    )


@pytest.mark.parametrize("args", [("--k8s", "1.30"), ("--k8s", "1.34", "--arch", "arm64")])
def test_render_ami_other_releases(run_bake, tmp_path, args):
    result = run_bake("render", "ami", *args, "-o", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == len(EXPECTED)
    # the shipped catalog has no image archives
    assert "bake-images and the add-ons' components stage none" in result.stderr


def test_render_ami_with_mirror_and_image_archives(run_bake, tmp_path, images_overlay):
    out = tmp_path / "out"
    result = run_bake(
        "render",
        "ami",
        "--k8s",
        "1.30.12",
        "--mirror",
        "http://127.0.0.1:8999/",
        "--catalog",
        str(images_overlay),
        "-o",
        str(out),
    )
    assert result.exit_code == 0, result.stderr
    images = (out / "components/bake-images.yaml").read_text()
    assert "http://127.0.0.1:8999/bake-images/amd64/pause_3.9.tar" in images
    runtime = (out / "components/bake-container-runtime.yaml").read_text()
    assert (
        "http://127.0.0.1:8999/github.com/containerd/containerd/releases/download/v1.7.27/"
        in runtime
    )
    assert "stages none" not in result.stderr


def test_image_archives_need_a_mirror(run_bake, tmp_path, images_overlay):
    result = run_bake(
        "render", "ami", "--k8s", "1.30.12", "--catalog", str(images_overlay), "-o", str(tmp_path)
    )
    assert result.exit_code != 0
    assert "needs a mirror: pass --mirror URL" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())  # nothing half-written


@pytest.mark.parametrize(
    "args, message",
    [
        (("--k8s", "1.29"), "Kubernetes 1.29 is not in the catalog; supported: 1.30"),
        (("--k8s", "1.30", "--arch", "s390x"), "unknown arch 's390x'; supported: amd64, arm64"),
        (("--k8s", "latest"), "malformed Kubernetes version 'latest'"),
    ],
)
def test_bad_input_is_one_line(run_bake, tmp_path, args, message):
    result = run_bake("render", "ami", *args, "-o", str(tmp_path))
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_strict_undefined_catches_a_missing_value():
    from bake.templates import render_yaml

    with pytest.raises(
        RenderError, match="components/bake-hygiene.yaml.j2: 'ssh_unit' is undefined"
    ):
        render_yaml("components", "bake-hygiene.yaml.j2", {"kubernetes_version": "1.30.12"})


def test_render_path_does_not_import_boto3(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys; from bake.main import main\n"
        "try:\n main(['render', 'ami', '--k8s', '1.30', '-o', sys.argv[1]])\n"
        "except SystemExit: pass\n"
        "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules, 'boto3 imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


# The vendors' public SSM parameters of their newest AMIs: wiki.debian.org/Cloud/AmazonEC2Image;
# Canonical, "Finding Ubuntu images with the AWS SSM Parameter Store" (22.04 on gp2, 24.04 on
# gp3); AL2023 User Guide, "Launching AL2023 using the SSM parameter" (x86_64/arm64).
PARENT_IMAGES = {
    ("debian-12", "arm64"): "ssm:/aws/service/debian/release/12/latest/arm64",  # amd64: above
    ("debian-13", "amd64"): "ssm:/aws/service/debian/release/13/latest/amd64",
    ("debian-13", "arm64"): "ssm:/aws/service/debian/release/13/latest/arm64",
    ("ubuntu-22.04", "amd64"):
        "ssm:/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp2/ami-id",
    ("ubuntu-22.04", "arm64"):
        "ssm:/aws/service/canonical/ubuntu/server/22.04/stable/current/arm64/hvm/ebs-gp2/ami-id",
    ("ubuntu-24.04", "amd64"):
        "ssm:/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id",
    ("ubuntu-24.04", "arm64"):
        "ssm:/aws/service/canonical/ubuntu/server/24.04/stable/current/arm64/hvm/ebs-gp3/ami-id",
    ("al2023", "amd64"):
        "ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
    ("al2023", "arm64"):
        "ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64",
}


@pytest.mark.parametrize(("os_name", "arch"), sorted(PARENT_IMAGES))
def test_render_ami_golden_per_os(run_bake, tmp_path, golden, os_name, arch):
    """The same component documents for every OS; what differs is the OS data file's: the
    parent image (the vendor's SSM parameter), the package manager's shell and package names,
    where the agent goes, the names (no dot in an Image Builder name), tags and SSM path."""
    result = run_bake("render", "ami", "--k8s", "1.30.12", "--arch", arch, "--os", os_name,
                      "-o", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    recipe = yaml.safe_load((tmp_path / "image-recipes/image-recipe.yaml").read_text())
    assert recipe["parentImage"] == PARENT_IMAGES[os_name, arch]
    assert recipe["name"] == f"bake-k8s-1-30-12-{os_name.replace('.', '-')}-{arch}"
    dist = (tmp_path / "image-recipes/distribution-configuration.yaml").read_text()
    assert f'"bake:os": "{os_name}"' in dist
    golden.check(Path(__file__).parent / "golden" / f"ami-1.30.12-{os_name}-{arch}",
                 {rel: (tmp_path / rel).read_text() for rel in EXPECTED}, complete=True)


def test_render_ami_unknown_os_is_one_line(run_bake, tmp_path):
    result = run_bake("render", "ami", "--k8s", "1.30.12", "--os", "windows-11", "-o",
                      str(tmp_path))
    assert result.exit_code == 2
    assert ("unknown OS 'windows-11'; supported: al2023, debian-12, debian-13, ubuntu-22.04, "
            "ubuntu-24.04") in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_every_os_data_file_is_a_catalog_os():
    from bake.catalog import OSES
    from bake.oses import load_os, os_names

    assert os_names() == OSES
    for name in OSES:
        info = load_os(name)
        assert info.parent_image_for("arm64").startswith("ssm:/aws/service/")
        assert info.package_manager.name in ("apt", "dnf")
        assert set(info.python) == {"boto3", "yaml", "jinja2"}  # what bake_node imports
        if info.family == "debian":  # the local builder bootstraps Debian releases
            assert info.local_parent("amd64").packages
        else:
            with pytest.raises(UsageError, match=rf"^--os {name} cannot be baked with --local: "):
                info.local_parent("amd64")
