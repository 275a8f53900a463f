"""The release catalog: which Kubernetes releases bake can bake, pinned by SHA-256.

The shipped catalog (``bake/data/catalog.yaml``, derived from kubespray's checksum tables; see
its header) is merged with the user's overlays (``--catalog FILE``), each validated on load.
``resolve(catalog, "1.30", "amd64")`` turns a version request into a ``Release``: every artifact
with its upstream URL, SHA-256 and install path, and the kubeadm image set with tags.

Download locations (facts encoded in ``ARTIFACT_SPECS``):
- kubeadm, kubelet, kubectl: the Kubernetes release bucket, ``https://dl.k8s.io/release/v<ver>/
  bin/linux/<arch>/<name>`` (kubernetes.io, "Installing kubeadm", without a package manager).
- crictl: ``kubernetes-sigs/cri-tools`` GitHub releases, ``crictl-v<ver>-linux-<arch>.tar.gz``.
- containerd: ``containerd/containerd`` releases, ``containerd-<ver>-linux-<arch>.tar.gz``.
- runc: ``opencontainers/runc`` releases, ``runc.<arch>``.
- CNI plugins: ``containernetworking/plugins`` releases, ``cni-plugins-linux-<arch>-v<ver>.tgz``.
- etcd client (``etcdctl``, which the node agent uses to reconcile etcd members before a
  control-plane join): ``etcd-io/etcd`` releases, ``etcd-v<ver>-linux-<arch>.tar.gz``.
- ECR credential provider (optional: baked only when an overlay pins its SHA-256): the
  ``kubernetes/cloud-provider-aws`` binaries, ``https://artifacts.k8s.io/binaries/
  cloud-provider-aws/v<ver>/linux/<arch>/ecr-credential-provider-linux-<arch>``; the line
  matches the control plane's minor (cloud-provider-aws README, "Compatibility with
  Kubernetes"), so each minor names ``<minor>.0``.

The package: ``model`` (the types and the facts above), ``load`` (the shipped catalog, overlays,
the schema in ``bake/data/catalog.schema.json``, mirror URLs) and ``resolve`` (version requests to
releases). Everything public is importable from ``bake.catalog``.
"""

from bake.catalog.load import MIRROR_SCHEMES, catalog_schema, load_catalog, parse_mirror
from bake.catalog.model import (
    ARCHES,
    ARTIFACT_SPECS,
    CONTROL_PLANE_IMAGES,
    DEB_FILENAME_RE,
    IMAGE_ARCHIVE_PATH,
    MINOR_RE,
    OPTIONAL_ARTIFACTS,
    OS_PACKAGE_PATH,
    OSES,
    PATCH_RE,
    REGISTRY,
    SCHEMA,
    SHA256_RE,
    AddonFile,
    Artifact,
    ArtifactSpec,
    Catalog,
    ContainerImage,
    OsPackage,
    Release,
)
from bake.catalog.resolve import list_releases, resolve, resolve_version, supported_summary

__all__ = [
    "ARCHES", "ARTIFACT_SPECS", "CONTROL_PLANE_IMAGES", "DEB_FILENAME_RE", "IMAGE_ARCHIVE_PATH",
    "MINOR_RE", "MIRROR_SCHEMES", "OPTIONAL_ARTIFACTS", "OSES", "OS_PACKAGE_PATH", "PATCH_RE",
    "REGISTRY", "SCHEMA", "SHA256_RE", "AddonFile", "Artifact", "ArtifactSpec", "Catalog",
    "ContainerImage", "OsPackage", "Release", "catalog_schema", "list_releases", "load_catalog",
    "parse_mirror", "resolve", "resolve_version", "supported_summary",
]
