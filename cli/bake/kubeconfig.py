"""``bake kubeconfig``: the cluster's admin kubeconfig, fetched from where the first control
plane keeps it.

The control plane that ran ``kubeadm init`` stores kubeadm's ``admin.conf`` as a SecureString
under the cluster's KMS key at ``<ssmPrefix>/control-plane/admin-kubeconfig``
(``bake_node.joinmaterial.JoinMaterial.publish_admin_kubeconfig``; Intelligent-Tiering, since
the file is over Standard's 4 KB). Only the control-plane role writes there; a user needs
``ssm:GetParameter`` on it and ``kms:Decrypt`` on the key. The file is written 0600, never
echoed; its server is the control-plane endpoint (the internal NLB).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bake.aws import ssm
from bake.errors import BakeError, UsageError


@dataclass(frozen=True)
class KubeconfigOptions:
    """What ``bake kubeconfig`` was asked.

    Attributes:
        out_dir: the directory the file goes into (``<cluster name>.kubeconfig``).
        force: replace an existing file.
    """

    out_dir: Path = Path(".")
    force: bool = False


def fetch_kubeconfig(spec: Any, clients: Any, options: KubeconfigOptions) -> Path:
    """Write the admin kubeconfig of ``spec``'s cluster into ``options.out_dir``.

    Args:
        spec: the ``bake.cluster.ClusterSpec``.
        clients: ``bake.aws.session.AwsClients`` of the cluster's region (or the embedded AWS).
        options: see ``KubeconfigOptions``.

    Returns:
        the path written (mode 0600).

    Raises:
        UsageError: the file exists (without ``force``), or the directory is not writable.
        BakeError: no kubeconfig stored yet (no such cluster, or it has not initialized).
        AwsError: the read was refused (names ``ssm:GetParameters``; KMS decrypt denied).
    """
    name = spec.kubeconfig_parameter
    path = Path(options.out_dir) / f"{spec.name}.kubeconfig"
    if path.exists() and not options.force:
        raise UsageError(f"{path} exists: pass --force to replace it, or -o DIR for another place")
    values = ssm.secure_values(clients.client("ssm"), [name])
    if name not in values:
        raise BakeError(
            f"no admin kubeconfig at {name}: cluster {spec.name} has not initialized in this "
            f"account and region (see `bake status -f {spec.source}`)"
        )
    _write_private(path, values[name])
    return path


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from its first byte, atomically.

    Raises:
        UsageError: the directory does not exist or is not writable.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(
            f"cannot write {path}: {exc.strerror}: choose a writable directory with -o DIR"
        ) from None
