"""Publication of a baked image: register the AMI, then publish its id to SSM, all or nothing.

``publish_image(clients, request)`` registers the AMI in EC2 with bake's tags, writes its id to
``<prefix>/<minor>/<os>/<arch>/image_id`` in SSM Parameter Store and labels that parameter
version with the exact Kubernetes version (``v1.30.12``). If any SSM step fails, the SSM
parameter is put back as it was and the AMI is deregistered (with its snapshots), so nothing
is left half-published; the original one-line error is raised. Called only after an image's
test phase passed (by ``bake ami``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from bake.aws import ec2, ssm
from bake.errors import BakeError

log = logging.getLogger("bake.publish")


@dataclass(frozen=True)
class PublishRequest:
    """What to publish.

    Attributes:
        kubernetes_version: exact version, e.g. ``1.30.12``.
        minor: e.g. ``1.30``.
        arch: ``amd64`` or ``arm64``.
        os: e.g. ``debian-12``.
        build_id: ``f"{kubernetes_version}-{arch}-{YYYYmmddTHHMMSSZ}"``.
        manifest_sha256: SHA-256 hex of the image manifest (``image-manifest.json``).
        ssm_prefix: SSM hierarchy root, default ``/bake/k8s``.
        local_path: the local image dir (``<data_dir>/images/<build_id>``) for local images,
            recorded as tag ``bake:local-path``; ``None`` for images built in AWS.
        snapshot_id: root EBS snapshot for a real AMI, ``None`` for local images.
        volume_size_gib: root volume size, GiB.
        name: AMI name; default ``bake-k8s-<build_id>-<os>``.
        description: AMI description; default names version, os and arch.
        extra_tags: more AMI tags (never secrets).
    """

    kubernetes_version: str
    minor: str
    arch: str
    os: str
    build_id: str
    manifest_sha256: str
    ssm_prefix: str = ssm.DEFAULT_PREFIX
    local_path: str | None = None
    snapshot_id: str | None = None
    volume_size_gib: int = 20
    name: str | None = None
    description: str | None = None
    extra_tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def ami_name(self) -> str:
        """The AMI name (``name`` or ``bake-k8s-<build_id>-<os>``)."""
        return self.name or f"bake-k8s-{self.build_id}-{self.os}"

    @property
    def tags(self) -> dict[str, str]:
        """The AMI tags: ``bake:managed=true`` plus version, arch, os, build id, manifest digest
        and, for local images, ``bake:local-path``."""
        tags = {
            **dict(self.extra_tags),
            "Name": self.ami_name,
            "bake:managed": "true",
            "bake:kubernetes-version": self.kubernetes_version,
            "bake:arch": self.arch,
            "bake:os": self.os,
            "bake:build-id": self.build_id,
            "bake:manifest-sha256": self.manifest_sha256,
        }
        if self.local_path:
            tags["bake:local-path"] = self.local_path
        return tags


@dataclass(frozen=True)
class Publication:
    """A published image.

    Attributes:
        image_id: the AMI id, ``ami-...``.
        ssm_parameter: the parameter name now pointing at it.
        parameter_version: the SSM version number written.
        label: the label on that version, ``v<kubernetes_version>``.
        tags: the AMI's tags.
        previous_image_id: the parameter's value before this publication, or ``None`` when
            bake created the parameter (what ``unpublish`` restores).
    """

    image_id: str
    ssm_parameter: str
    parameter_version: int
    label: str
    tags: Mapping[str, str]
    previous_image_id: str | None = None

    def to_json(self) -> dict:
        """JSON-ready dict of every field."""
        return {
            "image_id": self.image_id,
            "ssm_parameter": self.ssm_parameter,
            "parameter_version": self.parameter_version,
            "label": self.label,
            "tags": dict(self.tags),
            "previous_image_id": self.previous_image_id,
        }


def publish_image(clients, request: PublishRequest) -> Publication:
    """Register the AMI and publish its id to SSM, or leave nothing behind.

    Args:
        clients: ``bake.aws.session.AwsClients`` (uses ``ec2`` and ``ssm``).
        request: what to publish.

    Returns:
        the ``Publication``.

    Raises:
        UsageError: invalid prefix, arch or version label (before any AWS call).
        AwsError: an EC2 or SSM call failed (one line naming the action); the AMI was
            deregistered and the SSM parameter restored before raising.
    """
    name = ssm.parameter_name(request.ssm_prefix, request.minor, request.os, request.arch)
    label = ssm.version_label(request.kubernetes_version)
    ec2_client = clients.client("ec2")
    ssm_client = clients.client("ssm")
    tags = request.tags
    image_id = ec2.register_image(
        ec2_client,
        name=request.ami_name,
        description=(
            f"bake: Kubernetes {request.kubernetes_version} node image, {request.os} {request.arch}"
        ),
        arch=request.arch,
        tags=tags,
        snapshot_id=request.snapshot_id,
        volume_size_gib=request.volume_size_gib,
    )
    previous: ssm.ParameterVersion | None = None
    written = False
    try:
        previous = ssm.get_parameter(ssm_client, name)
        version = ssm.put_image_id(
            ssm_client,
            name,
            image_id,
            description=f"bake: newest {request.os} {request.arch} image for Kubernetes "
            f"{request.minor}",
        )
        written = True
        ssm.label_version(ssm_client, name, version, label)
    except BaseException as exc:
        log.debug("publication of %s failed (%s); rolling back", image_id, exc)
        _rollback(ec2_client, ssm_client, image_id, name, previous, written)
        raise
    return Publication(
        image_id=image_id,
        ssm_parameter=name,
        parameter_version=version,
        label=label,
        tags=tags,
        previous_image_id=previous.value if previous else None,
    )


def unpublish(clients, publication: Publication) -> None:
    """Undo a ``publish_image`` whose caller failed afterwards (e.g. committing the local image).

    Puts the SSM parameter back to ``publication.previous_image_id`` (or deletes it when bake
    created it), then deregisters the AMI and deletes its snapshots.

    Args:
        clients: ``bake.aws.session.AwsClients`` (uses ``ec2`` and ``ssm``).
        publication: what ``publish_image`` returned.

    Raises:
        AwsError: an EC2 or SSM call failed (one line naming the action).
    """
    previous = None
    if publication.previous_image_id:
        previous = ssm.ParameterVersion(
            name=publication.ssm_parameter, version=0, value=publication.previous_image_id
        )
    ssm.restore(clients.client("ssm"), publication.ssm_parameter, previous)
    ec2.deregister_image(clients.client("ec2"), publication.image_id)


def _rollback(ec2_client, ssm_client, image_id, name, previous, written) -> None:
    """Best-effort undo; failures are logged, never hide the original error."""
    if written:
        try:
            ssm.restore(ssm_client, name, previous)
        except BakeError as exc:  # pragma: no cover - needs SSM failing twice
            log.warning("could not restore %s: %s", name, exc.format_message())
    try:
        ec2.deregister_image(ec2_client, image_id)
    except BakeError as exc:  # pragma: no cover - needs EC2 failing after RegisterImage
        log.warning("could not deregister %s: %s", image_id, exc.format_message())
