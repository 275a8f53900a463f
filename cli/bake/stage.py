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
import tempfile
import urllib.error
import urllib.request
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
    """

    k8s: str
    arches: tuple[str, ...]
    mirror: str
    bucket: str
    catalogs: tuple[Path, ...] = ()
    images: bool = True
    kms_key_id: str | None = None
    dry_run: bool = False


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
    from bake.catalog import parse_mirror

    return parse_mirror(mirror, "--mirror", allow_dir=True)


def mirror_relative_path(url: str) -> str:
    """``https://dl.k8s.io/release/...`` -> ``dl.k8s.io/release/...`` (the mirror layout)."""
    parts = urlsplit(url)
    return f"{parts.netloc}{parts.path}"


def fetch_verified(url: str, sha256: str, dest: Path) -> None:
    """Download ``url`` to ``dest`` and check its SHA-256.

    Raises:
        ArtifactError: unreachable, or the digest differs (the file is removed).
    """
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        raise ArtifactError(f"cannot fetch {url}: {reason}; check --mirror") from exc
    if digest.hexdigest() != sha256:
        dest.unlink(missing_ok=True)
        raise ArtifactError(
            f"SHA-256 mismatch for {url}: got {digest.hexdigest()}, catalog pins {sha256}; "
            "the mirror holds a different file (nothing was uploaded)"
        )


def plan(release, base: str, prefix: str, images: bool) -> list[tuple[str, str, str]]:
    """``(url, sha256, key)`` of every file to stage for one release.

    Raises:
        CatalogError: an image archive has no SHA-256 in the catalog (with ``images``).
    """
    from bake.aws.s3 import join_key

    items = []
    for artifact in release.artifacts:
        if artifact.source != "release":
            continue
        rel = mirror_relative_path(artifact.url)
        items.append((f"{base}/{rel}", artifact.sha256, join_key(prefix, rel)))
    if images:
        for image in release.images:
            if not image.archive_sha256:
                raise CatalogError(
                    f"no SHA-256 for the image archive of {image.ref} ({release.arch}): add it "
                    "under image_archives in a catalog overlay (--catalog), or pass --no-images"
                )
            items.append(
                (
                    f"{base}/{image.archive_path}",
                    image.archive_sha256,
                    join_key(prefix, image.archive_path),
                )
            )
    return items


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
        items.extend(plan(resolve(catalog, options.k8s, arch), base, prefix, options.images))
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


def s3_source(artifacts_s3: str, upstream_url: str) -> str:
    """Where a staged artifact lives: ``s3://bucket/prefix/<upstream host>/<upstream path>``.

    For the renderer: with ``--artifacts s3://bucket/prefix`` a component fetches
    ``s3_source(artifacts_s3, artifact.url)`` with AWSTOE ``S3Download`` (which has no checksum
    input, so a following step must check the catalog's SHA-256).
    """
    return f"{artifacts_s3.rstrip('/')}/{mirror_relative_path(upstream_url)}"


def s3_image_source(artifacts_s3: str, image) -> str:
    """Where a staged image archive lives: ``s3://bucket/prefix/bake-images/<arch>/<name>_<tag>.tar``."""
    return f"{artifacts_s3.rstrip('/')}/{image.archive_path}"
