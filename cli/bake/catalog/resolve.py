"""Resolving a version request against the catalog: ``resolve(catalog, "1.30", "amd64")`` turns
it into a ``Release`` (every artifact with its upstream URL, SHA-256 and install path, the kubeadm
image set with tags, the staged OS packages); ``list_releases`` gives ``bake catalog list``'s rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bake.catalog.model import (
    ARCHES,
    ARTIFACT_SPECS,
    CONTROL_PLANE_IMAGES,
    IMAGE_ARCHIVE_PATH,
    MINOR_RE,
    OPTIONAL_ARTIFACTS,
    OS_PACKAGE_PATH,
    OSES,
    PATCH_RE,
    REGISTRY,
    AddonFile,
    Artifact,
    Catalog,
    ContainerImage,
    OsPackage,
    Release,
)
from bake.errors import CatalogError


def supported_summary(catalog: Catalog) -> str:
    """One line listing supported minors with their newest patch, for error messages."""
    parts = []
    for minor in catalog.minors():
        patches = catalog.patches(minor)
        if patches:
            parts.append(f"{minor} (up to {patches[-1]})")
    return ", ".join(parts)


def resolve_version(catalog: Catalog, request: str, arch: str) -> str:
    """Resolve ``--k8s`` to an exact patch version.

    Args:
        catalog: the merged catalog.
        request: ``1.30`` (newest known patch), ``1.30.4`` (exact), optionally with a ``v``.
        arch: the target arch.
    Returns:
        e.g. ``"1.30.12"``.
    Raises:
        CatalogError: malformed or unknown version; the message lists what is supported.
    """
    v = request.strip().removeprefix("v")
    supported = supported_summary(catalog)
    m_minor, m_patch = MINOR_RE.match(v), PATCH_RE.match(v)
    if not (m_minor or m_patch):
        raise CatalogError(
            f"malformed Kubernetes version {request!r}: use MAJOR.MINOR or MAJOR.MINOR.PATCH; "
            f"supported: {supported}"
        )
    minor = v if m_minor else v.rsplit(".", 1)[0]
    if minor not in catalog.data.get("kubernetes", {}):
        raise CatalogError(f"Kubernetes {minor} is not in the catalog; supported: {supported}")
    patches = catalog.patches(minor, arch)
    if m_minor:
        if not patches:
            raise CatalogError(
                f"no Kubernetes {minor} patch is pinned for {arch}; supported: {supported}"
            )
        return patches[-1]
    if v not in patches:
        raise CatalogError(
            f"Kubernetes {v} is not pinned for {arch} (known {minor} patches: "
            f"{', '.join(patches) or 'none'}); add its checksums with --catalog FILE"
        )
    return v


def _sha(catalog: Catalog, name: str, version: str, arch: str) -> str:
    value = catalog.data.get("checksums", {}).get(name, {}).get(version, {}).get(arch)
    if not value:
        raise CatalogError(
            f"no SHA-256 for {name} {version} ({arch}) in the catalog; add it with --catalog FILE"
        )
    return value


def _pinned(catalog: Catalog, name: str, version: str | None, arch: str) -> bool:
    """True when the minor names a ``version`` of the optional artifact ``name`` and the catalog
    holds its SHA-256 for ``arch``."""
    return bool(version and catalog.data.get("checksums", {}).get(name, {}).get(version, {})
                .get(arch))


def _artifact(catalog: Catalog, name: str, version: str, arch: str) -> Artifact:
    spec = ARTIFACT_SPECS[name]
    return Artifact(
        name=name,
        version=version,
        arch=arch,
        source="release",
        url=spec.url.format(version=version, arch=arch),
        sha256=_sha(catalog, name, version, arch),
        kind=spec.kind,
        install=spec.install,
    )


def _runtime(catalog: Catalog, name: str, entry: dict, arch: str) -> Artifact:
    source = entry.get("source", "release")
    if source == "os-package":
        package = entry.get("package") or name
        # the installed dpkg version is recorded in the image manifest at build time
        return Artifact(
            name,
            "os-package",
            arch,
            "os-package",
            None,
            None,
            "os-package",
            ARTIFACT_SPECS[name].install,
            package,
        )
    if "version" not in entry:
        raise CatalogError(f"catalog: {name} with source: release needs a version")
    return _artifact(catalog, name, entry["version"], arch)


def resolve(
    catalog: Catalog, request: str, arch: str = "amd64", os_name: str = "debian-12",
    addons: Iterable[str] | None = None,
) -> Release:
    """Resolve a version request to a pinned ``Release``.

    Args:
        catalog: merged catalog.
        request: ``--k8s`` value (``1.30`` or ``1.30.4``).
        arch: ``amd64`` or ``arm64``.
        os_name: image OS (a key of ``OSES``).
        addons: the add-ons to bake (``bake ami --addons``); ``None``: every add-on the catalog
            pins for the minor (``kubernetes.<minor>.addons``), ``()``: none.
    Returns:
        the ``Release`` with every artifact's URL and SHA-256, the image set and the add-ons.
    Raises:
        CatalogError: unknown arch, OS, version or add-on, or a missing checksum.
    """
    if arch not in ARCHES:
        raise CatalogError(f"unknown arch {arch!r}; supported: {', '.join(ARCHES)}")
    if os_name not in OSES:
        raise CatalogError(f"unknown OS {os_name!r}; supported: {', '.join(OSES)}")
    version = resolve_version(catalog, request, arch)
    minor = version.rsplit(".", 1)[0]
    entry = catalog.data["kubernetes"][minor]
    for key in ("crictl", "cni-plugins", "etcd", "containerd", "runc", "images"):
        if key not in entry:
            raise CatalogError(f"catalog entry for Kubernetes {minor} lacks {key!r}")
    artifacts = (
        _artifact(catalog, "kubeadm", version, arch),
        _artifact(catalog, "kubelet", version, arch),
        _artifact(catalog, "kubectl", version, arch),
        _artifact(catalog, "crictl", entry["crictl"], arch),
        _runtime(catalog, "containerd", entry["containerd"], arch),
        _runtime(catalog, "runc", entry["runc"], arch),
        _artifact(catalog, "cni-plugins", entry["cni-plugins"], arch),
        _artifact(catalog, "etcd", entry["etcd"], arch),
        *(_artifact(catalog, name, entry[name], arch) for name in OPTIONAL_ARTIFACTS
          if _pinned(catalog, name, entry.get(name), arch)),
    )
    tags = dict(entry["images"])
    tags.update(entry.get("image_overrides", {}).get(version, {}))
    archives = catalog.data.get("image_archives", {}).get(arch, {})
    digests = catalog.data.get("image_digests", {})
    images = []
    for name, tag in [
        *((n, "v" + version) for n in CONTROL_PLANE_IMAGES),
        ("etcd", tags["etcd"]),
        ("coredns", tags["coredns"]),
        ("pause", tags["pause"]),
    ]:
        repo = f"{REGISTRY}/coredns/coredns" if name == "coredns" else f"{REGISTRY}/{name}"
        ref = f"{repo}:{tag}"
        images.append(
            ContainerImage(
                name,
                ref,
                tag,
                IMAGE_ARCHIVE_PATH.format(arch=arch, name=name, tag=tag),
                archives.get(ref),
                digests.get(ref),
            )
        )
    pinned = dict(entry.get("addons", {}))
    if addons is not None:
        chosen = list(dict.fromkeys(addons))
        unknown = [a for a in chosen if a not in pinned]
        if unknown:
            raise CatalogError(
                f"--addons: {', '.join(unknown)} is not an add-on the catalog pins for Kubernetes "
                f"{minor}; choose from {', '.join(sorted(pinned)) or 'none'} (or all)")
        pinned = {a: pinned[a] for a in chosen}
    images += _addon_images(catalog, minor, pinned, arch)
    releases = catalog.data.get("addon_releases", {})
    addon_files = tuple(
        AddonFile(addon, name, f["url"], f["sha256"])
        for addon, v in sorted(pinned.items())
        for name, f in releases.get(addon, {}).get(v, {}).get("files", {}).items())
    staged = catalog.data.get("os_packages", {}).get(os_name, {}).get(arch, {})
    os_packages = tuple(
        OsPackage(
            filename.split("_", 1)[0],
            filename,
            sha,
            OS_PACKAGE_PATH.format(os=os_name, arch=arch, filename=filename),
        )
        for filename, sha in sorted(staged.items())
    )
    return Release(
        version, minor, arch, os_name, artifacts, tuple(images), catalog.sources, os_packages,
        tuple(sorted(pinned.items())), addon_files,
    )


def _addon_images(catalog: Catalog, minor: str, addons: dict[str, str],
                  arch: str) -> list[ContainerImage]:
    """The images of the add-ons baked with ``minor`` (``kubernetes.<minor>.addons``: name ->
    version), from ``addon_releases.<name>.<version>.images``, in add-on then image order.

    Raises:
        CatalogError: an add-on version the catalog has no release entry for.
    """
    archives = catalog.data.get("image_archives", {}).get(arch, {})
    digests = catalog.data.get("image_digests", {})
    out = []
    for addon, version in sorted(addons.items()):
        release = catalog.data.get("addon_releases", {}).get(addon, {}).get(version)
        if release is None:
            raise CatalogError(f"catalog: Kubernetes {minor} bakes {addon} {version}, but "
                               f"addon_releases.{addon} has no {version!r} entry (add its images "
                               "in a catalog overlay)")
        for name, ref in release["images"].items():
            tag = ref.rsplit(":", 1)[1]
            out.append(ContainerImage(name, ref, tag,
                                      IMAGE_ARCHIVE_PATH.format(arch=arch, name=name, tag=tag),
                                      archives.get(ref), digests.get(ref), group=addon))
    return out


def list_releases(catalog: Catalog, arches: Iterable[str] = ARCHES) -> list[dict[str, Any]]:
    """Rows for ``bake catalog list``: one per minor.

    Returns:
        ``[{"minor", "latest", "patches": [...], "arches": [...], "oses": [...], "crictl",
        "containerd", "runc", "cni_plugins", "images": {...}, "addons": {name: version}}]``,
        oldest minor first (``addons``: what ``bake ami`` bakes by default). Every
        minor bakes on every OS of ``OSES`` (the components are one set).
    """
    rows = []
    for minor in catalog.minors():
        entry = catalog.data["kubernetes"][minor]
        arch_list = [a for a in arches if catalog.patches(minor, a)]
        patches = catalog.patches(minor)
        if not patches:
            continue
        rt = {k: entry.get(k, {}) for k in ("containerd", "runc")}
        rows.append(
            {
                "minor": minor,
                "latest": patches[-1],
                "patches": patches,
                "arches": arch_list,
                "oses": list(OSES),
                "crictl": entry.get("crictl"),
                "containerd": rt["containerd"].get("version") or rt["containerd"].get("source"),
                "runc": rt["runc"].get("version") or rt["runc"].get("source"),
                "cni_plugins": entry.get("cni-plugins"),
                "etcd": entry.get("etcd"),
                "images": dict(entry.get("images", {})),
                "addons": dict(sorted(entry.get("addons", {}).items())),
            }
        )
    return rows
