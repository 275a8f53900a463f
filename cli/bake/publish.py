"""Publication of a built image, the same for every builder: tag, publish to SSM, all or nothing.

Every builder (``bake.builders.local`` on this machine, ``bake.builders.imagebuilder`` in EC2
Image Builder) hands over a ``BuiltImage``: the release it holds, its build id and manifest
digest, and one ``BuiltAmi`` per region. ``publish(clients, image, ssm_prefix)`` then, per
region: registers the AMI when the builder made none (a local image, registered in the
embedded AWS) or tags the builder's AMI, writes its id to
``<prefix>/<minor>/<os>/<arch>/image_id`` in SSM Parameter Store and labels that parameter
version with the exact Kubernetes version (``v1.30.12``). If any step fails, every parameter
written is put back as it was and every AMI this call registered is deregistered (with its
snapshots), so nothing is left half-published; the original one-line error is raised. Called
only after an image's test phase passed (by ``bake ami``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bake.aws import ec2, ssm
from bake.errors import BakeError
from bake.tags import release_tags

log = logging.getLogger("bake.publish")


@dataclass(frozen=True)
class BuiltAmi:
    """One region's machine image of a build.

    Attributes:
        region: e.g. ``us-east-1``; ``""`` for the clients' own region.
        image_id: the AMI the builder produced (``ami-...``), or ``None`` when ``publish``
            registers it (local images, from ``BuiltImage.snapshot_id``/``local_path``).
        account_id: the owning account; AMIs copied into other accounts are theirs to publish.
    """

    region: str = ""
    image_id: str | None = None
    account_id: str = ""


@dataclass(frozen=True)
class BuiltImage:
    """What a builder built, the one thing ``publish`` takes.

    Attributes:
        kubernetes_version: exact version, e.g. ``1.30.12``.
        minor: e.g. ``1.30``.
        arch: ``amd64`` or ``arm64``.
        os: e.g. ``debian-12``.
        build_id: ``f"{kubernetes_version}-{arch}-{YYYYmmddTHHMMSSZ}"`` (local) or the Image
            Builder build version (``<recipe>/<version>/<build>``).
        amis: one per region; default one AMI to register in the clients' region.
        manifest_sha256: SHA-256 hex of the image manifest (``image-manifest.json``), when the
            builder holds it (local builds), tag ``bake:manifest-sha256``.
        logs: where the build's logs are (a directory or an ``s3://`` URL), ``""`` if none.
        local_path: the local image dir (``<data_dir>/images/<build_id>``) for local images,
            recorded as tag ``bake:local-path``; ``None`` for images built in AWS.
        snapshot_id: root EBS snapshot to register from, ``None`` for local images.
        volume_size_gib: root volume size of a registered AMI, GiB.
        name: AMI name of a registered AMI; default ``bake-k8s-<build_id>-<os>``.
        extra_tags: more AMI tags (never secrets), e.g. ``bake:image-builder-arn``.
        account_id: the account that built it (``""``: the clients' own); AMIs of other
            accounts (copies in target accounts) are theirs to publish and are skipped.
    """

    kubernetes_version: str
    minor: str
    arch: str
    os: str
    build_id: str
    amis: tuple[BuiltAmi, ...] = (BuiltAmi(),)
    manifest_sha256: str | None = None
    logs: str = ""
    local_path: str | None = None
    snapshot_id: str | None = None
    volume_size_gib: int = 20
    name: str | None = None
    extra_tags: Mapping[str, str] = field(default_factory=dict)
    account_id: str = ""

    @classmethod
    def of(cls, release: Any, build_id: str, **fields: Any) -> BuiltImage:
        """A ``BuiltImage`` of a ``bake.catalog.Release`` (its version, minor, arch and os)."""
        return cls(
            kubernetes_version=release.kubernetes_version,
            minor=release.minor,
            arch=release.arch,
            os=release.os,
            build_id=build_id,
            **fields,
        )

    @property
    def ami_name(self) -> str:
        """The name of an AMI ``publish`` registers (``name`` or ``bake-k8s-<build_id>-<os>``)."""
        return self.name or f"bake-k8s-{self.build_id}-{self.os}"

    @property
    def tags(self) -> dict[str, str]:
        """The AMI tags bake sets: ``bake.tags.release_tags`` plus the build id, the manifest
        digest and, for local images, ``bake:local-path`` (an AMI ``publish`` registers also
        gets ``Name``)."""
        tags = {
            **dict(self.extra_tags),
            **release_tags(self.kubernetes_version, self.arch, self.os),
            "bake:build-id": self.build_id,
        }
        if self.manifest_sha256:
            tags["bake:manifest-sha256"] = self.manifest_sha256
        if self.local_path:
            tags["bake:local-path"] = self.local_path
        return tags


@dataclass(frozen=True)
class Publication:
    """One region's published image.

    Attributes:
        region: the region it was published in.
        image_id: the AMI id, ``ami-...``.
        ssm_parameter: the parameter name now pointing at it.
        parameter_version: the SSM version number written.
        label: the label on that version, ``v<kubernetes_version>``.
        tags: the AMI's bake tags.
        previous_image_id: the parameter's value before this publication, or ``None`` when
            bake created the parameter (what ``unpublish`` restores).
        registered: ``publish`` registered the AMI (``unpublish`` deregisters it) rather than
            tagging a builder's AMI.
    """

    image_id: str
    ssm_parameter: str
    parameter_version: int
    label: str
    tags: Mapping[str, str]
    previous_image_id: str | None = None
    region: str = ""
    registered: bool = False

    def to_json(self) -> dict:
        """JSON-ready dict of every field."""
        return {
            "region": self.region,
            "image_id": self.image_id,
            "ssm_parameter": self.ssm_parameter,
            "parameter_version": self.parameter_version,
            "label": self.label,
            "tags": dict(self.tags),
            "previous_image_id": self.previous_image_id,
            "registered": self.registered,
        }


def publish(
    clients: Any,
    image: BuiltImage,
    ssm_prefix: str = ssm.DEFAULT_PREFIX,
    progress: Callable[[str], None] = lambda _line: None,
) -> tuple[Publication, ...]:
    """Publish every region's AMI of ``image`` to SSM, labelled, or leave nothing behind.

    Args:
        clients: ``bake.aws.session.AwsClients`` of the home region (uses ``ec2`` and ``ssm``;
            other regions through ``clients.in_region``).
        image: what the builder built; AMIs owned by another account than
            ``image.account_id`` (copies in target accounts) are left to that account.
        ssm_prefix: SSM hierarchy root, default ``/bake/k8s``.
        progress: called with one line per region published.

    Returns:
        one ``Publication`` per region published, in ``image.amis`` order.

    Raises:
        UsageError: invalid prefix, arch or version label (before any AWS call).
        AwsError: an EC2 or SSM call failed (one line naming the action); parameters written
            were restored and AMIs registered here deregistered before raising.
    """
    name = ssm.parameter_name(ssm_prefix, image.minor, image.os, image.arch)
    label = ssm.version_label(image.kubernetes_version)
    done: list[Publication] = []
    registered: str | None = None
    try:
        for ami in image.amis:
            if ami.account_id and image.account_id and ami.account_id != image.account_id:
                continue  # copies in target accounts belong to them
            regional = clients.in_region(ami.region)
            ec2_client, ssm_client = regional.client("ec2"), regional.client("ssm")
            region = ami.region or regional.region or ""
            registered = None
            if ami.image_id is None:  # a registered AMI is also named
                tags = {"Name": image.ami_name, **image.tags}
                image_id = registered = ec2.register_image(
                    ec2_client,
                    name=image.ami_name,
                    description=f"bake: Kubernetes {image.kubernetes_version} node image, "
                    f"{image.os} {image.arch}",
                    arch=image.arch,
                    tags=tags,
                    snapshot_id=image.snapshot_id,
                    volume_size_gib=image.volume_size_gib,
                )
            else:
                image_id, tags = ami.image_id, image.tags
                ec2.create_tags(ec2_client, [image_id], tags)
            previous = ssm.get_parameter(ssm_client, name)
            version = ssm.put_image_id(
                ssm_client,
                name,
                image_id,
                description=f"bake: newest {image.os} {image.arch} image for Kubernetes "
                f"{image.minor}",
            )
            publication = Publication(
                image_id=image_id,
                ssm_parameter=name,
                parameter_version=version,
                label=label,
                tags=tags,
                previous_image_id=previous.value if previous else None,
                region=region,
                registered=bool(registered),
            )
            done.append(publication)
            registered = None  # from here on, undone through ``done``
            ssm.label_version(ssm_client, name, version, label)
            progress(f"published {image_id} at {name} ({label}) in {region}")
    except BaseException as exc:
        log.debug("publication of %s failed (%s); rolling back", image.build_id, exc)
        if registered:  # registered in this region, failed before its parameter was written
            _quietly(ec2.deregister_image, ec2_client, registered)
        for publication in reversed(done):
            _quietly(unpublish, clients, (publication,))
        raise
    return tuple(done)


def unpublish(clients: Any, publications: tuple[Publication, ...]) -> None:
    """Undo a ``publish`` whose caller failed afterwards (e.g. committing the local image).

    Per publication, puts the SSM parameter back to ``previous_image_id`` (or deletes it when
    bake created it), then deregisters the AMI and deletes its snapshots when ``publish``
    registered it (a builder's AMI stays, as the builder made it).

    Args:
        clients: ``bake.aws.session.AwsClients`` of the home region (uses ``ec2`` and ``ssm``).
        publications: what ``publish`` returned.

    Raises:
        AwsError: an EC2 or SSM call failed (one line naming the action).
    """
    for publication in publications:
        regional = clients.in_region(publication.region)
        previous = None
        if publication.previous_image_id:
            previous = ssm.ParameterVersion(
                name=publication.ssm_parameter, version=0, value=publication.previous_image_id
            )
        ssm.restore(regional.client("ssm"), publication.ssm_parameter, previous)
        if publication.registered:
            ec2.deregister_image(regional.client("ec2"), publication.image_id)


def _quietly(undo: Callable[..., Any], *args: Any) -> None:
    """Best-effort undo; failures are logged, never hide the original error."""
    try:
        undo(*args)
    except BakeError as exc:  # pragma: no cover - needs AWS failing twice
        log.warning("could not undo a publication step: %s", exc.format_message())
