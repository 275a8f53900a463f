"""``bake stage``: copy a release's artifacts from a mirror into S3, for builds without internet.

The S3 layout is the mirror layout (``<prefix>/<upstream host>/<upstream path>`` for binaries
and tarballs, ``<prefix>/bake-images/<arch>/<name>_<tag>.tar`` for image archives), so the
components can fetch from ``s3://bucket/prefix`` exactly as from a mirror URL. Every file is
downloaded to a temporary directory and checked against the catalog's SHA-256 *before* anything
is uploaded: a mismatch uploads nothing. Objects already staged with the same SHA-256 (object
metadata ``sha256``) are skipped. OS-package artifacts come from the OS archive and are not
staged.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bake.errors import ArtifactError, CatalogError

Progress = Callable[[str], None]
_CHUNK = 1024 * 1024  # bytes per read


@dataclass(frozen=True)
class StageOptions:
    """What ``bake stage`` was asked to do.

    Attributes:
        k8s: ``1.30`` or ``1.30.4``.
        arches: architectures to stage, e.g. ``("amd64",)``.
        mirror: mirror base: a local directory or an ``http(s)://`` / ``file://`` URL.
        bucket: ``s3://bucket/prefix`` to stage into.
        catalogs: catalog overlays.
        images: also stage the image archives (their SHA-256 must be in a catalog overlay).
        kms_key_id: KMS key for the objects, or ``None`` for the ``aws/s3`` key.
        dry_run: verify the files, list what would be uploaded, upload nothing.
        addons: the add-ons whose images are staged (``--addons``, as ``bake ami``'s): ``None``
            every one the catalog pins for the minor.
    """

    k8s: str
    arches: tuple[str, ...]
    mirror: str
    bucket: str
    catalogs: tuple[Path, ...] = ()
    images: bool = True
    kms_key_id: str | None = None
    dry_run: bool = False
    addons: tuple[str, ...] | None = None


@dataclass(frozen=True)
class StagedObject:
    """One staged file: its S3 ``key``, ``sha256``, source ``url`` and whether it was
    ``uploaded`` (``False``: already there, or dry run)."""

    key: str
    sha256: str
    url: str
    uploaded: bool


def mirror_base(mirror: str) -> str:
    """A mirror given as a directory becomes a ``file://`` URL; URLs are checked and kept
    (``bake.catalog.parse_mirror``).

    Raises:
        CatalogError: a directory that does not exist, or a URL bake cannot fetch from.
    """
    from urllib.request import url2pathname

    from bake.catalog import parse_mirror

    base = parse_mirror(mirror, "--mirror", allow_dir=True)
    if base.startswith("file://"):
        path = Path(url2pathname(urlsplit(base).path))
        if not path.is_dir():
            raise CatalogError(
                f"--mirror {path}: no such directory; pass a directory or an http(s)://, "
                "file:// URL"
            )
    return base


def fetch_verified(url: str, sha256: str, dest: Path) -> None:
    """Download ``url`` to ``dest`` and check its SHA-256 (``bake.fetch.fetch_verified``).

    Raises:
        ArtifactError: unreachable, or the digest differs (nothing is left at ``dest``).
    """
    from bake.fetch import DigestMismatch, FetchFailed
    from bake.fetch import fetch_verified as fetch

    try:
        fetch(url, dest, sha256)
    except FetchFailed as exc:
        raise ArtifactError(f"cannot fetch {url}: {exc.reason}; check --mirror") from exc
    except DigestMismatch as exc:
        raise ArtifactError(
            f"SHA-256 mismatch for {url}: got {exc.actual}, catalog pins {exc.expected}; "
            "the mirror holds a different file (nothing was uploaded)"
        ) from exc


def plan(release, base: str, prefix: str, images: bool) -> list[tuple[str, str, str]]:
    """``(url, sha256, key)`` of every file to stage for one release, from its download plan
    (``bake.plan``): artifacts, OS packages, then image archives.

    Raises:
        CatalogError: an image archive has no SHA-256 in the catalog (with ``images``).
    """
    from bake.plan import download_plan

    files = download_plan(release)
    if images and files.images_without_sha256:
        raise CatalogError(
            f"no SHA-256 for the image archive of {files.images_without_sha256[0]} "
            f"({release.arch}): add it under image_archives in a catalog overlay (--catalog), "
            "or pass --no-images"
        )
    return [(f.url(base), f.sha256, f.s3_key(prefix)) for f in files.files(images)]


def stage_release(clients, options: StageOptions, progress: Progress) -> list[StagedObject]:
    """Verify every artifact of the release against the catalog, then upload them to S3.

    Args:
        clients: ``bake.aws.session.AwsClients`` (uses ``s3``).
        options: see ``StageOptions``.
        progress: called with one line per file.

    Returns:
        one ``StagedObject`` per file, in catalog order.

    Raises:
        CatalogError: unknown version/arch, or an image archive without SHA-256.
        ArtifactError: a file is unreachable or its SHA-256 differs (nothing uploaded).
        AwsError: an S3 call failed (objects uploaded by this run are listed in the message).
    """
    from bake.aws import s3
    from bake.catalog import load_catalog, resolve
    from bake.errors import AwsError

    bucket, prefix = s3.parse_s3_url(options.bucket)
    base = mirror_base(options.mirror)
    catalog = load_catalog(options.catalogs)
    items: list[tuple[str, str, str]] = []
    for arch in options.arches:
        release = resolve(catalog, options.k8s, arch, addons=options.addons)
        items.extend(plan(release, base, prefix, options.images))
    client = clients.client("s3")
    staged: list[StagedObject] = []
    with tempfile.TemporaryDirectory(prefix="bake-stage-") as tmp:
        todo = []
        for n, (url, sha, key) in enumerate(items):
            if s3.object_sha256(client, bucket, key) == sha:
                staged.append(StagedObject(key, sha, url, False))
                progress(f"already staged s3://{bucket}/{key}")
                continue
            path = Path(tmp) / f"{n:03d}"
            fetch_verified(url, sha, path)
            progress(f"verified {url}")
            todo.append((url, sha, key, path))
        uploaded: list[str] = []
        for url, sha, key, path in todo:
            if options.dry_run:
                staged.append(StagedObject(key, sha, url, False))
                progress(f"would upload s3://{bucket}/{key}")
                continue
            try:
                s3.put_file(client, bucket, key, path, sha, options.kms_key_id)
            except AwsError as exc:
                done = f" (uploaded before the failure: {', '.join(uploaded)})" if uploaded else ""
                raise AwsError(f"{exc.format_message()}{done}") from exc
            uploaded.append(key)
            staged.append(StagedObject(key, sha, url, True))
            progress(f"uploaded s3://{bucket}/{key}")
    order = {key: i for i, (_, _, key) in enumerate(items)}
    return sorted(staged, key=lambda o: order[o.key])


@dataclass(frozen=True)
class ImagesFromRegistry:
    """What ``bake stage --images-from`` was asked to do.

    Attributes:
        k8s: ``1.30`` or ``1.30.4``.
        arches: one archive per image and arch.
        registry: ``--images-from`` value (``host[:port][/path]`` or ``http://host:port``).
        out_dir: the mirror directory the archives are written into (mirror layout:
            ``<out_dir>/bake-images/<arch>/<name>_<tag>.tar``).
        overlay: the catalog overlay written with the archives' SHA-256 (``image_archives``).
        catalogs: catalog overlays (``image_digests`` pins for images the shipped catalog
            lacks).
        authfile: skopeo ``--authfile`` for a registry that needs credentials.
        resolve_digests: for images the catalog does not pin, take the digest the registry
            serves for the tag now (trust on first use) and record it in the overlay.
        addons: the add-ons whose images are copied (``--addons``): ``None`` every one the
            catalog pins for the minor.
    """

    k8s: str
    arches: tuple[str, ...]
    registry: str
    out_dir: Path
    overlay: Path
    catalogs: tuple[Path, ...] = ()
    authfile: Path | None = None
    resolve_digests: bool = False
    addons: tuple[str, ...] | None = None


OVERLAY_HEADER = """\
# bake catalog overlay written by `bake stage --images-from {registry}` ({when}).
# SHA-256 of the OCI image archives copied by digest (each digest pinned in the catalog's
# image_digests) into {out_dir}/bake-images/. Pass it to bake ami with --catalog.
"""


def images_from_registry(options: ImagesFromRegistry, progress: Progress) -> dict:
    """Copy every image of the release, by its pinned digest, into OCI archives on the mirror,
    and write the overlay that pins the archives' SHA-256.

    Everything is checked before the first copy: the release resolves, every image has a digest,
    skopeo is installed, and the output directory and overlay are writable. Archives land in a
    staging directory and are moved into the mirror only when every copy succeeded.

    Returns:
        the overlay document (``{"schema", "image_archives": {arch: {ref: sha256}}}``).

    Raises:
        CatalogError: unknown version/arch, or an image without a pinned digest (names it and
            how to add one).
        UsageError: a malformed registry, or an unwritable output directory or overlay.
        EnvironmentProblem: skopeo missing.
        ArtifactError: a copy failed or a digest did not match (nothing moved into the mirror,
            no overlay written).
    """
    import datetime as dt
    import shutil
    from dataclasses import replace

    import yaml

    from bake.catalog import load_catalog, resolve
    from bake.registry import copy_image, parse_registry, resolve_digest, skopeo
    from bake.userfiles import prepare_dir, write_file

    registry = parse_registry(options.registry, options.authfile)
    catalog = load_catalog(options.catalogs)
    releases = [resolve(catalog, options.k8s, arch, addons=options.addons)
                for arch in options.arches]
    unpinned = sorted({i.ref for r in releases for i in r.images if not i.digest})
    resolved: dict[str, str] = {}
    if unpinned and options.resolve_digests:
        skopeo()
        for ref in unpinned:
            resolved[ref] = resolve_digest(registry, ref)
            progress(f"pinned {ref} to {resolved[ref]} (the registry's digest now, recorded)")
        releases = [
            replace(r, images=tuple(
                replace(i, digest=i.digest or resolved[i.ref]) for i in r.images
            ))
            for r in releases
        ]
        unpinned = []
    if unpinned:
        raise CatalogError(
            f"no pinned digest for {', '.join(unpinned[:3])}"
            f"{f' and {len(unpinned) - 3} more' if len(unpinned) > 3 else ''}: add "
            "image_digests {\"<ref>\": \"sha256:<manifest list digest>\"} with --catalog FILE "
            "(bake copies images by digest only), or pass --resolve-digests to pin what the "
            "registry serves now"
        )
    skopeo()
    out_dir = prepare_dir(Path(options.out_dir), "--mirror")
    prepare_dir(Path(options.overlay).parent, "--overlay-out")
    archives: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix=".bake-images-", dir=out_dir) as tmp:
        staged = []
        for release in releases:
            for image in release.images:
                dest = Path(tmp) / image.archive_path
                progress(f"copying {image.ref} ({release.arch}) by digest {image.digest[:19]}...")
                sha = copy_image(registry, image.ref, image.digest, release.arch, dest)
                archives.setdefault(release.arch, {})[image.ref] = sha
                staged.append((dest, out_dir / image.archive_path))
                progress(f"  {image.archive_path} sha256 {sha[:12]}")
        for src, final in staged:
            final.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(src), str(final))
    doc: dict = {"schema": "bake.catalog/v1", "image_archives": archives}
    if resolved:
        doc["image_digests"] = resolved
    header = OVERLAY_HEADER.format(
        registry=options.registry,
        when=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        out_dir=out_dir,
    )
    write_file(Path(options.overlay), header + yaml.safe_dump(doc, sort_keys=True), "--overlay-out")
    return doc


@dataclass(frozen=True)
class OsPackagesOptions:
    """What ``bake stage --os-packages`` was asked to do.

    Attributes:
        arch: the architecture (this host's: ``apt-get download`` fetches the host's arch).
        out_dir: the mirror directory (``<out_dir>/os-packages/<os>/<arch>/*.deb``).
        overlay: the catalog overlay written with the files' SHA-256 (``os_packages``).
        os_name: the image OS (``debian-12``); the host must run it (its apt sources are used).
        packages: what the image needs from the OS (empty: every package the OS data file
            names, ``bake.oses.OsInfo.packages``).
    """

    arch: str
    out_dir: Path
    overlay: Path
    os_name: str = "debian-12"
    packages: tuple[str, ...] = ()


def _host_os() -> str:
    """``<ID>-<VERSION_ID>`` from /etc/os-release (os-release(5)), e.g. ``debian-12``."""
    fields = {}
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            key, _, value = line.partition("=")
            fields[key] = value.strip().strip('"')
    except OSError:
        return "unknown"
    return f"{fields.get('ID', 'unknown')}-{fields.get('VERSION_ID', '')}"


def dependency_closure(packages: tuple[str, ...]) -> list[str]:
    """The packages and everything they depend on, recursively (``apt-cache depends --recurse``
    without recommends, suggests, conflicts, breaks, replaces, enhances), real packages only.

    Raises:
        EnvironmentProblem: apt-cache is missing or knows no such package (run apt-get update).
    """
    import shutil
    import subprocess

    from bake.errors import EnvironmentProblem

    if shutil.which("apt-cache") is None:
        raise EnvironmentProblem("staging OS packages needs apt (a Debian host)")
    argv = ["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
            "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", *packages]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EnvironmentProblem(f"apt-cache depends {' '.join(packages)} failed: {last} "
                                 "(run apt-get update)")
    names = {ln.strip() for ln in proc.stdout.splitlines() if ln and not ln[0].isspace()}
    return sorted(n for n in names if not n.startswith("<"))


def download_os_packages(options: OsPackagesOptions, progress: Progress) -> dict:
    """Fetch the .debs a build without internet installs, with the host's own apt (which checks
    them against its signed indexes), into the mirror, and write the overlay pinning their
    SHA-256.

    The host must run the image's OS and architecture (apt-get download fetches for the host).
    The whole dependency closure is staged; at build time ``bake-os-prep`` installs only the
    packages the parent image lacks.

    Returns:
        the overlay document (``{"schema", "os_packages": {os: {arch: {file: sha256}}}}``).

    Raises:
        EnvironmentProblem: another OS or arch than the host's, or apt failed.
        UsageError: the mirror or overlay path cannot be written.
    """
    import shutil
    import subprocess

    import yaml

    from bake.catalog import OS_PACKAGE_PATH
    from bake.errors import EnvironmentProblem
    from bake.userfiles import prepare_dir, write_file

    host = _host_os()
    if host != options.os_name:
        raise EnvironmentProblem(
            f"staging {options.os_name} packages needs a {options.os_name} host (this one is "
            f"{host}): its apt sources and keys are what fetch and check them"
        )
    machine = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True)
    if machine.stdout.strip() != options.arch:
        raise EnvironmentProblem(
            f"staging {options.arch} packages needs an {options.arch} host (this one is "
            f"{machine.stdout.strip() or 'unknown'})"
        )
    from bake.oses import load_os

    info = load_os(options.os_name)
    if info.package_manager.name != "apt":
        raise EnvironmentProblem(f"bake stage --os-packages stages .deb files with apt; "
                                 f"{options.os_name} uses {info.package_manager.name}: put its "
                                 "packages in a repository mirror the build can reach instead")
    closure = dependency_closure(options.packages or info.packages)
    out_dir = prepare_dir(Path(options.out_dir), "--mirror")
    prepare_dir(Path(options.overlay).parent, "--overlay-out")
    files: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix=".bake-debs-", dir=out_dir) as tmp:
        progress(f"apt-get download {' '.join(closure)}")
        proc = subprocess.run(["apt-get", "download", "-q", *closure], cwd=tmp,
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise EnvironmentProblem(f"apt-get download failed: {last}")
        for deb in sorted(Path(tmp).glob("*.deb")):
            # the archive's pool name: apt-get download adds the epoch (1%3a1.4.7-1)
            filename = re.sub(r"_[0-9]+%3a", "_", deb.name)
            files[filename] = hashlib.sha256(deb.read_bytes()).hexdigest()
            rel = OS_PACKAGE_PATH.format(os=options.os_name, arch=options.arch, filename=filename)
            final = out_dir / rel
            final.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(deb), str(final))
            progress(f"  {rel} sha256 {files[filename][:12]}")
    doc = {"schema": "bake.catalog/v1",
           "os_packages": {options.os_name: {options.arch: files}}}
    header = (
        f"# bake catalog overlay written by `bake stage --os-packages` ({options.os_name}, "
        f"{options.arch}).\n# SHA-256 of the .debs fetched with this host's apt (checked against "
        f"its signed indexes)\n# into {out_dir}/os-packages/. Pass it to bake stage and bake ami "
        "with --catalog.\n"
    )
    write_file(Path(options.overlay), header + yaml.safe_dump(doc, sort_keys=True),
               "--overlay-out")
    return doc
