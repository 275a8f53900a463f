"""The one fetch-and-verify of a file bake downloads: a URL to a path, by SHA-256.

``fetch_verified(url, dest, sha256)`` streams the bytes to ``.<name>.part`` next to ``dest``,
hashing as it goes, and renames the part file into place only when the digest is the pinned
one; on any failure nothing is left at ``dest`` or beside it. ``bake stage`` (before anything is
uploaded) and the local builder's ``WebDownload`` (before anything is installed) both use it and
word the failure for their own users (``FetchFailed``, ``DigestMismatch``).
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import urlsplit

from bake.errors import ArtifactError

#: read size of the stream, bytes
CHUNK_BYTES = 1 << 20


class FetchFailed(ArtifactError):
    """The URL could not be read.

    Attributes:
        url: the URL.
        reason: why, e.g. ``HTTP 404``, ``[Errno 111] Connection refused``.
    """

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot fetch {url}: {reason}")
        self.url = url
        self.reason = reason


class DigestMismatch(ArtifactError):
    """The bytes read are not the pinned ones.

    Attributes:
        url: the URL.
        expected: the pinned SHA-256 (lowercase hex).
        actual: the SHA-256 of what was read.
    """

    def __init__(self, url: str, expected: str, actual: str) -> None:
        super().__init__(f"SHA-256 mismatch for {url}: expected {expected}, got {actual}")
        self.url = url
        self.expected = expected
        self.actual = actual


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
    return str(reason)


def fetch_verified(
    url: str,
    dest: Path,
    sha256: str | None,
    timeout_s: float = 60.0,
    schemes: tuple[str, ...] = ("http", "https", "file"),
) -> str:
    """Download ``url`` to ``dest`` and check its SHA-256 before it is there.

    Args:
        url: what to read (``urllib.request.urlopen``).
        dest: the file to write; its directory is created.
        sha256: the pinned lowercase hex SHA-256, or ``None`` to only compute it.
        timeout_s: socket timeout in seconds.
        schemes: the URL schemes accepted.
    Returns:
        the SHA-256 hex of the bytes now at ``dest``.
    Raises:
        FetchFailed: another scheme, an unreachable URL, an HTTP error, a read or write error.
        DigestMismatch: the bytes are not ``sha256`` (``dest`` is not written).
    """
    if urlsplit(url).scheme not in schemes:
        raise FetchFailed(url, f"only {', '.join(schemes)} URLs are supported")

    def verify(actual: str) -> None:
        if sha256 and actual != sha256.lower():
            raise DigestMismatch(url, sha256.lower(), actual)

    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return write_verified(iter(lambda: response.read(CHUNK_BYTES), b""), dest, verify)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise FetchFailed(url, _reason(exc)) from exc


def write_verified(
    chunks: Iterable[bytes], dest: Path, verify: Callable[[str], None] | None = None
) -> str:
    """Write ``chunks`` to ``.<name>.part`` next to ``dest``, hashing them, and rename the part
    file to ``dest`` only after ``verify(sha256 hex)`` returned; on any exception (from reading
    ``chunks``, writing, or ``verify``) the part file is removed and the exception propagates.

    Used by ``fetch_verified`` and ``bake.aws.s3.download``.

    Returns:
        the SHA-256 hex of the bytes now at ``dest``.
    """
    part = dest.with_name(f".{dest.name}.part")
    digest = hashlib.sha256()
    try:
        with open(part, "wb") as out:
            for chunk in chunks:
                digest.update(chunk)
                out.write(chunk)
        actual = digest.hexdigest()
        if verify is not None:
            verify(actual)
        os.replace(part, dest)
        return actual
    finally:
        part.unlink(missing_ok=True)
