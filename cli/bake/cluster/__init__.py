"""The cluster file (``cluster.yaml``, apiVersion ``bake.cluster/v1``) as frozen dataclasses.

``load_cluster(path)`` reads the YAML, checks its shape (unknown keys, types) and then its
meaning (odd control-plane count, worker min <= desired <= max, CIDRs that parse and do not
overlap, nothing open to 0.0.0.0/0, existing-VPC ids), and returns a ``ClusterSpec``. Every
failure is one ``ClusterFileError`` line that names the field, e.g.
``cluster.yaml: controlPlane.count: must be odd (1, 3, 5, 7) to keep etcd quorum, got 4``.
``init_text()`` is the commented starter file ``bake init`` writes. Nothing here touches AWS.

The package: ``model`` (the dataclasses and field patterns), ``init`` (``init_text``),
``parse`` (``parse_cluster``, ``load_cluster``) and ``check`` (``check_cluster``,
``load_checked_cluster``, ``instance_arch``). Every public name imports from ``bake.cluster``.
"""

from bake.cluster.check import check_cluster, load_checked_cluster
from bake.cluster.init import init_text
from bake.cluster.model import (
    API_VERSION,
    ARCHES,
    CNI_NAMES,
    ClusterFileError,
    ClusterSpec,
    EtcdSnapshotSpec,
    LocalSpec,
    NetworkSpec,
    NodeGroupSpec,
    instance_arch,
)
from bake.cluster.parse import load_cluster, parse_cluster

__all__ = [
    "API_VERSION",
    "ARCHES",
    "CNI_NAMES",
    "ClusterFileError",
    "ClusterSpec",
    "EtcdSnapshotSpec",
    "LocalSpec",
    "NetworkSpec",
    "NodeGroupSpec",
    "check_cluster",
    "init_text",
    "instance_arch",
    "load_checked_cluster",
    "load_cluster",
    "parse_cluster",
]
