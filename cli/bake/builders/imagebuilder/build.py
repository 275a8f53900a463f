"""One whole Image Builder bake (``bake_with_image_builder``: resources, build, wait, publish),
waiting with Ctrl-C handling, and where a build's logs are."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bake.builders.imagebuilder.model import (
    BuildResult,
    BuildStatus,
    ImageBuilderOptions,
    Outcome,
)
from bake.errors import BuildError
from bake.publish import publish

if TYPE_CHECKING:
    from bake.builders.imagebuilder.driver import ImageBuilderDriver


def log_location(options: ImageBuilderOptions, status: BuildStatus) -> str:
    """Where Image Builder wrote a build's logs: the S3 prefix and the CloudWatch log group.

    Image Builder writes to ``s3://<bucket>/<prefix>/<image name>/<version>/<build>/`` and to the
    log group ``/aws/imagebuilder/<image name>`` (Image Builder user guide, "Logging").
    """
    parts = status.arn.split(":image/", 1)[-1].split("/")
    image_path = "/".join(parts)
    where = [f"CloudWatch Logs /aws/imagebuilder/{parts[0]}"]
    if options.log_bucket:
        prefix = options.log_prefix.strip("/")
        where.insert(0, f"s3://{options.log_bucket}/{prefix + '/' if prefix else ''}{image_path}/")
    return " and ".join(where)


def _fmt(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


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


def bake_with_image_builder(
    driver: ImageBuilderDriver,
    docs: Any,
    ssm_prefix: str = "/bake/k8s",
    confirm: Callable[[str], bool] | None = None,
) -> Outcome:
    """The whole AWS bake of one arch: resources, build, wait, publish (the ``bake ami`` core).

    Args:
        driver: a configured ``ImageBuilderDriver``.
        docs: ``bake.render.ImageDocuments`` for one release and arch.
        ssm_prefix: SSM hierarchy root for publication.
        confirm: asked on Ctrl-C whether to cancel (``None``: never cancel, just stop waiting).

    Returns:
        the ``Outcome``; with ``driver.options.wait`` false, right after the build started.

    Raises:
        UsageError, RenderError, AwsError: before the build (nothing left half-created).
        BuildError: the build failed or was cancelled (nothing published).
    """
    resources = driver.ensure_resources(docs)
    arn = driver.start_build(resources)
    if not driver.options.wait:
        driver.progress(f"not waiting; attach with: bake ami wait {arn}")
        return Outcome(arn, resources)
    result = wait_interactive(driver, arn, confirm or (lambda question: False))
    publications = publish(
        driver.clients, driver.built_image(result, docs.release), ssm_prefix, driver.progress
    )
    return Outcome(arn, resources, result, tuple(p.to_json() for p in publications))
