"""The EC2 Image Builder driver behind ``bake ami`` on AWS.

``ImageBuilderDriver`` turns the rendered ``ImageDocuments`` (the very component texts the local
builder runs) into Image Builder resources and drives one build:

1. ``ensure_resources(docs)``: every component is uploaded byte for byte as ``Document.text``;
   a component or image recipe whose content is unchanged is reused, a changed one gets a new
   semantic version (patch bumped). Content identity is the tag ``bake:content-sha256``
   (SHA-256 of the component text, or of the canonical JSON of the recipe request). The
   infrastructure configuration (instance types, subnet, security groups, instance profile,
   IMDSv2 required, terminate on failure, S3 logs) and distribution configuration (regions,
   target accounts, launch permissions, KMS key, AMI name and tags) are created or updated in
   place. If anything fails, what this call created is deleted again; what cannot be deleted is
   named in the error.
2. ``start_build(resources)`` -> the image build version ARN.
3. ``wait(arn)``: polls ``GetImage`` and the workflow steps, reports each status transition and
   step with elapsed time, tolerates throttling; ``FAILED``/``CANCELLED`` raise ``BuildError``
   with reason, failing step and log location. Nothing is published by Image Builder itself
   (the request bodies have no ``ssmParameterConfigurations``).
4. ``built_image(result, release)``: only after ``AVAILABLE``, the ``bake.publish.BuiltImage``
   that ``bake.publish.publish`` takes, exactly as for a local build: it tags the AMIs owned by
   this account and writes ``<prefix>/<minor>/<os>/<arch>/image_id`` in every region, labelled
   ``v<version>``.

The recipe, infrastructure and distribution bodies come from the one producer,
``bake.imagebuilder_requests``, for ``account_settings()``: the same functions give the bodies
``bake render ami`` shows. Placeholders in the rendered request bodies:
``${component:<name>}`` becomes the component's ARN; ``${<key>}`` for the keys of
``placeholder_values`` below. An unknown placeholder is a ``RenderError``.

The package: ``model`` (options, resources, status, result), ``requests`` (placeholders
and content digests), ``preflight`` (checks before any resource), ``driver``
(``ImageBuilderDriver``) and ``build`` (``InImageBuilder``, Image Builder as a
``bake.builders.contract.Builder``, and one whole bake). Everything public is importable from
``bake.builders.imagebuilder``.
"""

from bake.builders.imagebuilder.build import (
    AttachedBuild,
    InImageBuilder,
    bake_with_image_builder,
    publish_when_done,
    wait_interactive,
)
from bake.builders.imagebuilder.driver import ImageBuilderDriver
from bake.builders.imagebuilder.model import (
    REQUIRED_ENDPOINTS,
    AmiOutput,
    BuildResult,
    BuildStatus,
    ImageBuilderOptions,
    Progress,
    Resources,
    Step,
    log_location,
)
from bake.builders.imagebuilder.requests import content_sha256, fill_placeholders
from bake.tags import CONTENT_TAG  # the content tag the driver reuses resources by

__all__ = [
    "AttachedBuild",
    "CONTENT_TAG",
    "REQUIRED_ENDPOINTS",
    "AmiOutput",
    "BuildResult",
    "BuildStatus",
    "ImageBuilderDriver",
    "ImageBuilderOptions",
    "InImageBuilder",
    "Progress",
    "Resources",
    "Step",
    "bake_with_image_builder",
    "content_sha256",
    "fill_placeholders",
    "log_location",
    "publish_when_done",
    "wait_interactive",
]
