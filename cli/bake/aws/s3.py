"""Thin S3 wrapper for staging artifacts: parse ``s3://`` URLs, upload verified files, list.

Every call goes through ``bake.aws.errors.call`` with its IAM action (``s3:PutObject``, ...).
Objects are written with server-side encryption ``aws:kms`` (S3 API reference, PutObject
``ServerSideEncryption``) and carry their SHA-256 as user metadata ``sha256`` (stored as the
header ``x-amz-meta-sha256``), which lets a re-run skip objects already staged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bake.aws.errors import call, error_code
from bake.errors import AwsError, UsageError


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix/`` -> ``("bucket", "some/prefix")``.

    Raises:
        UsageError: not an ``s3://bucket[/prefix]`` URL.
    """
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise UsageError(f"{url!r} is not an S3 URL: use s3://bucket/prefix")
    return parts.netloc, parts.path.strip("/")


def join_key(prefix: str, *parts: str) -> str:
    """Join an S3 key prefix and path parts with single ``/`` (no leading ``/``)."""
    return "/".join(p.strip("/") for p in (prefix, *parts) if p and p.strip("/"))


def object_sha256(client: Any, bucket: str, key: str) -> str | None:
    """The ``sha256`` metadata of an object (``s3:GetObject`` via HeadObject), or ``None`` if
    the object does not exist or has none."""
    try:
        head = call("s3:GetObject", client.head_object, Bucket=bucket, Key=key)
    except AwsError as exc:
        if error_code(exc) in {"404", "NoSuchKey", "NotFound"}:
            return None
        raise
    return (head.get("Metadata") or {}).get("sha256")


def put_file(
    client: Any, bucket: str, key: str, path: Path, sha256: str, kms_key_id: str | None = None
) -> None:
    """Upload ``path`` to ``s3://bucket/key`` KMS-encrypted with its SHA-256 as metadata.

    Args:
        sha256: lowercase hex digest of the file, already verified by the caller.
        kms_key_id: KMS key id/ARN/alias, or ``None`` for the bucket's ``aws/s3`` key.
    """
    extra: dict[str, Any] = {"ServerSideEncryption": "aws:kms"}
    if kms_key_id:
        extra["SSEKMSKeyId"] = kms_key_id
    with open(path, "rb") as body:
        call(
            "s3:PutObject",
            client.put_object,
            Bucket=bucket,
            Key=key,
            Body=body,
            Metadata={"sha256": sha256},
            **extra,
        )


def delete_object(client: Any, bucket: str, key: str) -> None:
    """``s3:DeleteObject``."""
    call("s3:DeleteObject", client.delete_object, Bucket=bucket, Key=key)


def list_keys(client: Any, bucket: str, prefix: str) -> list[str]:
    """Every key under ``prefix`` (``s3:ListBucket``, paginated), sorted."""
    keys: list[str] = []
    token = None
    while True:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        if token:
            kwargs["ContinuationToken"] = token
        page = call("s3:ListBucket", client.list_objects_v2, **kwargs)
        keys.extend(o["Key"] for o in page.get("Contents", []))
        token = page.get("NextContinuationToken")
        if not token:
            return sorted(keys)
