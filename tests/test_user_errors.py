"""Bad input a new user gives bake, each answered with one clear line and the right exit code.

A corpus in the spirit of the issue-12 review (exit 70 is for bugs only): unwritable output
paths, overlays and cluster files that are not what they should be, mirrors bake cannot fetch
from, cluster files that name a Kubernetes minor the catalog lacks, an unreachable live node.
Each case checks: the exit code, exactly one ``bake: error:`` line on stderr naming the file or
field, no traceback, and that nothing was created where the command would have written.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from bake.cluster import init_text

SHA = "a" * 64


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """User files the cases point at."""
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(init_text())
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x01" + bytes(range(256)))
    bad_version = tmp_path / "overlay-bad-version.yaml"
    bad_version.write_text(
        yaml.safe_dump(
            {
                "schema": "bake.catalog/v1",
                "checksums": {
                    name: {"1.30.x": {"amd64": SHA}} for name in ("kubeadm", "kubelet", "kubectl")
                },
            }
        )
    )
    minor_99 = tmp_path / "cluster-1.99.yaml"
    minor_99.write_text(init_text().replace('kubernetes: "1.30"', 'kubernetes: "1.99"')
                        .replace("/bake/k8s/1.30/", "/bake/k8s/1.99/"))
    wrong_param = tmp_path / "cluster-param.yaml"
    wrong_param.write_text(
        init_text().replace("/bake/k8s/1.30/debian-12/amd64/", "/bake/k8s/1.31/debian-12/arm64/")
    )
    return {
        "cluster": cluster,
        "binary": binary,
        "bad-version": bad_version,
        "minor99": minor_99,
        "wrong-param": wrong_param,
        "out": tmp_path / "out",
    }


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# (id, args with {placeholders}, exit code, text the one error line must hold)
CASES = [
    ("render-ami-unwritable-o", ["render", "ami", "--k8s", "1.30", "-o", "/proc/nope"], 2,
     "-o /proc/nope: cannot write the directory"),
    ("render-cluster-unwritable-o",
     ["render", "cluster", "-f", "{cluster}", "-o", "/proc/nope"], 2,
     "-o /proc/nope: cannot write the directory"),
    ("overlay-version-1.30.x",
     ["render", "ami", "--k8s", "1.30", "--catalog", "{bad-version}", "-o", "{out}"], 2,
     "overlay-bad-version.yaml: at checksums.kubeadm: '1.30.x' is not a version like 1.30.13"),
    ("overlay-binary", ["catalog", "list", "--catalog", "{binary}"], 2,
     "catalog overlay {binary} is not UTF-8 text"),
    ("cluster-file-binary", ["validate", "-f", "{binary}"], 2,
     "cluster file {binary} is not UTF-8 text"),
    ("launch-binary-cluster-file", ["launch", "-f", "{binary}", "--yes"], 2,
     "cluster file {binary} is not UTF-8 text"),
    ("init-unwritable", ["init", "-f", "/proc/nope/cluster.yaml"], 2,
     "-f /proc/nope/cluster.yaml: cannot write the file"),
    ("verify-unwritable-log-dir",
     ["verify", "--host", "ssh://root@127.0.0.1:{port}", "--log-dir", "/proc/nope"], 2,
     "--log-dir /proc/nope: cannot write the directory"),
    ("unwritable-data-dir", ["--data-dir", "/proc/nope", "sandbox", "start"], 2,
     "--data-dir /proc/nope: cannot use /proc/nope"),
    ("mirror-ftp", ["render", "ami", "--k8s", "1.30", "--mirror", "ftp://x", "-o", "{out}"], 2,
     "--mirror 'ftp://x': unsupported scheme 'ftp'; use http, https or file"),
    ("mirror-broken-ipv6",
     ["render", "ami", "--k8s", "1.30", "--mirror", "http://[::1", "-o", "{out}"], 2,
     "--mirror 'http://[::1' is not a valid URL"),
    ("mirror-s3", ["render", "ami", "--k8s", "1.30", "--mirror", "s3://b/p", "-o", "{out}"], 2,
     "S3 is not a mirror"),
    ("ami-mirror-ftp", ["ami", "--k8s", "1.30", "--local", "--mirror", "ftp://x"], 2,
     "--mirror 'ftp://x': unsupported scheme"),
    ("debian-mirror-ftp", ["ami", "--k8s", "1.30", "--local", "--debian-mirror", "ftp://x"], 2,
     "--debian-mirror 'ftp://x': unsupported scheme"),
    ("stage-mirror-missing-dir",
     ["stage", "--k8s", "1.30", "--mirror", "/proc/nope", "--bucket", "s3://b/p"], 2,
     "--mirror /proc/nope: no such directory"),
    ("cluster-minor-not-in-catalog", ["validate", "-f", "{minor99}"], 2,
     "kubernetes: 1.99 is not in the catalog; supported: 1.30"),
    ("cluster-render-minor-not-in-catalog",
     ["render", "cluster", "-f", "{minor99}", "-o", "{out}"], 2,
     "kubernetes: 1.99 is not in the catalog"),
    ("cluster-image-parameter-of-another-minor", ["validate", "-f", "{wrong-param}"], 2,
     "image.ssmParameter: /bake/k8s/1.31/debian-12/arm64/image_id is the image of minor 1.31, "
     "but the cluster's minor is 1.30"),
    ("drill-without-local", ["drill", "-f", "{cluster}", "control-plane-replace"], 2,
     "drills break a cluster on purpose: they run on the local VM cluster only (add --local)"),
    ("drill-no-cluster", ["drill", "--local", "-f", "{cluster}", "stale-learner"], 2,
     "no local cluster demo is running: `bake launch --local -f"),
    # --arch and --artifacts: parsed in one place for every command that takes them
    ("ami-unknown-arch", ["ami", "--k8s", "1.30", "--arch", "amd64,s390x"], 2,
     "unknown arch 's390x'; supported: amd64, arm64"),
    ("stage-unknown-arch",
     ["stage", "--k8s", "1.30", "--arch", "riscv64", "--mirror", "{out}", "--bucket", "s3://b/p"],
     2, "unknown arch 'riscv64'; supported: amd64, arm64"),
    ("render-two-arches", ["render", "ami", "--k8s", "1.30", "--arch", "amd64,arm64", "-o",
                           "{out}"], 2, "--arch takes one arch here, not 'amd64,arm64'"),
    ("ami-artifacts-not-s3", ["ami", "--k8s", "1.30", "--artifacts", "https://bucket/p"], 2,
     "--artifacts 'https://bucket/p' must look like s3://bucket/prefix"),
    ("render-artifacts-bad-bucket",
     ["render", "ami", "--k8s", "1.30", "--artifacts", "s3://Bad_Bucket/x", "-o", "{out}"], 2,
     "--artifacts 's3://Bad_Bucket/x' must look like s3://bucket/prefix"),
    ("verify-unreachable-host", ["verify", "--host", "ssh://root@127.0.0.1:{port}"], 1,
     "cannot reach ssh://root@127.0.0.1:{port}: ssh: connect to host 127.0.0.1 port {port}: "
     "Connection refused"),
]


@pytest.mark.parametrize(("args", "code", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_creates_nothing(run_bake, files, args, code, expected):
    values = {k: str(v) for k, v in files.items()} | {"port": str(_refused_port())}
    argv = [a.format(**values) for a in args]
    result = run_bake(*argv)
    assert result.exit_code == code, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("bake: error:")]
    assert len(errors) == 1, result.stderr
    assert expected.format(**values) in errors[0]
    assert not files["out"].exists(), "an output directory was created"
    assert not Path("/proc/nope").exists()
