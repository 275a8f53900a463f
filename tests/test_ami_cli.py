"""`bake ami` argument handling: the one-line errors a user meets before any work starts."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), "missing --k8s VERSION"),
        (("--k8s", "1.30", "--local", "--arch", "amd64,arm64"), "one arch at a time"),
        (
            ("--k8s", "1.30", "--local", "--artifacts", "s3://bucket/p"),
            "--artifacts applies to EC2 Image Builder builds, not --local",
        ),
        (
            ("--k8s", "1.30", "--local", "--no-wait", "--regions", "eu-west-1"),
            "--regions, --no-wait apply to EC2 Image Builder builds",
        ),
        (("--k8s", "1.29", "--local"), "Kubernetes 1.29 is not in the catalog; supported:"),
    ],
    ids=["no-version", "two-arches-local", "artifacts-local", "aws-flags-local", "unknown"],
)
def test_bad_ami_arguments_are_one_line(run_bake, args, expected):
    result = run_bake("ami", *args)
    assert result.exit_code == 2, result
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("bake: error: ") and expected in line, line


def test_help_lists_the_image_builder_subcommands(run_bake):
    result = run_bake("ami", "--help")
    assert result.exit_code == 0
    for sub in ("status", "wait", "cancel"):
        assert f"  {sub} " in result.stdout


def test_image_builder_bake_needs_image_archives_before_any_aws_call(run_bake):
    """The shipped catalog pins no image archives: baking without them would leave nodes that
    must pull images at boot, so the AWS path refuses before touching AWS (no endpoint here)."""
    result = run_bake(
        "--region",
        "us-east-1",
        "--endpoint-url",
        "http://127.0.0.1:9",
        "ami",
        "--k8s",
        "1.30",
        "--instance-profile",
        "bake-build",
    )
    assert result.exit_code == 2, result
    [line] = [x for x in result.stderr.splitlines() if x.startswith("bake: error:")]
    assert "no SHA-256 for the image archives of registry.k8s.io/kube-apiserver:v1.30.12" in line
