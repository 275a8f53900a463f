"""Registry mirrors for the images users run: containerd's ``hosts.toml`` files, written at boot
from node.yaml's ``registry``, before kubeadm runs.

containerd's CRI plugin reads ``<config_path>/<upstream host>/hosts.toml`` on every pull
(containerd docs, "Registry Configuration - Introduction", docs/hosts.md): ``server`` is the
upstream registry, and each ``[host."<mirror URL>"]`` is tried first, in file order, with the
capabilities ``pull`` and ``resolve`` and the CA that signed the mirror's certificate; a mirror
URL with a path gets ``override_path = true`` (its API root is that path). bake's
images set ``config_path = "/etc/containerd/certs.d"`` (components/files/containerd-config-*).
The CA bundle is public certificates only; no credential is ever written here.

With ``ecrCredentialProvider: true`` the kubelet gets its ECR pull credentials from the baked
``ecr-credential-provider`` (kubernetes/cloud-provider-aws), which exchanges the node's instance
profile for an ECR authorization token on each pull it matches: ``write_credential_provider``
writes the kubelet's ``CredentialProviderConfig`` (kubelet.config.k8s.io/v1, Kubernetes docs
"Configure a kubelet image credential provider"), and the kubeadm config passes the kubelet
``--image-credential-provider-config`` and ``--image-credential-provider-bin-dir``. Its image
patterns are the Amazon EKS AMI's (amazon-eks-ami nodeadm,
``internal/kubelet/image-credential-provider.go``): every ECR partition's private registries
and ECR Public, with ``ecr-public.aws.com`` from kubelet 1.32 on.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bake_node.errors import ConfigError

CA_FILE = "bake-registry-ca.crt"
# the registry host of docker.io images (containerd docs/hosts.md, "docker.io" example)
UPSTREAM_SERVERS = {"docker.io": "https://registry-1.docker.io"}


@dataclass(frozen=True)
class RegistrySettings:
    """``registry`` of node.yaml.

    Attributes:
        mirrors: upstream registry host -> mirror URLs, in the order they are tried.
        ca_bundle: PEM certificates the mirrors' TLS certificates chain to ('' for none).
    """

    mirrors: dict[str, tuple[str, ...]] = field(default_factory=dict)
    ca_bundle: str = ""
    ecr_credential_provider: bool = False

    @classmethod
    def from_node_yaml(cls, data: dict[str, Any] | None) -> RegistrySettings:
        """From node.yaml's ``registry`` mapping (schema-checked), or none when absent."""
        data = data or {}
        return cls({k: tuple(v) for k, v in data.get("mirrors", {}).items()},
                   data.get("caBundle", ""), bool(data.get("ecrCredentialProvider", False)))


def hosts_toml(upstream: str, mirrors: tuple[str, ...], ca_path: Path | None) -> str:
    """The ``hosts.toml`` of one upstream registry (TOML strings written as JSON strings,
    which TOML's basic strings accept)."""
    server = UPSTREAM_SERVERS.get(upstream, f"https://{upstream}")
    lines = ["# written by bake-node from node.yaml's registry.mirrors",
             f"server = {json.dumps(server)}", ""]
    for url in mirrors:
        lines.append(f"[host.{json.dumps(url)}]")
        lines.append('  capabilities = ["pull", "resolve"]')
        if urlsplit(url).path.strip("/"):
            # the mirror's API root is in its URL (a path-based pull-through cache)
            lines.append("  override_path = true")
        if ca_path is not None:
            lines.append(f"  ca = {json.dumps(str(ca_path))}")
        lines.append("")
    return "\n".join(lines)


