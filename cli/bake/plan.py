"""One download plan per release: every file a build fetches, with all its facts, computed once.

``download_plan(release)`` lists, for every release artifact (kubeadm, kubelet, ... with
``source: release``), every container image archive whose SHA-256 the catalog knows, and every
OS package staged for builds without internet: its path in the mirror/S3 layout, its SHA-256,
where it lands on the build instance and, for artifacts, the upstream URL and install path. A
``PlannedFile`` then answers where to fetch it from: upstream, ``<mirror>/<path>``, or
``<artifacts_s3>/<path>``, and its S3 key under a staging prefix.

The same plan serves every reader: the components' download steps (``bake.render``), what
``bake stage`` verifies and uploads, and the mirror preflight of ``bake ami``. The layout is
bake's mirror layout (README, "Air-gapped mirrors"): ``<upstream host>/<upstream path>`` for
release files, ``bake-images/<arch>/<name>_<tag>.tar`` for image archives and
``os-packages/<os>/<arch>/<file>.deb`` for OS packages (``bake.catalog``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from bake.errors import CatalogError

#: where a build puts the release files it downloads (removed by bake-hygiene)
DOWNLOADS_DIR = "/var/tmp/bake-downloads"
#: where container image archives stay on the image (imported into containerd at boot)
IMAGES_DIR = "/var/lib/bake/images"
#: where an add-on's upstream files stay on the image (``<dir>/<add-on>/<file>``; the node agent
#: applies them before the add-on's own manifests)
ADDON_FILES_DIR = "/var/lib/bake/addon-files"
#: where a build without internet puts the staged OS packages before ``dpkg -i``
OS_PACKAGES_DIR = "/var/tmp/bake-os-packages"


def mirror_path(url: str) -> str:
    """The mirror layout path of an upstream URL: ``https://dl.k8s.io/release/...`` ->
    ``dl.k8s.io/release/...``."""
    parts = urlsplit(url)
    return f"{parts.netloc}{parts.path}"


@dataclass(frozen=True)
class PlannedFile:
    """One file of a release's download plan.

    Attributes:
        name: catalog name: the artifact (``kubelet``), the image (``kube-apiserver``) or the
            OS package (``iptables``).
        kind: ``artifact``, ``image``, ``addon-file`` or ``os-package``.
        path: its path in the mirror and S3 layout (see the module docstring).
        sha256: lowercase hex SHA-256 the catalog pins.
        destination: absolute path on the build instance the download writes.
        upstream: the upstream URL (artifacts and add-on files; image archives and staged
            packages exist only on a mirror).
        install: install path, a file or a directory (artifacts only).
        ref: the image reference, e.g. ``registry.k8s.io/pause:3.9`` (images only).
        group: whose image or file (images and add-on files): ``kubeadm`` or the add-on's
            name (``flannel``).
    """

    name: str
    kind: str
    path: str
    sha256: str
    destination: str
    upstream: str | None = None
    install: str | None = None
    ref: str | None = None
    group: str | None = None

    @property
    def filename(self) -> str:
        """The last path segment, e.g. ``kubelet`` or ``kube-apiserver_v1.30.12.tar``."""
        return self.path.rsplit("/", 1)[-1]

    def url(self, mirror: str | None) -> str:
        """Where to download it: ``<mirror>/<path>``, or upstream without a mirror.

        Raises:
            CatalogError: no mirror for a file that exists only on one (image archives).
        """
        if mirror:
            return f"{mirror.rstrip('/')}/{self.path}"
        if self.upstream:
            return self.upstream
        raise CatalogError(
            f"image archive for {self.ref or self.name} needs a mirror: pass --mirror URL "
            "(image archives are not published upstream as files)"
        )

    def s3_uri(self, artifacts_s3: str) -> str:
        """Where ``bake stage`` put it under ``s3://bucket/prefix``: ``<artifacts_s3>/<path>``."""
        return f"{artifacts_s3.rstrip('/')}/{self.path}"

    def s3_key(self, prefix: str) -> str:
        """Its object key under a staging key prefix (``""`` for the bucket's root)."""
        from bake.aws.s3 import join_key

        return join_key(prefix, self.path)

    def source(self, mirror: str | None, artifacts_s3: str | None) -> str:
        """What a component downloads: the S3 URI with ``artifacts_s3``, else ``url(mirror)``."""
        return self.s3_uri(artifacts_s3) if artifacts_s3 else self.url(mirror)


@dataclass(frozen=True)
class DownloadPlan:
    """Every file one release's build fetches.

    Attributes:
        artifacts: the release artifacts with ``source: release``, in catalog (install) order;
            artifacts from OS packages are installed by the package manager, not downloaded.
        images: the image archives whose SHA-256 the catalog knows, in image-set order.
        os_packages: the OS packages staged for builds without internet.
        addon_files: the baked add-ons' upstream files (Calico's CRDs), downloaded straight
            to ``ADDON_FILES_DIR/<add-on>/<file>``.
        images_without_sha256: refs of images whose archive the catalog has no SHA-256 for
            (they cannot be baked: ``bake ami`` refuses, ``bake stage`` needs ``--no-images``).
    """

    artifacts: tuple[PlannedFile, ...]
    images: tuple[PlannedFile, ...]
    os_packages: tuple[PlannedFile, ...]
    images_without_sha256: tuple[str, ...] = ()
    addon_files: tuple[PlannedFile, ...] = ()

    def artifact(self, name: str) -> PlannedFile:
        """The planned artifact ``name``. Raises KeyError for one not downloaded."""
        for planned in self.artifacts:
            if planned.name == name:
                return planned
        raise KeyError(name)

    def files(self, images: bool = True) -> tuple[PlannedFile, ...]:
        """Artifacts, add-on files, OS packages and (with ``images``) image archives, in that
        order."""
        return (*self.artifacts, *self.addon_files, *self.os_packages,
                *(self.images if images else ()))


def download_plan(release: Any) -> DownloadPlan:
    """The download plan of a resolved ``bake.catalog.Release``.

    Returns:
        the ``DownloadPlan``; pure (no I/O).
    """
    artifacts = tuple(
        PlannedFile(
            name=a.name,
            kind="artifact",
            path=mirror_path(a.url),
            sha256=a.sha256,
            destination=f"{DOWNLOADS_DIR}/{a.filename}",
            upstream=a.url,
            install=a.install,
        )
        for a in release.artifacts
        if a.source == "release"
    )
    images = tuple(
        PlannedFile(
            name=i.name,
            kind="image",
            path=i.archive_path,
            sha256=i.archive_sha256,
            destination=f"{IMAGES_DIR}/{i.name}_{i.tag}.tar",
            ref=i.ref,
            group=i.group,
        )
        for i in release.images
        if i.archive_sha256
    )
    os_packages = tuple(
        PlannedFile(
            name=p.package,
            kind="os-package",
            path=p.path,
            sha256=p.sha256,
            destination=f"{OS_PACKAGES_DIR}/{p.filename}",
        )
        for p in release.os_packages
    )
    addon_files = tuple(
        PlannedFile(
            name=f.name,
            kind="addon-file",
            path=mirror_path(f.url),
            sha256=f.sha256,
            destination=f"{ADDON_FILES_DIR}/{f.addon}/{f.filename}",
            upstream=f.url,
            group=f.addon,
        )
        for f in release.addon_files
    )
    missing = tuple(i.ref for i in release.images if not i.archive_sha256)
    return DownloadPlan(artifacts, images, os_packages, missing, addon_files)
