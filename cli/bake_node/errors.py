"""The agent's error family: each carries one line saying what went wrong and how to fix it.

``bake_node.main`` prints ``bake-node: error: <message>`` and exits 1 (no traceback unless
``--debug``). The agent does not import ``bake``, so this mirrors ``bake.errors`` in small.
"""

from __future__ import annotations


class NodeError(Exception):
    """Base class: a failure the operator can act on; ``str(exc)`` is the one-line message."""


class ConfigError(NodeError):
    """/etc/bake/node.yaml or the instance identity is missing or invalid."""


class LeaseLost(NodeError):
    """The lease this node held expired or was taken over (fencing counter moved on)."""


class QuorumError(NodeError):
    """An etcd member removal was refused because it would cost the cluster its quorum."""


class KubeadmError(NodeError):
    """kubeadm (or its stand-in) exited non-zero."""


class JoinMaterialError(NodeError):
    """Join material is missing, expired or could not be written."""
