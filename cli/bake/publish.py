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
only after an image's test phase passed.

``build_and_publish(builder, documents, clients)`` is the one sequence every builder goes
through (build, publish, commit; ``bake.builders.contract.Builder``), and ``AmiResult`` the one
result type ``bake ami`` reports, whichever builder baked. ``BuiltImage`` and ``BuiltAmi`` are
defined with the builder contract (``bake.builders.contract``) and importable from here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bake.aws import ec2, ssm
from bake.builders.contract import Builder, BuiltAmi, BuiltImage
from bake.errors import BakeError

__all__ = [
    "AmiResult",
    "BuiltAmi",
    "BuiltImage",
    "Publication",
    "build_and_publish",
    "publish",
    "unpublish",
]

log = logging.getLogger("bake.publish")


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


@dataclass(frozen=True)
class AmiResult:
    """What one ``bake ami`` did for one arch, the same type for every builder.

    ``--output json`` prints ``to_json()``: the common keys below, then the builder's own
    (``BuiltImage.details``: ``local`` paths, or Image Builder's ``image_arn``, ``created``,
    ``reused`` and ``elapsed_seconds``).

    Attributes:
        kubernetes_version, arch, os, build_id: what was baked.
        builder: ``local`` or ``imagebuilder``.
        publications: ``Publication.to_json()`` per region published; ``()`` when the build was
            only started (``--no-wait``).
        amis: ``{"region", "image_id", "account_id"}`` per AMI the builder produced.
        logs: where the build's logs are (a directory, or S3 and CloudWatch Logs).
        artifacts, images: the image manifest's entries (``[]`` when the builder holds no
            manifest, as in Image Builder).
        details: ``BuiltImage.details``.
        duration_s: wall time of the whole bake, seconds.
    """

    kubernetes_version: str
    arch: str
    os: str
    build_id: str
    builder: str
    publications: tuple[dict[str, Any], ...] = ()
    amis: tuple[dict[str, str], ...] = ()
    logs: str = ""
    artifacts: tuple[dict[str, Any], ...] = ()
    images: tuple[dict[str, Any], ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0

    @classmethod
    def of(
        cls,
        builder: str,
        image: BuiltImage,
        publications: tuple[Publication, ...],
        duration_s: float,
    ) -> AmiResult:
        """The result of ``image`` as ``builder`` built it and ``publish`` published it."""
        return cls(
            kubernetes_version=image.kubernetes_version,
            arch=image.arch,
            os=image.os,
            build_id=image.build_id,
            builder=builder,
            publications=tuple(p.to_json() for p in publications),
            amis=tuple(
                {"region": a.region, "image_id": a.image_id or "", "account_id": a.account_id}
                for a in image.amis
                if a.image_id
            )
            or tuple(
                {"region": p.region, "image_id": p.image_id, "account_id": image.account_id}
                for p in publications
            ),
            logs=image.logs,
            artifacts=tuple(image.manifest.get("artifacts", [])),
            images=tuple(image.manifest.get("images", [])),
            details=dict(image.details),
            duration_s=duration_s,
        )

    def _first(self, key: str) -> str | None:
        return self.publications[0][key] if self.publications else None

    @property
    def image_id(self) -> str | None:
        """The AMI published in the home region, ``None`` before publication."""
        return self._first("image_id")

    @property
    def ssm_parameter(self) -> str | None:
        """The SSM parameter now pointing at ``image_id``."""
        return self._first("ssm_parameter")

    @property
    def label(self) -> str | None:
        """The SSM parameter label, ``v<kubernetes_version>``."""
        return self._first("label")

    @property
    def local(self) -> dict[str, str]:
        """A local image's paths (``directory``, ``rootfs_archive``, ``disk``, ``kernel``,
        ``initrd``, ``manifest``); ``{}`` for images built in AWS."""
        return dict(self.details.get("local", {}))

    @property
    def image_arn(self) -> str | None:
        """The Image Builder build version ARN; ``None`` for local images."""
        return self.details.get("image_arn")

    def to_json(self) -> dict[str, Any]:
        """The result as a JSON-ready dict (see the class docstring)."""
        return {
            "image_id": self.image_id,
            "ssm_parameter": self.ssm_parameter,
            "label": self.label,
            "kubernetes_version": self.kubernetes_version,
            "arch": self.arch,
            "os": self.os,
            "build_id": self.build_id,
            "builder": self.builder,
            "publications": list(self.publications),
            "amis": list(self.amis),
            "logs": self.logs,
            "artifacts": list(self.artifacts),
            "images": list(self.images),
            **self.details,
            "duration_s": round(self.duration_s, 1),
        }


def build_and_publish(
    builder: Builder,
    documents: Any,
    clients: Any,
    ssm_prefix: str = ssm.DEFAULT_PREFIX,
    progress: Callable[[str], None] = lambda _line: None,
    clock: Callable[[], float] = time.monotonic,
) -> AmiResult:
    """Build, publish, commit: the one sequence behind ``bake ami``, for every builder.

    Args:
        builder: a ``bake.builders.contract.Builder`` (its ``preflight`` has run).
        documents: ``bake.render.ImageDocuments`` of one release and arch.
        clients: ``bake.aws.session.AwsClients`` where the image is published.
        ssm_prefix: SSM hierarchy root.
        progress: one line per step.
        clock: monotonic clock in seconds (``duration_s``).

    Returns:
        the ``AmiResult``; without publications when the builder only started the build
        (``BuiltImage.amis == ()``).

    Raises:
        BakeError: from ``build`` (nothing published), from ``publish`` (its own rollback ran,
            then ``discard``) or from ``commit`` (``unpublish``, then ``discard``).
    """
    started = clock()
    image = builder.build(documents)
    if not image.amis:
        return AmiResult.of(builder.name, image, (), clock() - started)
    try:
        publications = publish(clients, image, ssm_prefix, progress)
    except BaseException:
        builder.discard(image)
        raise
    try:
        image = builder.commit(image, publications)
    except BaseException:
        _quietly(unpublish, clients, publications)
        builder.discard(image)
        raise
    return AmiResult.of(builder.name, image, publications, clock() - started)
