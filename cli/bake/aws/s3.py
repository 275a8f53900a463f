"""Thin S3 wrapper for staging artifacts: parse ``s3://`` URLs, upload verified files, list.

Every call goes through ``bake.aws.errors.call`` with its IAM action (``s3:PutObject``, ...).
Objects are written with server-side encryption ``aws:kms`` (S3 API reference, PutObject
``ServerSideEncryption``) and carry their SHA-256 as user metadata ``sha256`` (stored as the
header ``x-amz-meta-sha256``), which lets a re-run skip objects already staged.
"""

from __future__ import annotations

import re
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


# s3://<bucket>[/<prefix>]: bucket naming rules (Amazon S3 user guide, "Bucket naming rules"),
# prefix limited to characters that paste into shell and YAML unquoted
_PREFIX_URL = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9._~+=@/-]*)?$")


def check_prefix_url(url: str, option: str = "--artifacts") -> str:
    """Check an ``s3://bucket[/prefix]`` a build fetches from (S3 bucket naming rules: 3-63
    lowercase letters, digits, ``.`` and ``-``; S3 user guide, "Bucket naming rules").

    Args:
        url: e.g. ``s3://my-bucket/bake/``.
        option: the option it came from, for the message.

    Returns:
        ``url`` without a trailing ``/``.

    Raises:
        UsageError: one line naming ``option`` and the expected form.
    """
    uri = url.rstrip("/")
    if not _PREFIX_URL.match(uri):
        raise UsageError(
            f"{option} {url!r} must look like s3://bucket/prefix (lowercase bucket "
            "name; letters, digits and ._~+=@/- in the prefix)"
        )
    return uri


def join_key(prefix: str, *parts: str) -> str:
    """Join an S3 key prefix and path parts with single ``/`` (no leading ``/``)."""
    return "/".join(p.strip("/") for p in (prefix, *parts) if p and p.strip("/"))


def object_sha256(client: Any, bucket: str, key: str) -> str | None:
    """The ``sha256`` metadata of an object (``s3:GetObject`` via HeadObject), or ``None`` if
    the object does not exist or has none."""
    return (object_metadata(client, bucket, key) or {}).get("sha256")


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


def download(
    client: Any, bucket: str, key: str, dest: Path, expected_owner: str | None = None
) -> str:
    """Stream ``s3://bucket/key`` to ``dest`` (``s3:GetObject``), via ``.<name>.part`` renamed
    into place only when complete.

    Args:
        dest: the file to write; its folder must exist.
        expected_owner: account id the bucket must belong to (``ExpectedBucketOwner``).

    Returns:
        the SHA-256 hex of the bytes written (the caller compares it with the catalog's).

    Raises:
        AwsError: the call failed or the stream broke off (``code`` is the AWS error code,
            e.g. ``NoSuchKey``); no partial file is left.
        OSError: ``dest`` cannot be written.
    """
    from botocore import exceptions as bce

    from bake.fetch import write_verified

    extra = {"ExpectedBucketOwner": expected_owner} if expected_owner else {}
    body = call("s3:GetObject", client.get_object, Bucket=bucket, Key=key, **extra)["Body"]
    try:
        return write_verified(iter(lambda: body.read(1024 * 1024), b""), dest)
    except (bce.BotoCoreError, ConnectionError) as exc:
        raise AwsError(f"s3:GetObject: s3://{bucket}/{key} broke off: {exc}") from exc


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


def list_objects(client: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    """Every object under ``prefix`` as ListObjectsV2 returns it (``Key``, ``Size`` in bytes,
    ``LastModified``), paginated (``s3:ListBucket``)."""
    objects: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    while True:
        page = call("s3:ListBucket", client.list_objects_v2, **kwargs)
        objects.extend(page.get("Contents", []))
        if not page.get("NextContinuationToken"):
            return objects
        kwargs["ContinuationToken"] = page["NextContinuationToken"]


def object_metadata(client: Any, bucket: str, key: str) -> dict[str, str] | None:
    """The user metadata of an object (``s3:GetObject`` via HeadObject), or ``None`` when the
    object does not exist."""
    try:
        head = call("s3:GetObject", client.head_object, Bucket=bucket, Key=key)
    except AwsError as exc:
        if error_code(exc) in {"404", "NoSuchKey", "NotFound"}:
            return None
        raise
    return dict(head.get("Metadata") or {})
