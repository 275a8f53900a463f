"""Image Builder as a ``bake.builders.contract.Builder`` (``InImageBuilder``), one whole bake
(``bake_with_image_builder``: resources, build, wait, publish), and waiting with Ctrl-C handling."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from bake.builders.contract import BuiltImage
from bake.builders.imagebuilder.model import BuildResult
from bake.errors import BuildError, UsageError
from bake.publish import AmiResult, build_and_publish

if TYPE_CHECKING:
    from bake.builders.imagebuilder.driver import ImageBuilderDriver


def wait_interactive(
    driver: ImageBuilderDriver, image_arn: str, confirm: Callable[[str], bool]
) -> BuildResult:
    """``driver.wait`` with Ctrl-C handling: asks ``confirm`` whether to cancel the build.

    Args:
        confirm: e.g. ``lambda q: click.confirm(q, default=False)``.

    Raises:
        BuildError: as ``wait``; on Ctrl-C, after cancelling or leaving the build running.
    """
    try:
        return driver.wait(image_arn)
    except KeyboardInterrupt:
        if confirm(f"cancel the build {image_arn}?"):
            driver.cancel(image_arn)
            raise BuildError(f"build {image_arn} cancelled; nothing was published") from None
        raise BuildError(
            f"stopped waiting; the build continues: `bake ami wait {image_arn}` or "
            f"`bake ami cancel {image_arn}`"
        ) from None


class InImageBuilder:
    """Bakes in EC2 Image Builder (a ``bake.builders.contract.Builder``).

    Args:
        driver: a configured ``ImageBuilderDriver``.
        confirm: asked on Ctrl-C whether to cancel (``None``: never cancel, just stop waiting).
    """

    name = "imagebuilder"

    def __init__(
        self, driver: ImageBuilderDriver, confirm: Callable[[str], bool] | None = None
    ) -> None:
        self.driver = driver
        self.confirm = confirm or (lambda question: False)

    def preflight(self) -> None:
        """The options' own checks (``Preflight.check_options``); the subnet, endpoints and
        parent image are checked by ``build`` before any resource is created."""
        self.driver.check_options()

    def build(self, documents: Any) -> BuiltImage:
        """Resources, build, wait: ``ensure_resources``, ``start_build``, ``wait_interactive``.

        Returns:
            ``driver.built_image`` of the AVAILABLE build, with ``details`` ``image_arn``,
            ``created``, ``reused`` and ``elapsed_seconds``; with ``options.wait`` false, right
            after the build started: no AMIs (``amis=()``) and ``elapsed_seconds`` ``None``.

        Raises:
            UsageError, RenderError, AwsError: before the build (nothing left half-created).
            BuildError: the build failed or was cancelled (nothing published).
        """
        driver = self.driver
        resources = driver.ensure_resources(documents)
        arn = driver.start_build(resources)
        details = {
            "image_arn": arn,
            "created": list(resources.created),
            "reused": list(resources.reused),
            "elapsed_seconds": None,
        }
        if not driver.options.wait:
            driver.progress(f"not waiting; attach with: bake ami wait {arn}")
            return BuiltImage.of(
                documents.release, arn.rsplit(":image/", 1)[-1], amis=(), details=details
            )
        result = wait_interactive(driver, arn, self.confirm)
        image = driver.built_image(result, documents.release)
        return replace(image, details={**details, "elapsed_seconds": result.elapsed_seconds})

    def commit(self, image: BuiltImage, publications: Sequence[Any]) -> BuiltImage:
        """Nothing to move: the AMIs are where Image Builder distributed them."""
        return image

    def discard(self, image: BuiltImage) -> None:
        """Nothing: Image Builder's AMIs stay as it made them (``publish`` rolled back its own
        parameters and tags)."""


class AttachedBuild(InImageBuilder):
    """A build already started (``bake ami --no-wait``), as a ``Builder``: ``build`` waits for it
    and hands over what it made, so ``bake ami wait ARN`` publishes exactly as ``bake ami``.

    The release comes from the tags ``bake ami`` put on the build (``bake.tags.release_tags``).

    Args:
        driver: a configured ``ImageBuilderDriver``.
        image_arn: the image build version ARN.
        confirm: asked on Ctrl-C whether to cancel.
    """

    def __init__(
        self,
        driver: ImageBuilderDriver,
        image_arn: str,
        confirm: Callable[[str], bool] | None = None,
    ) -> None:
        super().__init__(driver, confirm)
        self.image_arn = image_arn

    def preflight(self) -> None:
        """Nothing: the build exists already."""

    def build(self, documents: Any = None) -> BuiltImage:
        """Wait for the build, then the ``BuiltImage`` of what it made.

        Raises:
            BuildError: the build failed or was cancelled (nothing published).
            UsageError: the build carries no bake release tags (not started by ``bake ami``):
                nothing is published, the AMIs stay.
        """
        result = wait_interactive(self.driver, self.image_arn, self.confirm)
        tags = result.status.tags
        try:
            version, arch, os_name = (
                tags["bake:kubernetes-version"],
                tags["bake:arch"],
                tags["bake:os"],
            )
        except KeyError:
            raise UsageError(
                f"{self.image_arn} was not started by bake ami (no bake:kubernetes-version, "
                "bake:arch and bake:os tags): its AMIs are left unpublished"
            ) from None
        release = SimpleNamespace(
            kubernetes_version=version,
            minor=".".join(version.split(".")[:2]),
            arch=arch,
            os=os_name,
        )
        image = self.driver.built_image(result, release)
        return replace(
            image,
            details={
                "image_arn": self.image_arn,
                "created": [],
                "reused": [],
                "elapsed_seconds": result.elapsed_seconds,
            },
        )


def bake_with_image_builder(
    driver: ImageBuilderDriver,
    docs: Any,
    ssm_prefix: str = "/bake/k8s",
    confirm: Callable[[str], bool] | None = None,
) -> AmiResult:
    """The whole AWS bake of one arch: resources, build, wait, publish (the ``bake ami`` core).

    ``bake.publish.build_and_publish`` with an ``InImageBuilder``, as the local bake does with
    its own builder.

    Args:
        driver: a configured ``ImageBuilderDriver``.
        docs: ``bake.render.ImageDocuments`` for one release and arch.
        ssm_prefix: SSM hierarchy root for publication.
        confirm: asked on Ctrl-C whether to cancel (``None``: never cancel, just stop waiting).

    Returns:
        the ``bake.publish.AmiResult``; with ``driver.options.wait`` false, right after the
        build started (no publications).

    Raises:
        UsageError, RenderError, AwsError: before the build (nothing left half-created).
        BuildError: the build failed or was cancelled (nothing published).
    """
    return build_and_publish(
        InImageBuilder(driver, confirm), docs, driver.clients, ssm_prefix, driver.progress
    )


def publish_when_done(
    driver: ImageBuilderDriver,
    image_arn: str,
    ssm_prefix: str = "/bake/k8s",
    confirm: Callable[[str], bool] | None = None,
) -> AmiResult:
    """``bake ami wait ARN``: wait for a build ``bake ami --no-wait`` started, then publish it
    (``bake.publish.build_and_publish`` with an ``AttachedBuild``).

    Returns:
        the ``bake.publish.AmiResult``.

    Raises:
        BuildError: the build failed, was cancelled or timed out (nothing published).
        UsageError: not a bake build (nothing published).
        AwsError: a call failed (publication rolled back).
    """
    return build_and_publish(
        AttachedBuild(driver, image_arn, confirm),
        None,
        driver.clients,
        ssm_prefix,
        driver.progress,
    )
