"""``render_image_documents``: every Image Builder document of one release, rendered and parsed:
the components in recipe order, then the image recipe, infrastructure and distribution
configurations."""

from __future__ import annotations

from typing import Any

from bake.aws import ssm
from bake.catalog import Release
from bake.imagebuilder_requests import FIRST_VERSION
from bake.oses import load_os
from bake.plan import (
    DOWNLOADS_DIR,
    download_plan,
)
from bake.render.components import (
    _addon,
    _agent,
    _component,
    _images,
    _kubernetes,
    _manifest,
    _os_prep,
    _pm,
    _runtime,
    _safe,
    check_artifacts_s3,
)
from bake.render.model import (
    AGENT_COMPONENT,
    IMAGEBUILDER_BUILD_DATE,
    IMDS_HOP_LIMIT,
    INSTANCE_TYPES,
    LOG_PREFIX,
    ROOT_DEVICE,
    WORKING_DIRECTORY,
    Document,
    ImageDocuments,
    RenderOptions,
    component_names,
)
from bake.tags import CONTENT_TAG, release_tags
from bake.templates import render_yaml


def _request(kind: str, name: str, context: dict[str, Any]) -> Document:
    text, data = render_yaml("image-recipes", f"{kind}.yaml.j2", context)
    return Document(kind, name, f"image-recipes/{kind}.yaml", text, data)


def render_image_documents(release: Release, options: RenderOptions) -> ImageDocuments:
    """Render and parse every Image Builder document for ``release``.

    Args:
        release: the resolved release (``bake.catalog.resolve``).
        options: mirror, SSM prefix, parent image, volume size, S3 artifacts.
    Returns:
        the ``ImageDocuments`` (components in recipe order, recipe, infrastructure,
        distribution); nothing is written.
    Raises:
        RenderError: a template failed (undefined value, invalid YAML) or a catalog value is not
            safe to paste into shell.
        CatalogError: an image archive SHA-256 is known but neither a mirror nor
            ``artifacts_s3`` was given.
        UsageError: ``artifacts_s3`` is malformed, or set for a release with an OS-package
            runtime (see ``check_artifacts_s3``).
    """
    artifacts_s3 = (
        check_artifacts_s3(release, options.artifacts_s3) if options.artifacts_s3 else None
    )
    base = {
        "kubernetes_version": _safe(release.kubernetes_version),
        "minor": release.minor,
        "arch": _safe(release.arch),
        "os": release.os,
        "downloads_dir": DOWNLOADS_DIR,
    }
    plan = download_plan(release)
    mirror = options.mirror
    info = load_os(release.os)
    contexts = {
        "bake-os-prep": _os_prep(base, plan, artifacts_s3, info),
        "bake-container-runtime": _runtime(base, release, plan, mirror, artifacts_s3, info),
        "bake-kubernetes": _kubernetes(base, release, plan, mirror, artifacts_s3),
        "bake-images": _images(base, plan, mirror, artifacts_s3),
        "bake-image-manifest": _manifest(base, release, plan, info, options.agent),
        "bake-hygiene": {**base, "pm": _pm(info), "ssh_unit": _safe(info.ssh_unit)},
    }
    for addon, version in release.addons:
        contexts[f"bake-addon-{addon}"] = _addon(base, plan, addon, version, mirror, artifacts_s3)
    if options.agent:
        contexts[AGENT_COMPONENT] = _agent(base, options.agent, info)
    names = component_names(options.agent is not None, tuple(a for a, _ in release.addons))
    components = tuple(_component(name, contexts[name]) for name in names)

    target = f"{release.os}, {release.arch}"
    ami_description = f"Kubernetes {release.kubernetes_version} node image ({target}) by bake"
    # Image Builder resource names allow no dot (ubuntu-24.04 becomes ubuntu-24-04)
    dashed = f"{release.kubernetes_version}-{release.os}-{release.arch}".replace(".", "-")
    tags = list(release_tags(release.kubernetes_version, release.arch, release.os).items())
    recipe = _request(
        "image-recipe",
        f"bake-k8s-{dashed}",
        {
            "name": f"bake-k8s-{dashed}",
            "description": ami_description,
            "semantic_version": FIRST_VERSION,
            "parent_image": options.parent_image or info.parent_image_for(release.arch),
            "components": names,
            "root_device": ROOT_DEVICE,
            "volume_size_gib": int(options.volume_size_gib),
            "working_directory": WORKING_DIRECTORY,
            "tags": tags,
        },
    )
    infrastructure = _request(
        "infrastructure-configuration",
        f"bake-k8s-{release.arch}",
        {
            "name": f"bake-k8s-{release.arch}",
            "description": f"bake build instances for {release.arch}: IMDSv2 only, "
            "terminated on failure",
            "instance_types": INSTANCE_TYPES[release.arch],
            "hop_limit": IMDS_HOP_LIMIT,
            "log_prefix": LOG_PREFIX,
            "tags": tags,
        },
    )
    content_hash = ImageDocuments(
        release, components, recipe, infrastructure, infrastructure
    ).content_hash
    minor_dashed = f"{release.minor}-{release.os}-{release.arch}".replace(".", "-")
    distribution = _request(
        "distribution-configuration",
        f"bake-k8s-{minor_dashed}",
        {
            "name": f"bake-k8s-{minor_dashed}",
            "description": f"bake AMIs for Kubernetes {release.minor} ({target}), published to SSM",
            "ami_name": f"bake-k8s-{release.kubernetes_version}-{release.os}-{release.arch}-"
            + IMAGEBUILDER_BUILD_DATE,
            "ami_description": ami_description,
            "ami_tags": [*tags, (CONTENT_TAG, content_hash)],
            "tags": tags,
        },
    )
    return ImageDocuments(
        release,
        components,
        recipe,
        infrastructure,
        distribution,
        ssm_parameter=ssm.parameter_name(
            options.ssm_prefix, release.minor, release.os, release.arch
        ),
    )
