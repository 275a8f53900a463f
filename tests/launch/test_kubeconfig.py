"""``bake kubeconfig``: the admin kubeconfig the first control plane stored, fetched into a
0600 file, never printed; every refusal is one line and writes nothing."""

from __future__ import annotations

import stat

import boto3
import pytest

KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: https://nlb:6443\n"
SECRET = "client-key-data: c2VjcmV0LWtleQ=="


@pytest.fixture
def stored(aws, cluster_file):
    """The kubeconfig where the agent keeps it, a SecureString under a KMS key."""
    from bake.cluster import load_cluster

    spec = load_cluster(cluster_file)
    kms = boto3.client("kms", endpoint_url=aws.endpoint, region_name="us-east-1")
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    ssm = boto3.client("ssm", endpoint_url=aws.endpoint, region_name="us-east-1")
    ssm.put_parameter(Name=spec.kubeconfig_parameter, Value=KUBECONFIG + SECRET, KeyId=key,
                      Type="SecureString", Tier="Intelligent-Tiering", Overwrite=True)
    return spec


def _error_lines(result):
    assert "Traceback" not in result.stderr
    return [x for x in result.stderr.splitlines() if x.startswith("bake: error:")]


def test_writes_the_kubeconfig_0600_and_never_prints_it(aws, run_bake, cluster_file, stored,
                                                        tmp_path):
    out = tmp_path / "kube"
    out.mkdir()
    result = run_bake("--endpoint-url", aws.endpoint, "kubeconfig", "-f", str(cluster_file),
                      "-o", str(out))
    assert result.exit_code == 0, result.stderr
    path = out / f"{stored.name}.kubeconfig"
    assert path.read_text() == KUBECONFIG + SECRET
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SECRET not in result.stdout + result.stderr
    assert f"wrote {path}" in result.stdout

    again = run_bake("--endpoint-url", aws.endpoint, "kubeconfig", "-f", str(cluster_file),
                     "-o", str(out))
    assert again.exit_code == 2
    [line] = _error_lines(again)
    assert f"{path} exists: pass --force" in line
    forced = run_bake("--endpoint-url", aws.endpoint, "kubeconfig", "-f", str(cluster_file),
                      "-o", str(out), "--force")
    assert forced.exit_code == 0, forced.stderr
    assert sorted(p.name for p in out.iterdir()) == [path.name]  # no temporary file left


def test_a_cluster_that_has_not_initialized_is_one_line(aws, run_bake, cluster_file, tmp_path):
    from bake.cluster import load_cluster

    spec = load_cluster(cluster_file)
    result = run_bake("--endpoint-url", aws.endpoint, "kubeconfig", "-f", str(cluster_file),
                      "-o", str(tmp_path))
    assert result.exit_code == 1
    [line] = _error_lines(result)
    assert f"no admin kubeconfig at {spec.kubeconfig_parameter}" in line
    assert not (tmp_path / f"{spec.name}.kubeconfig").exists()


def test_an_unwritable_directory_is_bad_input(aws, run_bake, cluster_file, stored, tmp_path):
    missing = tmp_path / "no" / "such"
    result = run_bake("--endpoint-url", aws.endpoint, "kubeconfig", "-f", str(cluster_file),
                      "-o", str(missing))
    assert result.exit_code == 2
    [line] = _error_lines(result)
    assert f"cannot write {missing}/{stored.name}.kubeconfig" in line
    assert "-o DIR" in line
