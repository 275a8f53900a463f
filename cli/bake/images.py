"""What was baked: EC2 images joined with their SSM publication and local build output.

``list_images(clients, options)`` reads bake's AMIs from EC2 (tag ``bake:managed=true``, owner
self), the ``.../image_id`` parameters under the SSM prefix with their labelled history, and
for local images ``<data_dir>/images/<build_id>/build.json`` (the local builder's contract),
and returns one ``BakedImage`` per image, newest first. Local builds whose AMI is not in EC2
(the embedded AWS keeps its state only while it runs) are listed too, marked unregistered.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from bake.aws import ec2, ssm


@dataclass(frozen=True)
class ImagesOptions:
    """Options of ``bake images list``.

    Attributes:
        data_dir: bake's data dir (local images live in ``<data_dir>/images/``).
        ssm_prefix: SSM hierarchy root, default ``/bake/k8s``.
        include_local_builds: also list local builds not registered in EC2.
    """

    data_dir: Path
    ssm_prefix: str = ssm.DEFAULT_PREFIX
    include_local_builds: bool = True


@dataclass(frozen=True)
class BakedImage:
    """One baked image.

    Attributes:
        image_id: ``ami-...`` (for an unregistered local build: the id its build.json recorded,
            or ``""``).
        registered: True when EC2 knows the image.
        name: AMI name (``""`` when unregistered).
        kubernetes_version, arch, os, build_id, manifest_sha256: from the ``bake:*`` tags
            (or build.json).
        created: ISO 8601 creation time.
        ssm_parameter: the parameter whose current value is this image, or ``None``.
        ssm_labels: labels of every parameter version that held this image (oldest first).
        ssm_versions: ``"<name>:<version>"`` of every parameter version that held this image.
        local_path: the local image dir, or ``None``.
        rootfs_archive: ``<local_path>/rootfs.tar.zst`` when present, else ``None``.
        disk: ``<local_path>/disk.raw`` when present, else ``None``.
    """

    image_id: str
    registered: bool
    name: str
    kubernetes_version: str
    arch: str
    os: str
    build_id: str
    manifest_sha256: str
    created: str
    ssm_parameter: str | None = None
    ssm_labels: tuple[str, ...] = ()
    ssm_versions: tuple[str, ...] = ()
    local_path: str | None = None
    rootfs_archive: str | None = None
    disk: str | None = None

    def to_json(self) -> dict:
        """JSON-ready dict of every field (tuples as lists)."""
        data = asdict(self)
        data["ssm_labels"] = list(self.ssm_labels)
        data["ssm_versions"] = list(self.ssm_versions)
        return data


def read_local_builds(data_dir: Path) -> dict[str, dict]:
    """Read every finished local build's ``build.json``.

    Args:
        data_dir: bake's data dir.

    Returns:
        build_id -> build.json content plus ``"path"`` (the build dir). Staging dirs
        (``.staging-*``) and unreadable files are skipped.
    """
    builds: dict[str, dict] = {}
    root = Path(data_dir) / "images"
    if not root.is_dir():
        return builds
    for build_json in sorted(root.glob("*/build.json")):
        if build_json.parent.name.startswith("."):
            continue
        try:
            data = json.loads(build_json.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            build_id = str(data.get("build_id") or build_json.parent.name)
            builds[build_id] = {**data, "path": str(build_json.parent)}
    return builds


def _local_files(path: str | None) -> tuple[str | None, str | None]:
    if not path:
        return None, None
    rootfs, disk = Path(path) / "rootfs.tar.zst", Path(path) / "disk.raw"
    return (str(rootfs) if rootfs.exists() else None, str(disk) if disk.exists() else None)


def list_images(clients, options: ImagesOptions) -> list[BakedImage]:
    """List baked images, newest first.

    Args:
        clients: ``bake.aws.session.AwsClients`` (uses ``ec2`` and ``ssm``).
        options: see ``ImagesOptions``.

    Returns:
        ``BakedImage`` values sorted by ``created`` then by the build id's timestamp, newest
        first.

    Raises:
        AwsError: an EC2 or SSM call failed (one line naming the action).
    """
    ec2_client, ssm_client = clients.client("ec2"), clients.client("ssm")
    amis = ec2.describe_bake_images(ec2_client)
    prefix = options.ssm_prefix.rstrip("/") or "/"
    current: dict[str, str] = {}
    labels: dict[str, list[str]] = {}
    versions: dict[str, list[str]] = {}
    for param in ssm.list_by_path(ssm_client, prefix, recursive=True):
        if not param.name.endswith("/image_id"):
            continue
        current[param.value] = param.name
        for v in ssm.history(ssm_client, param.name):
            labels.setdefault(v.value, []).extend(v.labels)
            versions.setdefault(v.value, []).append(f"{v.name}:{v.version}")

    builds = read_local_builds(options.data_dir)
    by_image_id = {b.get("image_id"): b for b in builds.values() if b.get("image_id")}
    seen_builds: set[str] = set()
    result: list[BakedImage] = []
    for ami in amis:
        tags = ami["TagMap"]
        image_id = ami["ImageId"]
        build = builds.get(tags.get("bake:build-id", "")) or by_image_id.get(image_id)
        local_path = tags.get("bake:local-path") or (build or {}).get("path")
        if build:
            seen_builds.add(str(build.get("build_id")))
        rootfs, disk = _local_files(local_path)
        result.append(
            BakedImage(
                image_id=image_id,
                registered=True,
                name=ami.get("Name", ""),
                kubernetes_version=tags.get("bake:kubernetes-version", ""),
                arch=tags.get("bake:arch", ""),
                os=tags.get("bake:os", ""),
                build_id=tags.get("bake:build-id", ""),
                manifest_sha256=tags.get("bake:manifest-sha256", ""),
                created=str(ami.get("CreationDate", "")),
                ssm_parameter=current.get(image_id),
                ssm_labels=tuple(labels.get(image_id, ())),
                ssm_versions=tuple(versions.get(image_id, ())),
                local_path=local_path,
                rootfs_archive=rootfs,
                disk=disk,
            )
        )
    if options.include_local_builds:
        for build_id, build in builds.items():
            if build_id in seen_builds:
                continue
            rootfs, disk = _local_files(build["path"])
            result.append(
                BakedImage(
                    image_id=str(build.get("image_id") or ""),
                    registered=False,
                    name="",
                    kubernetes_version=str(build.get("kubernetes_version", "")),
                    arch=str(build.get("arch", "")),
                    os=str(build.get("os", "")),
                    build_id=build_id,
                    manifest_sha256=str(build.get("manifest_sha256", "")),
                    created=str(build.get("created", "")),
                    local_path=build["path"],
                    rootfs_archive=rootfs,
                    disk=disk,
                )
            )
    result.sort(key=lambda i: (i.created, i.build_id.rsplit("-", 1)[-1]), reverse=True)
    return result


TABLE_HEADER = ("IMAGE ID", "KUBERNETES", "ARCH", "OS", "BUILD", "CREATED", "SSM", "LOCAL PATH")


def table_rows(images: list[BakedImage]) -> list[tuple[str, ...]]:
    """Rows for the text table (header first).

    SSM shows ``current (<newest label>)`` when the image is what its parameter points to now,
    ``was <labels>`` when only older versions held it, and ``—`` otherwise; an unregistered
    local build shows
    ``(not registered)`` after its id.
    """
    rows: list[tuple[str, ...]] = [TABLE_HEADER]
    for i in images:
        if i.ssm_parameter:
            ssm_text = "current" + (f" ({i.ssm_labels[-1]})" if i.ssm_labels else "")
        elif i.ssm_labels:
            ssm_text = "was " + ",".join(i.ssm_labels)
        else:
            ssm_text = "—"
        image_id = i.image_id if i.registered else f"{i.image_id or '-'} (not registered)"
        rows.append(
            (image_id, i.kubernetes_version, i.arch, i.os, i.build_id, i.created, ssm_text,
             i.local_path or "—")
        )
    return rows


def format_table(images: list[BakedImage]) -> str:
    """The text table of ``bake images list`` (columns padded, no trailing spaces)."""
    rows = table_rows(images)
    widths = [max(len(r[c]) for r in rows) for c in range(len(TABLE_HEADER))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
