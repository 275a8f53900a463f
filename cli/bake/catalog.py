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
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from bake.errors import CatalogError

ARCHES: tuple[str, ...] = ("amd64", "arm64")
OSES: tuple[str, ...] = ("debian-12",)
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
    )
}
# Image archives have no upstream file: they live on the user's mirror under this path, with
# their SHA-256 in a catalog overlay (see README, "Air-gapped mirrors").
IMAGE_ARCHIVE_PATH = "bake-images/{arch}/{name}_{tag}.tar"
# OS packages a build without internet installs (staged by `bake stage --os-packages`): on the
# mirror and in S3 under this path, with their SHA-256 in a catalog overlay (``os_packages``).
OS_PACKAGE_PATH = "os-packages/{os}/{arch}/{filename}"
# What kubeadm's preflight checks need from the OS besides the baked artifacts ("Installing
# kubeadm"; kubeadm preflight: conntrack and iptables in PATH).
OS_PREP_PACKAGES: tuple[str, ...] = ("iptables", "conntrack")


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
    """One container image of the kubeadm image set (a machine image is an AMI or a
    ``bake.builders.local.LocalImage``; this is what runs in containerd).

    Attributes:
        name: short name, e.g. ``kube-apiserver``.
        ref: registry-neutral reference, e.g. ``registry.k8s.io/kube-apiserver:v1.30.12``.
        tag: the tag.
        archive_path: path of its OCI archive on a mirror (``bake-images/<arch>/...tar``).
        archive_sha256: SHA-256 of that archive from a catalog overlay, or ``None``.
        digest: ``sha256:<hex>`` the registry serves for ``ref`` (a manifest list, the same for
            every arch), from the catalog's ``image_digests``; ``None`` when not pinned.
            ``bake stage --images-from`` copies the image by this digest.
    """

    name: str
    ref: str
    tag: str
    archive_path: str
    archive_sha256: str | None
    digest: str | None = None


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
            client tools), in install order.
        images: the kubeadm image set.
        catalog_sources: the catalog files that were merged, shipped one first.
        os_packages: OS package files staged for builds without internet (``os_packages`` of
            an overlay); empty when none were staged.
    """

    kubernetes_version: str
    minor: str
    arch: str
    os: str
    artifacts: tuple[Artifact, ...]
    images: tuple[ContainerImage, ...]
    catalog_sources: tuple[str, ...] = field(default=())
    os_packages: tuple[OsPackage, ...] = field(default=())

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


MIRROR_SCHEMES = ("http", "https", "file")


def parse_mirror(
    value: str, option: str = "--mirror", allow_dir: bool = False, must_exist: bool = True
) -> str:
    """Check a mirror base given by the user and return it without a trailing slash.

    Accepted: ``http://host[:port][/path]``, ``https://...`` and ``file:///abs/path`` (and a
    plain existing directory with ``allow_dir``, which becomes a ``file://`` URL). S3 is not a
    mirror: builds read a staged bucket with ``--artifacts s3://...``.

    Args:
        value: what the user passed.
        option: the option name, for the message.
        allow_dir: accept a local directory (``bake stage``).
        must_exist: a directory must exist (it is read); ``False`` for one bake writes into.

    Returns:
        the normalized base URL.

    Raises:
        CatalogError: another scheme (``ftp://``, ``s3://``), an unparsable URL (``http://[::1``),
            no host, a bad port, or a directory that does not exist.
    """
    raw = value.strip()
    if "://" not in raw:
        if allow_dir:
            path = Path(raw).expanduser()
            if must_exist and not path.is_dir():
                raise CatalogError(
                    f"{option} {value}: no such directory; pass a directory or an "
                    "http(s)://, file:// URL"
                )
            return path.resolve().as_uri()
        raise CatalogError(
            f"{option} {value!r} is not a URL: use http://host[:port]/path, https://... or "
            "file:///abs/path"
        )
    try:
        parts = urlsplit(raw)
        port = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise CatalogError(f"{option} {value!r} is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme == "s3":
        raise CatalogError(
            f"{option} {value!r}: S3 is not a mirror; stage with `bake stage` and build with "
            "--artifacts s3://BUCKET/PREFIX"
        )
    if scheme not in MIRROR_SCHEMES:
        raise CatalogError(
            f"{option} {value!r}: unsupported scheme {parts.scheme!r}; use http, https or file"
        )
    if scheme in ("http", "https") and not parts.hostname:
        raise CatalogError(f"{option} {value!r} has no host: use {scheme}://host[:port]/path")
    if scheme == "file" and (parts.netloc or not parts.path.startswith("/")):
        raise CatalogError(f"{option} {value!r}: a file URL is file:///absolute/path")
    if parts.query or parts.fragment:
        raise CatalogError(f"{option} {value!r}: a mirror base has no ?query or #fragment")
    del port
    return raw.rstrip("/")


# ---------------------------------------------------------------- loading and validation

_CATALOG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "schema": {"const": SCHEMA},
        "kubernetes": {
            "type": "object",
            "propertyNames": {"pattern": MINOR_RE.pattern},
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "crictl": {"type": "string", "pattern": PATCH_RE.pattern},
                    "cni-plugins": {"type": "string", "pattern": PATCH_RE.pattern},
                    "etcd": {"type": "string", "pattern": PATCH_RE.pattern},
                    "containerd": {"$ref": "#/$defs/runtime"},
                    "runc": {"$ref": "#/$defs/runtime"},
                    "images": {"$ref": "#/$defs/tags"},
                    "image_overrides": {
                        "type": "object",
                        "propertyNames": {"pattern": PATCH_RE.pattern},
                        "additionalProperties": {"$ref": "#/$defs/tags"},
                    },
                },
            },
        },
        "checksums": {
            "type": "object",
            "propertyNames": {"enum": sorted(ARTIFACT_SPECS)},
            "additionalProperties": {
                "type": "object",
                "propertyNames": {"pattern": PATCH_RE.pattern},
                "additionalProperties": {
                    "type": "object",
                    "propertyNames": {"enum": list(ARCHES)},
                    "additionalProperties": {"type": "string", "pattern": SHA256_RE.pattern},
                },
            },
        },
        "image_archives": {
            "type": "object",
            "propertyNames": {"enum": list(ARCHES)},
            "additionalProperties": {
                "type": "object",
                "additionalProperties": {"type": "string", "pattern": SHA256_RE.pattern},
            },
        },
        "os_packages": {
            "type": "object",
            "propertyNames": {"enum": list(OSES)},
            "additionalProperties": {
                "type": "object",
                "propertyNames": {"enum": list(ARCHES)},
                "additionalProperties": {
                    "type": "object",
                    "propertyNames": {"pattern": DEB_FILENAME_RE.pattern},
                    "additionalProperties": {"type": "string", "pattern": SHA256_RE.pattern},
                },
            },
        },
        "image_digests": {
            "type": "object",
            "propertyNames": {"pattern": r"^[a-z0-9.-]+(:[0-9]+)?/[a-z0-9._/-]+:[A-Za-z0-9._-]+$"},
            "additionalProperties": {"type": "string", "pattern": r"^sha256:[0-9a-f]{64}$"},
        },
    },
    "$defs": {
        "runtime": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "source": {"enum": ["release", "os-package"]},
                "version": {"type": "string", "pattern": PATCH_RE.pattern},
                "package": {"type": "string"},
            },
        },
        "tags": {
            "type": "object",
            "additionalProperties": False,
            "properties": {k: {"type": "string"} for k in ("pause", "etcd", "coredns")},
        },
    },
}


def _validate(doc: Any, source: str) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(_CATALOG_SCHEMA)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        message = err.message
        if err.validator == "pattern" and err.schema.get("pattern") == PATCH_RE.pattern:
            # a version key or value: say what is expected instead of the regular expression
            message = f"{err.instance!r} is not a version like 1.30.13 (MAJOR.MINOR.PATCH)"
        raise CatalogError(f"invalid catalog {source}: at {where}: {message}")


def _merge(base: dict, overlay: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read(path: Path | None) -> tuple[dict, str]:
    if path is None:
        text = resources.files("bake.data").joinpath("catalog.yaml").read_text()
        source = "bake/data/catalog.yaml (shipped)"
    else:
        from bake.userfiles import read_text

        text = read_text(path, "catalog overlay", CatalogError)
        source = str(path)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogError(
            f"catalog overlay {source} is not valid YAML: {exc}".splitlines()[0]
        ) from exc
    if not isinstance(doc, dict):
        raise CatalogError(f"catalog {source} must be a mapping with schema: {SCHEMA}")
    return doc, source


def load_catalog(overlays: Sequence[Path] = ()) -> Catalog:
    """Load the shipped catalog and merge the user's overlays over it, validating each.

    Args:
        overlays: paths of ``bake.catalog/v1`` YAML files, applied in order (later wins).
    Returns:
        the merged ``Catalog``.
    Raises:
        CatalogError: unreadable file, bad YAML, or a schema violation (names file and field).
    """
    merged: dict[str, Any] = {}
    sources = []
    for path in [None, *overlays]:
        doc, source = _read(path)
        _validate(doc, source)
        merged = _merge(merged, doc)
        sources.append(source)
    _validate(merged, "(merged)")
    return Catalog(merged, tuple(sources))


# ---------------------------------------------------------------- resolution


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
    catalog: Catalog, request: str, arch: str = "amd64", os_name: str = "debian-12"
) -> Release:
    """Resolve a version request to a pinned ``Release``.

    Args:
        catalog: merged catalog.
        request: ``--k8s`` value (``1.30`` or ``1.30.4``).
        arch: ``amd64`` or ``arm64``.
        os_name: image OS; only ``debian-12`` today.
    Returns:
        the ``Release`` with every artifact's URL and SHA-256 and the image set.
    Raises:
        CatalogError: unknown arch, OS or version, or a missing checksum.
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
        version, minor, arch, os_name, artifacts, tuple(images), catalog.sources, os_packages
    )


def list_releases(catalog: Catalog, arches: Iterable[str] = ARCHES) -> list[dict[str, Any]]:
    """Rows for ``bake catalog list``: one per minor.

    Returns:
        ``[{"minor", "latest", "patches": [...], "arches": [...], "crictl", "containerd",
        "runc", "cni_plugins", "images": {...}}]``, oldest minor first.
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
                "crictl": entry.get("crictl"),
                "containerd": rt["containerd"].get("version") or rt["containerd"].get("source"),
                "runc": rt["runc"].get("version") or rt["runc"].get("source"),
                "cni_plugins": entry.get("cni-plugins"),
                "etcd": entry.get("etcd"),
                "images": dict(entry.get("images", {})),
            }
        )
    return rows
