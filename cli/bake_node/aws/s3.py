"""The S3 calls of the agent (etcd snapshots). Every function takes the boto3 client first.

Objects are written with SSE-KMS under the cluster key (S3 API reference, PutObject
``ServerSideEncryption=aws:kms`` and ``SSEKMSKeyId``); reads are decrypted by S3 itself, which
needs ``kms:Decrypt`` on that key through S3.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bake_node.aws import call


def put_file(client: Any, bucket: str, key: str, path: Path, kms_key_id: str,
             metadata: dict[str, str]) -> None:
    """Upload ``path`` (bytes, read whole: snapshots of a kubeadm cluster are tens of MiB) to
    ``s3://bucket/key`` with SSE-KMS under ``kms_key_id`` and user ``metadata`` (ASCII values,
    2 KB in all: S3's user-defined metadata limit)."""
    with open(path, "rb") as body:
        call(
            "s3:PutObject",
            client.put_object,
            Bucket=bucket,
            Key=key,
            Body=body,
            ServerSideEncryption="aws:kms",
            SSEKMSKeyId=kms_key_id,
            Metadata=metadata,
        )


def list_objects(client: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    """Every object under ``prefix``: ListObjectsV2 pages, each ``{Key, Size, LastModified}``."""
    token: dict[str, str] = {}
    while True:
        page = call("s3:ListBucket", client.list_objects_v2, Bucket=bucket, Prefix=prefix,
                    **token)
        yield from page.get("Contents", [])
        if not page.get("IsTruncated"):
            return
        token = {"ContinuationToken": page["NextContinuationToken"]}


def head(client: Any, bucket: str, key: str) -> dict[str, str] | None:
    """The user metadata of ``s3://bucket/key``, or None when there is no such object."""
    from bake_node.aws import AwsCallError

    try:
        out = call("s3:GetObject", client.head_object, Bucket=bucket, Key=key)
    except AwsCallError as exc:
        if exc.code in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return dict(out.get("Metadata", {}))


def download(client: Any, bucket: str, key: str, path: Path) -> dict[str, str]:
    """Write ``s3://bucket/key`` to ``path``; returns its user metadata."""
    out = call("s3:GetObject", client.get_object, Bucket=bucket, Key=key)
    with open(path, "wb") as f:
        for chunk in out["Body"].iter_chunks(1 << 20):
            f.write(chunk)
    return dict(out.get("Metadata", {}))


def delete(client: Any, bucket: str, keys: list[str]) -> None:
    """Delete ``keys`` (DeleteObjects, 1000 keys per request: the API's limit)."""
    for i in range(0, len(keys), 1000):
        batch = [{"Key": k} for k in keys[i:i + 1000]]
        out = call("s3:DeleteObject", client.delete_objects, Bucket=bucket,
                   Delete={"Objects": batch, "Quiet": True})
        errors = out.get("Errors", [])
        if errors:
            from bake_node.aws import AwsCallError

            first = errors[0]
            raise AwsCallError(f"s3:DeleteObject failed: {first.get('Code')}: "
                               f"{first.get('Key')}: {first.get('Message')}", first.get("Code"))
