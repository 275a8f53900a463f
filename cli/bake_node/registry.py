"""Registry mirrors for the images users run: containerd's ``hosts.toml`` files, written at boot
from node.yaml's ``registry``, before kubeadm runs.

containerd's CRI plugin reads ``<config_path>/<upstream host>/hosts.toml`` on every pull
(containerd docs, "Registry Configuration - Introduction", docs/hosts.md): ``server`` is the
upstream registry, and each ``[host."<mirror URL>"]`` is tried first, in file order, with the
capabilities ``pull`` and ``resolve`` and the CA that signed the mirror's certificate; a mirror
URL with a path gets ``override_path = true`` (its API root is that path). bake's
images set ``config_path = "/etc/containerd/certs.d"`` (components/files/containerd-config-*).
The CA bundle is public certificates only; no credential is ever written here.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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

    @classmethod
    def from_node_yaml(cls, data: dict[str, Any] | None) -> RegistrySettings:
        """From node.yaml's ``registry`` mapping (schema-checked), or none when absent."""
        data = data or {}
        return cls({k: tuple(v) for k, v in data.get("mirrors", {}).items()},
                   data.get("caBundle", ""))


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
