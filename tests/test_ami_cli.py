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


def test_every_problem_is_reported_at_once_before_any_aws_call(run_bake):
    """The checks run as one pass (``bake.validation``): the missing image archives (the same
    line for both arches, said once) and the missing instance profile in one line, exit 2
    (bad input), no AWS call (no endpoint)."""
    result = run_bake(
        "--region",
        "us-east-1",
        "--endpoint-url",
        "http://127.0.0.1:9",
        "ami",
        "--k8s",
        "1.30",
        "--arch",
        "amd64,arm64",
    )
    assert result.exit_code == 2, result
    assert "Traceback" not in result.stderr
    [line] = [x for x in result.stderr.splitlines() if x.startswith("bake: error:")]
    assert line.startswith("bake: error: 2 problems before baking: "), line
    assert line.count("no SHA-256 for the image archives of") == 1
    assert "Image Builder needs an instance profile: pass --instance-profile NAME" in line


def test_one_failing_check_keeps_its_own_error_and_warnings_are_printed():
    from bake.errors import CatalogError, CheckFailures, EnvironmentProblem
    from bake.validation import Findings

    def fails(error):
        raise error

    lines: list[str] = []
    findings = Findings()
    assert findings.check("ok", lambda: 42) == 42
    unknown = CatalogError("Kubernetes 1.29 is not in the catalog")
    assert findings.check("catalog", fails, unknown) is None
    findings.warn("os-packages", "no OS packages staged")
    with pytest.raises(CatalogError, match="^Kubernetes 1.29 is not in the catalog$"):
        findings.raise_errors(lines.append)
    assert lines == ["warning: no OS packages staged"]

    findings = Findings()
    findings.check("builder", fails, EnvironmentProblem("local builds need root"))
    findings.check("host", fails, EnvironmentProblem("needs an arm64 host"))
    with pytest.raises(CheckFailures) as info:
        findings.raise_errors()
    assert info.value.exit_code == 1
    assert info.value.format_message() == (
        "2 problems before baking: local builds need root; needs an arm64 host"
    )


def test_the_same_problem_for_each_arch_is_said_once(run_bake):
    """An unknown version fails for every arch asked for; the line says it once."""
    result = run_bake(
        "--region", "us-east-1", "--endpoint-url", "http://127.0.0.1:9",
        "ami", "--k8s", "1.29", "--arch", "amd64,arm64", "--instance-profile", "bake-build",
    )
    assert result.exit_code == 2, result
    [line] = [x for x in result.stderr.splitlines() if x.startswith("bake: error:")]
    assert line.count("Kubernetes 1.29 is not in the catalog") == 1
    assert "problems before baking" not in line
