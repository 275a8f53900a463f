"""The catalog's model: supported arches and OSes, where each artifact comes from, and the
resolved types (``Artifact``, ``ContainerImage``, ``OsPackage``, ``Release``, ``Catalog``).

Pure data and the facts it encodes (sources in ``bake.catalog``'s docstring); no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

ARCHES: tuple[str, ...] = ("amd64", "arm64")
# the OSes bake bakes: one data file each in image-recipes/os/ (bake.oses; a test holds the two
# lists equal)
OSES: tuple[str, ...] = ("al2023", "debian-12", "debian-13", "ubuntu-22.04", "ubuntu-24.04")
SCHEMA = "bake.catalog/v1"
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
MINOR_RE = re.compile(r"^(\d+)\.(\d+)$")
PATCH_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
# a Debian pool file name: <package>_<version, no epoch>_<arch>.deb (Debian policy 5.6.1, 5.6.12)
DEB_FILENAME_RE = re.compile(r"^[a-z0-9][a-z0-9.+-]*_[A-Za-z0-9.+~-]+_[a-z0-9]+\.deb$")

# The kubeadm image set (``kubeadm config images list``): control-plane images carry the
# Kubernetes version as tag; etcd, coredns and pause carry the catalog's tags.
CONTROL_PLANE_IMAGES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")
REGISTRY = "registry.k8s.io"  # registry-neutral names: no region or account baked in


@dataclass(frozen=True)
class ArtifactSpec:
    """How one kind of artifact is fetched and installed.

    Attributes:
        name: catalog name (``kubeadm``, ``cni-plugins``, ...).
        url: upstream URL template with ``{version}`` and ``{arch}``.
        kind: ``binary`` (a single file) or ``tar.gz`` (an archive to unpack).
        install: install path of a binary, or the directory an archive unpacks into.
    """

    name: str
    url: str
    kind: str
    install: str


ARTIFACT_SPECS: dict[str, ArtifactSpec] = {
    s.name: s
    for s in (
        ArtifactSpec(
            "kubeadm",
            "https://dl.k8s.io/release/v{version}/bin/linux/{arch}/kubeadm",
            "binary",
            "/usr/bin/kubeadm",
        ),
        ArtifactSpec(
            "kubelet",
            "https://dl.k8s.io/release/v{version}/bin/linux/{arch}/kubelet",
            "binary",
            "/usr/bin/kubelet",
        ),
        ArtifactSpec(
            "kubectl",
            "https://dl.k8s.io/release/v{version}/bin/linux/{arch}/kubectl",
            "binary",
            "/usr/bin/kubectl",
        ),
        ArtifactSpec(
            "crictl",
            "https://github.com/kubernetes-sigs/cri-tools/releases/download/v{version}/crictl-v{version}-linux-{arch}.tar.gz",
            "tar.gz",
            "/usr/bin",
        ),
        ArtifactSpec(
            "containerd",
            "https://github.com/containerd/containerd/releases/download/v{version}/containerd-{version}-linux-{arch}.tar.gz",
            "tar.gz",
            "/usr",
        ),
        ArtifactSpec(
            "runc",
            "https://github.com/opencontainers/runc/releases/download/v{version}/runc.{arch}",
            "binary",
            "/usr/sbin/runc",
        ),
        ArtifactSpec(
            "cni-plugins",
            "https://github.com/containernetworking/plugins/releases/download/v{version}/cni-plugins-linux-{arch}-v{version}.tgz",
            "tar.gz",
            "/opt/cni/bin",
        ),
        ArtifactSpec(
            "etcd",
            "https://github.com/etcd-io/etcd/releases/download/v{version}/etcd-v{version}-linux-{arch}.tar.gz",
            "tar.gz",
            "/usr/bin",
        ),
        # the kubelet's image credential provider for ECR (kubernetes/cloud-provider-aws, whose
        # binaries are published under artifacts.k8s.io/binaries/cloud-provider-aws/); optional:
        # baked only when the catalog holds its SHA-256 (OPTIONAL_ARTIFACTS)
        ArtifactSpec(
            "ecr-credential-provider",
            "https://artifacts.k8s.io/binaries/cloud-provider-aws/v{version}/linux/{arch}/ecr-credential-provider-linux-{arch}",
            "binary",
            "/usr/libexec/kubernetes/image-credential-provider/ecr-credential-provider",
        ),
    )
}
#: Artifacts a release carries only when the catalog (or an overlay) holds their SHA-256 for the
#: version its minor names: the ECR credential provider, whose upstream publishes no checksum
#: bake can cite, so bake ships none and the user who verified the binary pins it in an overlay.
OPTIONAL_ARTIFACTS: tuple[str, ...] = ("ecr-credential-provider",)
# Image archives have no upstream file: they live on the user's mirror under this path, with
# their SHA-256 in a catalog overlay (see README, "Air-gapped mirrors").
IMAGE_ARCHIVE_PATH = "bake-images/{arch}/{name}_{tag}.tar"
# OS packages a build without internet installs (staged by `bake stage --os-packages`): on the
# mirror and in S3 under this path, with their SHA-256 in a catalog overlay (``os_packages``).
OS_PACKAGE_PATH = "os-packages/{os}/{arch}/{filename}"


@dataclass(frozen=True)
class Artifact:
    """One pinned file of a release.

    Attributes:
        name: catalog name, e.g. ``kubelet``.
        version: upstream version without ``v``.
        arch: ``amd64`` or ``arm64``.
        source: ``release`` (downloaded, SHA-256 checked) or ``os-package`` (installed from the
            OS's own signed package archive; version recorded at install time).
        url: upstream URL (``None`` for ``os-package``).
        sha256: lowercase hex digest of the file at ``url`` (``None`` for ``os-package``).
        kind: ``binary``, ``tar.gz`` or ``os-package``.
        install: install path (file or directory).
        package: OS package name for ``os-package``.
    """

    name: str
    version: str
    arch: str
    source: str
    url: str | None
    sha256: str | None
    kind: str
    install: str
    package: str | None = None

    @property
    def filename(self) -> str:
        """The file name of the download (last URL path segment)."""
        return (self.url or self.name).rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ContainerImage:
    """One container image baked into a node image: kubeadm's image set or an add-on's (a
    machine image is an AMI or a ``bake.builders.local.LocalImage``; this runs in containerd).

    Attributes:
        name: short name, e.g. ``kube-apiserver``, ``flannel``.
        ref: registry-neutral reference, e.g. ``registry.k8s.io/kube-apiserver:v1.30.12``.
        tag: the tag.
        archive_path: path of its OCI archive on a mirror (``bake-images/<arch>/...tar``).
        archive_sha256: SHA-256 of that archive from a catalog overlay, or ``None``.
        digest: ``sha256:<hex>`` the registry serves for ``ref`` (a manifest list, the same for
            every arch), from the catalog's ``image_digests``; ``None`` when not pinned.
            ``bake stage --images-from`` copies the image by this digest.
        group: ``kubeadm`` for kubeadm's image set (what ``kubeadm config images list``
            prints), else the add-on that runs it (``flannel``; the catalog's ``addons``).
    """

    name: str
    ref: str
    tag: str
    archive_path: str
    archive_sha256: str | None
    digest: str | None = None
    group: str = "kubeadm"


@dataclass(frozen=True)
class AddonFile:
    """One upstream file an add-on applies beside its own manifests (Calico's CRDs), baked into
    the image, SHA-256 checked, under ``ADDON_FILES_DIR/<addon>/`` (``bake.plan``).

    Attributes:
        addon: the add-on (``calico``), the group its images have too.
        name: the file's catalog name (``crds``).
        url: the upstream URL (``addon_releases.<addon>.<version>.files.<name>.url``).
        sha256: lowercase hex SHA-256 of the file at ``url``, from the catalog.
    """

    addon: str
    name: str
    url: str
    sha256: str

    @property
    def filename(self) -> str:
        """The last URL path segment, e.g. ``crds.yaml``."""
        return self.url.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class OsPackage:
    """One OS package file staged for builds without internet.

    Attributes:
        package: the package name (``iptables``), from the file name (``<name>_<ver>_<arch>``).
        filename: e.g. ``iptables_1.8.9-2_amd64.deb``.
        sha256: its SHA-256 from the overlay ``bake stage --os-packages`` wrote.
        path: mirror/S3-relative path, ``os-packages/<os>/<arch>/<filename>``.
    """

    package: str
    filename: str
    sha256: str
    path: str


@dataclass(frozen=True)
class Release:
    """A resolved, pinned release set for one Kubernetes patch version and arch.

    Attributes:
        kubernetes_version: e.g. ``1.30.12``.
        minor: e.g. ``1.30``.
        arch: ``amd64`` or ``arm64``.
        os: the image OS, ``debian-12``.
        artifacts: kubeadm, kubelet, kubectl, crictl, containerd, runc, cni-plugins, etcd (the
            client tools), in install order; then ``ecr-credential-provider`` when the catalog
            pins its SHA-256 (``OPTIONAL_ARTIFACTS``).
        images: the kubeadm image set, then the baked add-ons' images (``ContainerImage.group``).
        catalog_sources: the catalog files that were merged, shipped one first.
        os_packages: OS package files staged for builds without internet (``os_packages`` of
            an overlay); empty when none were staged.
        addons: the add-ons baked in, ``((name, version), ...)`` in name order (the catalog's
            ``kubernetes.<minor>.addons``, or the subset ``bake ami --addons`` chose).
        addon_files: the baked add-ons' upstream files (``AddonFile``), in add-on order.
    """

    kubernetes_version: str
    minor: str
    arch: str
    os: str
    artifacts: tuple[Artifact, ...]
    images: tuple[ContainerImage, ...]
    catalog_sources: tuple[str, ...] = field(default=())
    os_packages: tuple[OsPackage, ...] = field(default=())
    addons: tuple[tuple[str, str], ...] = field(default=())
    addon_files: tuple[AddonFile, ...] = field(default=())

    def addon_images(self, addon: str) -> tuple[ContainerImage, ...]:
        """The images of the baked add-on ``addon`` (none if it is not baked)."""
        return tuple(i for i in self.images if i.group == addon)

    def has_artifact(self, name: str) -> bool:
        """True when the release carries the artifact ``name`` (an optional one may be absent)."""
        return any(a.name == name for a in self.artifacts)

    def artifact(self, name: str) -> Artifact:
        """Return the artifact called ``name``; ``KeyError`` if absent."""
        for a in self.artifacts:
            if a.name == name:
                return a
        raise KeyError(name)

    def image(self, name: str) -> ContainerImage:
        """Return the image called ``name``; ``KeyError`` if absent."""
        for i in self.images:
            if i.name == name:
                return i
        raise KeyError(name)


@dataclass(frozen=True)
class Catalog:
    """The merged catalog document (shipped + overlays), validated.

    Attributes:
        data: the merged ``bake.catalog/v1`` mapping.
        sources: file names merged, in order.
    """

    data: dict[str, Any]
    sources: tuple[str, ...]

    def minors(self) -> list[str]:
        """Kubernetes minors in the catalog, oldest first."""
        return sorted(self.data.get("kubernetes", {}), key=_minor_key)

    def patches(self, minor: str, arch: str | None = None) -> list[str]:
        """Patch versions of ``minor`` with kubeadm, kubelet and kubectl pinned, oldest first.

        Args:
            minor: e.g. ``"1.30"``.
            arch: restrict to patches pinned for this arch (default: any arch).
        """
        sums = self.data.get("checksums", {})
        found = []
        for version in sums.get("kubeadm", {}):
            if not version.startswith(minor + "."):
                continue
            arches = [arch] if arch else list(ARCHES)
            if any(
                all(
                    sums.get(n, {}).get(version, {}).get(a)
                    for n in ("kubeadm", "kubelet", "kubectl")
                )
                for a in arches
            ):
                found.append(version)
        return sorted(found, key=_patch_key)


def _minor_key(v: str) -> tuple[int, int]:
    a, b = v.split(".")[:2]
    return int(a), int(b)


def _patch_key(v: str) -> tuple[int, int, int]:
    a, b, c = v.split(".")
    return int(a), int(b), int(c)
