"""``registry`` of the cluster file: mirrors of upstream registries for the images users run
(a private registry or an ECR pull-through cache in an air-gapped account), checked on load and
handed to every node in node.yaml; bake-node writes them as containerd ``hosts.toml`` files
(``bake_node.registry``).

- ``mirrors``: upstream registry host (``docker.io``, ``registry.k8s.io``, ``quay.io``,
  ``host:port``) -> a list of ``https://`` (or ``http://``) mirror URLs, tried in order.
- ``caBundle``: PEM certificates the mirrors' TLS certificates chain to. Public certificates
  only: a private key is refused, since user-data is readable by anyone who can describe the
  instance.
- ``ecrCredentialProvider``: ``true`` lets the kubelet pull from this account's ECR (private
  repositories and pull-through caches) with the node's instance profile, through the baked
  ``ecr-credential-provider`` (``bake_node.registry``); no credential is in any file. The
  template grants the nodes ECR's pull actions on this account's repositories and, air-gapped,
  adds the ecr.api and ecr.dkr interface endpoints.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

HOST_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*"
                     r"(:[0-9]{1,5})?$")
PEM_RE = re.compile(r"-----BEGIN CERTIFICATE-----\s*([A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----")
CA_BUNDLE_MAX = 8192  # bytes; node.yaml's schema limit (the user-data as a whole is 16 KB)


@dataclass(frozen=True)
class RegistrySpec:
    """The cluster's registry settings (``mirrors`` upstream -> URLs; ``ca_bundle`` PEM;
    ``ecr_credential_provider``: the kubelet pulls from ECR with the instance profile)."""

    mirrors: dict[str, tuple[str, ...]] = field(default_factory=dict)
    ca_bundle: str = ""
    ecr_credential_provider: bool = False

    def node_yaml(self) -> dict[str, Any]:
        """node.yaml's ``registry`` mapping ({} when nothing is set)."""
        out: dict[str, Any] = {}
        if self.mirrors:
            out["mirrors"] = {k: list(v) for k, v in self.mirrors.items()}
        if self.ca_bundle:
            out["caBundle"] = self.ca_bundle
        if self.ecr_credential_provider:
            out["ecrCredentialProvider"] = True
        return out


def _ca_bundle(fail, where: str, text: str) -> str:
    if "PRIVATE KEY" in text:
        fail(where, "holds a private key: give the CA certificates only (user-data is not "
                    "secret)")
    blocks = PEM_RE.findall(text)
    if not blocks:
        fail(where, "must be PEM certificates (-----BEGIN CERTIFICATE----- ...)")
    for i, block in enumerate(blocks):
        try:
            base64.b64decode("".join(block.split()), validate=True)
        except (binascii.Error, ValueError):
            fail(where, f"certificate {i + 1} is not valid base64")
    if len(text.encode()) > CA_BUNDLE_MAX:
        fail(where, f"is {len(text.encode())} bytes, over {CA_BUNDLE_MAX}: keep only the CAs "
                    "that sign the mirrors")
    return text if text.endswith("\n") else text + "\n"


def parse_registry(top) -> RegistrySpec:
    """Read ``registry`` from the top-level reader of ``bake.cluster.parse``.

    Raises:
        ClusterFileError: a field is invalid (names it, e.g. ``registry.mirrors.docker.io[0]``).
    """
    reg = top.sub("registry")
    raw = reg.get("mirrors", dict, {})
    mirrors: dict[str, tuple[str, ...]] = {}
    for upstream, urls in raw.items():
        where = f"registry.mirrors.{upstream}"
        if not isinstance(upstream, str) or not HOST_RE.match(upstream):
            reg.fail(where, "is not a registry host like docker.io or registry.example:5000")
        if isinstance(urls, str):
            urls = [urls]
        if not isinstance(urls, list) or not urls:
            reg.fail(where, "must be a list of mirror URLs like [https://mirror.example]")
        for i, url in enumerate(urls):
            parts = urlsplit(str(url))
            if parts.scheme not in ("https", "http") or not parts.hostname:
                reg.fail(f"{where}[{i}]", f"must be an https:// (or http://) URL, got {url!r}")
            if parts.username or parts.password:
                reg.fail(f"{where}[{i}]", "must not hold credentials (user-data is not secret)")
        mirrors[upstream] = tuple(str(u) for u in urls)
    ca = reg.get("caBundle", str, "")
    if ca:
        ca = _ca_bundle(reg.fail, "registry.caBundle", ca)
        if not mirrors:
            reg.fail("registry.caBundle", "is set but registry.mirrors is empty")
    ecr = reg.get("ecrCredentialProvider", bool, False)
    reg.done()
    return RegistrySpec(mirrors, ca, ecr)
