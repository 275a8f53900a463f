"""Render the EC2 Image Builder documents of one release: components, image recipe, configurations.

The same byte-exact documents feed both builders: the AWS driver uploads them to EC2 Image
Builder, the local builder's runner executes them in a chroot. Every value comes from the
``Release`` (``bake.catalog``); this module builds each template's context in Python and parses
each rendered document straight away (``bake.templates.render_yaml``), so templates hold no logic
beyond loops over prepared lists.

Components (AWSTOE documents, schemaVersion 1.0, phases build/validate/test), in recipe order:
``bake-os-prep``, ``bake-container-runtime``, ``bake-kubernetes``, ``bake-images``,
``bake-image-manifest``, ``bake-hygiene``; with ``RenderOptions.agent`` the node agent's
``bake-node`` component runs right before ``bake-hygiene``. Every download is an AWSTOE
``WebDownload`` with the catalog's SHA-256 as ``checksum`` and ``algorithm: SHA256`` (AWSTOE
verifies the file before the step succeeds; AWSTOE "Action modules", WebDownload).

With ``RenderOptions.artifacts_s3`` (builds without internet, artifacts staged by ``bake stage``)
every download is instead an AWSTOE ``S3Download`` from ``bake.stage.s3_source`` /
``s3_image_source`` (inputs ``source``, ``destination``, ``overwrite``; S3Download has no
checksum input: AWSTOE "Action modules", S3Download). The step right after a component's
downloads, ``VerifyDownloads`` (ExecuteBash), checks every file with ``sha256sum`` against the
catalog and fails the build (deleting the bad files, naming their S3 objects) before any later
step uses them. One check step per component, not per file, keeps ``bake-images`` under the
16,000-character limit of a component document (CreateComponent ``data``). A release whose
runtime comes from OS packages (``apt-get``) cannot be rendered this way.

Placeholders (``${...}``) left in the request bodies for the AWS driver to fill in with
account-specific values (none of them is a secret):

- ``${component:<name>}``: ARN of the component created from ``components/<name>.yaml``
  (image recipe ``components[].componentArn``).
- ``${kms_key_id}``: KMS key for the encrypted gp3 root volume (image recipe
  ``blockDeviceMappings[].ebs.kmsKeyId``; drop the key to use the account's default EBS key).
- ``${instance_profile}``, ``${subnet_id}``, ``${security_group_id}``, ``${log_bucket}``:
  infrastructure configuration ``instanceProfileName``, ``subnetId``, ``securityGroupIds``,
  ``logging.s3Logs.s3BucketName``.
- ``${region}``: distribution configuration ``distributions[].region``.

``{{imagebuilder:buildDate}}`` in the AMI name is Image Builder's own variable, left literal.

The package: ``model`` (options, documents and the facts they encode), ``components`` (one
template context per component) and ``documents`` (``render_image_documents``). Everything
public is importable from ``bake.render``.
"""

from bake.plan import DOWNLOADS_DIR, IMAGES_DIR, OS_PACKAGES_DIR
from bake.render.components import check_artifacts_s3, staged_images
from bake.render.documents import render_image_documents
from bake.render.model import (
    AGENT_COMPONENT,
    AGENT_DOWNLOADS_DIR,
    ARTIFACT_FILES,
    COMPONENTS,
    CONTAINERD_SOCKET,
    IMAGEBUILDER_BUILD_DATE,
    IMDS_HOP_LIMIT,
    INSTANCE_TYPES,
    LOG_PREFIX,
    MANIFEST_DIR,
    OS_PACKAGE_CONTAINERD_MAJOR,
    PLACEHOLDERS,
    ROOT_DEVICE,
    WORKING_DIRECTORY,
    AgentSource,
    Document,
    ImageDocuments,
    RenderOptions,
    component_names,
)

__all__ = [
    "DOWNLOADS_DIR",
    "IMAGES_DIR",
    "OS_PACKAGES_DIR",
    "COMPONENTS",
    "AGENT_COMPONENT",
    "AGENT_DOWNLOADS_DIR",
    "PLACEHOLDERS",
    "IMAGEBUILDER_BUILD_DATE",
    "ROOT_DEVICE",
    "WORKING_DIRECTORY",
    "MANIFEST_DIR",
    "CONTAINERD_SOCKET",
    "INSTANCE_TYPES",
    "IMDS_HOP_LIMIT",
    "LOG_PREFIX",
    "OS_PACKAGE_CONTAINERD_MAJOR",
    "ARTIFACT_FILES",
    "AgentSource",
    "RenderOptions",
    "component_names",
    "Document",
    "ImageDocuments",
    "check_artifacts_s3",
    "staged_images",
    "render_image_documents",
]
