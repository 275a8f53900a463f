"""The CLI edges of the AWS path: `bake ami status|wait` argument checks, and one-line errors for
missing region or credentials (never a traceback)."""

from __future__ import annotations

import pytest


@pytest.fixture
def no_imds(monkeypatch):
    # botocore would otherwise ask the EC2 instance metadata service for credentials
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_missing_region_is_one_line(run_bake, monkeypatch, no_imds):
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    result = run_bake("prune", "--keep", "2")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "bake: error: no AWS region set: pass --region or set AWS_REGION / a profile region "
        "(use --local for the embedded AWS)"
    )


def test_images_list_without_a_region_points_at_local(run_bake, monkeypatch, no_imds):
    """Right after `make demo`, `bake images list` (no --local) must say where the image is."""
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    result = run_bake("images", "list")
    assert result.exit_code == 1
    assert result.stderr.strip().endswith("(use --local for the embedded AWS)")


def test_missing_credentials_is_one_line(run_bake, monkeypatch, no_imds, tmp_path):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    for var in (
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(var, raising=False)
    result = run_bake("--endpoint-url", "http://127.0.0.1:9", "prune", "--keep", "2")
    assert result.exit_code == 1
    assert "no AWS credentials found" in result.stderr and "Traceback" not in result.stderr


def test_status_and_wait_refuse_a_non_build_arn():
    from click.testing import CliRunner

    from bake.commands.ami_aws import status, wait
    from bake.context import GlobalOptions

    for command in (status, wait):
        result = CliRunner().invoke(command, ["ami-0123"], obj=GlobalOptions(region="us-east-1"))
        assert result.exit_code == 2
        assert "not an image build version ARN" in result.output
