"""Registry mirrors: the hosts.toml files bake-node writes, and REAL containerd (Debian's)
pulling through them from a REAL registry (Debian's docker-registry, TLS with a test CA,
filled with skopeo from a stand-in image archive) on 127.0.0.1. The upstream name is
``registry.bake.invalid`` (RFC 2606: never resolves), so a pull that ignored the mirror could
not reach anything either."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import tomllib
from pathlib import Path

import pytest

from bake_node.errors import ConfigError
from bake_node.registry import (
    CA_FILE,
    RegistrySettings,
    credential_provider_config,
    hosts_toml,
    write_credential_provider,
    write_hosts,
)


def test_the_ecr_credential_provider_config_is_the_kubelets_and_needs_the_baked_binary(tmp_path):
    """registry.ecrCredentialProvider: the kubelet's CredentialProviderConfig names the baked
    provider for ECR's registries (ECR Public's new host from 1.32, as the EKS AMI does), and is
    written only when the image carries the provider; otherwise one line says how to bake it."""
    import json

    config = credential_provider_config("1.31.8")
    (provider,) = config["providers"]
    assert (config["apiVersion"], config["kind"]) == ("kubelet.config.k8s.io/v1",
                                                      "CredentialProviderConfig")
    assert provider["name"] == "ecr-credential-provider"
    assert provider["apiVersion"] == "credentialprovider.kubelet.k8s.io/v1"
    assert "*.dkr.ecr.*.amazonaws.com" in provider["matchImages"]
    assert "ecr-public.aws.com" not in provider["matchImages"]
    assert "ecr-public.aws.com" in credential_provider_config("1.32.0")["providers"][0][
        "matchImages"]
    bin_dir, path = tmp_path / "bin", tmp_path / "etc" / "config.json"
    with pytest.raises(ConfigError, match=r"registry.ecrCredentialProvider is on, but this image "
                                          r"has no .*ecr-credential-provider: bake the image "
                                          r"with checksums.ecr-credential-provider pinned"):
        write_credential_provider("1.31.8", bin_dir, path)
    assert not path.exists()
    bin_dir.mkdir()
    (bin_dir / "ecr-credential-provider").write_text("#!/bin/sh\n")
    (bin_dir / "ecr-credential-provider").chmod(0o755)
    flags = write_credential_provider("1.31.8", bin_dir, path)
    assert flags == {"image-credential-provider-config": str(path),
                     "image-credential-provider-bin-dir": str(bin_dir)}
    assert json.loads(path.read_text()) == config
    assert RegistrySettings.from_node_yaml({"ecrCredentialProvider": True}).ecr_credential_provider


def test_hosts_toml_is_containerds_format():
    text = hosts_toml("docker.io", ("https://mirror.example", "https://cache.example/v2/hub"),
                      Path("/etc/containerd/certs.d/bake-registry-ca.crt"))
    doc = tomllib.loads(text)
    assert doc["server"] == "https://registry-1.docker.io"
    assert list(doc["host"]) == ["https://mirror.example", "https://cache.example/v2/hub"]
    first, second = doc["host"].values()
    assert first == {"capabilities": ["pull", "resolve"],
                     "ca": "/etc/containerd/certs.d/bake-registry-ca.crt"}
    assert second["override_path"] is True  # a path-based pull-through cache
    assert tomllib.loads(hosts_toml("quay.io", ("http://m.example:5000",), None)) == {
        "server": "https://quay.io",
        "host": {"http://m.example:5000": {"capabilities": ["pull", "resolve"]}}}


def test_write_hosts_one_directory_per_upstream(tmp_path):
    settings = RegistrySettings.from_node_yaml({
        "mirrors": {"docker.io": ["https://m.example"], "registry.k8s.io": ["https://m.example"]},
        "caBundle": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"})
    written = write_hosts(settings, tmp_path / "certs.d")
    assert sorted(str(p.relative_to(tmp_path)) for p in written) == [
        f"certs.d/{CA_FILE}", "certs.d/docker.io/hosts.toml", "certs.d/registry.k8s.io/hosts.toml"]
    assert all(oct(p.stat().st_mode & 0o777) == "0o644" for p in written)
    assert write_hosts(RegistrySettings(), tmp_path / "none") == []
    assert not (tmp_path / "none").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


def _tls(work: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for 127.0.0.1 it signed (openssl)."""
    ca_key, ca, key, csr, crt = (work / n for n in ("ca.key", "ca.crt", "srv.key", "srv.csr",
                                                     "srv.crt"))
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-subj", "/CN=bake test registry CA",
        "-days", "2", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    ext = work / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-out", str(crt), "-extfile", str(ext))
    return ca, crt, key


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="containerd needs root")
@pytest.mark.skipif(any(shutil.which(t) is None for t in ("containerd", "ctr", "skopeo",
                                                          "docker-registry", "openssl")),
                    reason="containerd, skopeo and docker-registry (make deb-deps)")
def test_containerd_pulls_through_the_mirror_bake_node_configured(standin_mirror):
    work = Path(tempfile.mkdtemp(prefix="reg", dir="/tmp"))  # socket paths must stay short
    procs: list[subprocess.Popen] = []
    try:
        ca, crt, key = _tls(work)
        port = _free_port()
        (work / "registry.yml").write_text(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: " + str(work / "data")
            + f"\nhttp:\n  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {crt}\n"
            f"    key: {key}\n")
        procs.append(subprocess.Popen(["docker-registry", "serve", str(work / "registry.yml")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        _wait_port(port, procs[-1])
        certs = work / "skopeo-certs"
        certs.mkdir()
        shutil.copy(ca, certs / "ca.crt")
        pause = standin_mirror.release.image("pause")
        subprocess.run(["skopeo", "copy", "--dest-cert-dir", str(certs),
                        f"oci-archive:{standin_mirror.mirror / pause.archive_path}",
                        f"docker://127.0.0.1:{port}/library/pause:{pause.tag}"],
                       check=True, capture_output=True)

        # what bake-node writes from node.yaml's registry
        settings = RegistrySettings.from_node_yaml({
            "mirrors": {"registry.bake.invalid": [f"https://127.0.0.1:{port}"]},
            "caBundle": ca.read_text()})
        write_hosts(settings, work / "certs.d")

        (work / "config.toml").write_text(
            'version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n')
        sock = work / "sock"
        procs.append(subprocess.Popen(
            ["containerd", "-c", str(work / "config.toml"), "--root", str(work / "root"),
             "--state", str(work / "state"), "--address", str(sock)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.1)
        ref = f"registry.bake.invalid/library/pause:{pause.tag}"
        pulled = subprocess.run(["ctr", "--address", str(sock), "--namespace", "k8s.io", "images",
                                 "pull", "--hosts-dir", str(work / "certs.d"), ref],
                                capture_output=True, text=True, timeout=120)
        assert pulled.returncode == 0, pulled.stderr[-2000:]
        listing = subprocess.run(["ctr", "--address", str(sock), "--namespace", "k8s.io",
                                  "images", "ls", "-q"], capture_output=True, text=True).stdout
        assert ref in listing.split()
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(timeout=20)
        subprocess.run(["umount", "-R", str(work / "root")], capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)