def write_hosts(settings: RegistrySettings, certs_dir: Path) -> list[Path]:
    """Write ``<certs_dir>/<upstream>/hosts.toml`` for every mirrored upstream, and the CA
    bundle beside them (mode 0644: public certificates). Returns the files written ([] when no
    mirror is configured); files are replaced atomically."""
    if not settings.mirrors:
        return []
    certs_dir.mkdir(parents=True, exist_ok=True)
    written = []
    ca_path = None
    if settings.ca_bundle:
        ca_path = certs_dir / CA_FILE
        _write(ca_path, settings.ca_bundle)
        written.append(ca_path)
    for upstream, mirrors in sorted(settings.mirrors.items()):
        path = certs_dir / upstream / "hosts.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, hosts_toml(upstream, mirrors, ca_path))
        written.append(path)
    return written


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    os.replace(tmp, path)


#: The ECR credential provider's file name (the provider's ``name`` in the kubelet's config).
ECR_PROVIDER = "ecr-credential-provider"
#: ECR's registry host patterns (amazon-eks-ami nodeadm, see the module docstring).
ECR_MATCH_IMAGES = (
    "*.dkr.ecr.*.amazonaws.com",
    "*.dkr-ecr.*.on.aws",
    "*.dkr.ecr.*.amazonaws.com.cn",
    "*.dkr-ecr.*.on.amazonwebservices.com.cn",
    "*.dkr.ecr-fips.*.amazonaws.com",
    "*.dkr-ecr-fips.*.on.aws",
    "*.dkr.ecr.*.c2s.ic.gov",
    "*.dkr.ecr.*.sc2s.sgov.gov",
    "*.dkr.ecr.*.cloud.adc-e.uk",
    "*.dkr.ecr.*.csp.hci.ic.gov",
    "*.dkr.ecr.*.amazonaws.eu",
    "public.ecr.aws",
)


def credential_provider_config(kubernetes_version: str) -> dict[str, Any]:
    """The kubelet's ``CredentialProviderConfig`` for the ECR credential provider.

    Args:
        kubernetes_version: the kubelet's version (``1.31.8``): ``ecr-public.aws.com`` is
            matched from 1.32 on, as the EKS AMI does.
    Returns:
        the config as a dict (written as JSON): one provider, ``credentialprovider.kubelet.k8s.io/
        v1``, credentials cached 12 hours (the provider's tokens last 12 hours: ECR
        GetAuthorizationToken).
    """
    minor = tuple(int(p) for p in kubernetes_version.lstrip("v").split(".")[:2])
    images = [*ECR_MATCH_IMAGES, *(["ecr-public.aws.com"] if minor >= (1, 32) else [])]
    return {"apiVersion": "kubelet.config.k8s.io/v1", "kind": "CredentialProviderConfig",
            "providers": [{"name": ECR_PROVIDER, "matchImages": images,
                           "defaultCacheDuration": "12h",
                           "apiVersion": "credentialprovider.kubelet.k8s.io/v1"}]}


def write_credential_provider(kubernetes_version: str, bin_dir: Path, config_path: Path
                              ) -> dict[str, str]:
    """Write the kubelet's credential provider config for ECR, once the baked provider is there.

    Args:
        kubernetes_version: the kubelet's version (``credential_provider_config``).
        bin_dir: the directory the image installed ``ecr-credential-provider`` in.
        config_path: where to write the config (JSON, mode 0644: it holds no secret).
    Returns:
        the kubelet flags that use it: ``{"image-credential-provider-config": path,
        "image-credential-provider-bin-dir": dir}``.
    Raises:
        ConfigError: the provider is not in this image (baked only when the catalog pins its
            SHA-256), named with how to bake it.
    """
    binary = bin_dir / ECR_PROVIDER
    if not os.access(binary, os.X_OK):
        raise ConfigError(
            f"registry.ecrCredentialProvider is on, but this image has no {binary}: bake the "
            "image with checksums.ecr-credential-provider pinned in a catalog overlay "
            "(bake ami --catalog FILE), or turn registry.ecrCredentialProvider off")
    config_path.parent.mkdir(parents=True, exist_ok=True)
    _write(config_path, json.dumps(credential_provider_config(kubernetes_version), indent=2)
           + "\n")
    return {"image-credential-provider-config": str(config_path),
            "image-credential-provider-bin-dir": str(bin_dir)}
