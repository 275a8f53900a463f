"""The one contract every builder meets, and what a build hands over.

A builder bakes the rendered ``bake.render.ImageDocuments`` into a machine image, somewhere:
``bake.builders.local.OnThisMachine`` in a chroot here, ``bake.builders.imagebuilder
.InImageBuilder`` in EC2 Image Builder. Both are a ``Builder``:

- ``preflight()``: cheap checks before any work (root and free disk here; options, subnet and
  endpoints in AWS); raises a one-line ``BakeError``.
- ``build(documents) -> BuiltImage``: the image, tested; its AMIs per region (``amis=()`` when
  the build was only started, Image Builder's ``--no-wait``), its manifest, where its logs are.
- ``commit(image, publications) -> BuiltImage``: called only after ``bake.publish.publish``
  succeeded (the local builder moves its staging directory into place here).
- ``discard(image)``: called when publication or commit failed; removes what ``build`` left
  that nothing else will (local staging; Image Builder's AMIs stay, as it made them).

``bake.publish.build_and_publish(builder, documents, ...)`` runs that sequence for every
builder and returns the one result type, ``bake.publish.AmiResult``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bake.tags import release_tags


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
        manifest: the parsed image manifest (``image-manifest.json``: ``artifacts``,
            ``images``, ...) when the builder holds it (local builds), else ``{}``.
        details: the builder's own JSON-ready facts, merged into ``AmiResult.to_json()``:
            ``{"local": {paths}}`` here, ``{"image_arn", "created", "reused",
            "elapsed_seconds"}`` from Image Builder.
        handle: the builder's own object for ``commit``/``discard`` (e.g. the staged
            ``LocalImage``); not compared, not printed.
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
    manifest: Mapping[str, Any] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)
    handle: Any = field(default=None, compare=False, repr=False)

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


class Builder(Protocol):
    """What every builder implements (see the module docstring).

    Attributes:
        name: ``local`` or ``imagebuilder`` (progress lines and the result's ``builder``).
    """

    name: str

    def preflight(self) -> None:
        """Checks that need no building; raises a one-line ``BakeError``."""

    def build(self, documents: Any) -> BuiltImage:
        """Bake ``documents`` (``bake.render.ImageDocuments``) into a tested image.

        Raises:
            BakeError: one line (``BuildError``, ``ArtifactError``, ``AwsError``, ...); nothing
                left half-made.
        """

    def commit(self, image: BuiltImage, publications: Sequence[Any]) -> BuiltImage:
        """Make a published image final; returns it with its final ``details``.

        ``publications``: the ``bake.publish.Publication`` per region, home region first."""

    def discard(self, image: BuiltImage) -> None:
        """Remove what ``build`` left, after publication or commit failed."""
