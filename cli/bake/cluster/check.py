"""Checks of a parsed cluster against the rest of bake: the catalog (the minor and arch it
names), instance types against the arch, the image parameter; ``load_checked_cluster``."""

from __future__ import annotations

import re
from pathlib import Path

from bake.cluster.model import (
    ClusterFileError,
    ClusterSpec,
)
from bake.cluster.parse import load_cluster

_IMAGE_PARAMETER_RE = re.compile(
    r"/(?P<minor>\d+\.\d+)/(?P<os>[^/]+)/(?P<arch>[^/]+)/image_id$"
)


def check_cluster(spec: ClusterSpec, catalog) -> list[str]:
    """Checks of a parsed cluster file against the release catalog, all run in one pass.

    Args:
        spec: the parsed cluster.
        catalog: the merged ``bake.catalog.Catalog`` (shipped plus ``--catalog`` overlays).

    Returns:
        one message per finding (empty when all pass), each naming the field: the Kubernetes
        minor must be in the catalog, and an image parameter in bake's layout
        (``<prefix>/<minor>/<os>/<arch>/image_id``) must name the cluster's minor, OS and arch,
        and every enabled add-on must be one the catalog bakes with that minor (so a default
        ``bake ami`` carries its images).
    """
    from bake.catalog import supported_summary

    findings = []
    if spec.kubernetes_minor not in catalog.minors():
        findings.append(
            f"{spec.source}: kubernetes: {spec.kubernetes_minor} is not in the catalog; "
            f"supported: {supported_summary(catalog)}"
        )
    else:
        pinned = catalog.data["kubernetes"][spec.kubernetes_minor].get("addons", {})
        from bake_node.addons import addon

        for name in spec.addons.names():
            if name not in pinned:
                findings.append(
                    f"{spec.source}: addons.{addon(name).key}: the catalog bakes no {name} with "
                    f"Kubernetes {spec.kubernetes_minor} (add it to kubernetes."
                    f"{spec.kubernetes_minor}.addons in a --catalog overlay, or turn it off)")
    match = _IMAGE_PARAMETER_RE.search(spec.image_ssm_parameter)
    if match:
        for key, want in (
            ("minor", spec.kubernetes_minor),
            ("os", spec.os),
            ("arch", spec.arch),
        ):
            if match.group(key) != want:
                findings.append(
                    f"{spec.source}: image.ssmParameter: {spec.image_ssm_parameter} is the "
                    f"image of {key} {match.group(key)}, but the cluster's {key} is {want}"
                )
    return findings


def load_checked_cluster(path: Path, catalogs=()) -> ClusterSpec:
    """``load_cluster`` then ``check_cluster`` against the catalog (shipped + ``catalogs``).

    Raises:
        ClusterFileError: the file is invalid; every catalog finding in one line.
        CatalogError: an overlay is invalid.
    """
    from bake.catalog import load_catalog

    spec = load_cluster(path)
    findings = check_cluster(spec, load_catalog(catalogs))
    if findings:
        raise ClusterFileError("; ".join(findings))
    return spec
