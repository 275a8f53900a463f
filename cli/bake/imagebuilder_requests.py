"""The one producer of EC2 Image Builder request bodies: recipe, infrastructure, distribution.

``bake.render`` renders the bodies from ``image-recipes/*.yaml.j2``; the functions here set
every account-specific field of such a body from an ``AccountSettings``, and nothing else
decides what is sent. Both readers call them:

* ``bake render ami`` shows the bodies for ``REVIEW`` settings, whose values are the ``${...}``
  placeholders (``docs/render.md``, "Placeholders"): the rendered templates are fixed points of
  these functions for ``REVIEW`` (a test checks it), so the files you review are the bodies.
* the Image Builder driver (``bake.builders.imagebuilder``) calls them with the settings of the
  build, then fills what is only known in the account (component ARNs) and drops unset fields.

So a rendered body, with its placeholders filled in, is byte for byte the request the driver
sends (``tests/imagebuilder/test_requests.py``). Field names and shapes: EC2 Image Builder API
reference, ``CreateImageRecipe``, ``CreateInfrastructureConfiguration`` and
``CreateDistributionConfiguration``. ``ssmParameterConfigurations`` are never part of a body:
bake publishes the image id to SSM itself after the build, with a version label
(``bake.publish``); only the CloudFormation form, where no bake runs afterwards, has Image Builder
publish it (``bake.render_cfn``).

Pure: no AWS call, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bake.tags import release_tags


@dataclass(frozen=True)
class AccountSettings:
    """The account-specific fields of the request bodies.

    Attributes:
        instance_types: build instance types; empty keeps the rendered defaults
            (``bake.render.INSTANCE_TYPES``).
        instance_profile: IAM instance profile name of the build instance.
        subnet_id: subnet of the build instance, or ``None`` (default VPC: field left out).
        security_group_ids: security groups of the build instance (empty: field left out).
        log_bucket: S3 bucket for build logs, or ``None`` (no ``logging``: CloudWatch only).
        log_prefix: key prefix in ``log_bucket``; empty keeps the rendered prefix.
        regions: regions the AMI is distributed to, home region first (one distribution each).
        target_accounts: account ids the AMI is copied to and shared with (launch permission).
        kms_key_id: KMS key (id, ARN or alias) of the EBS snapshots, or ``None`` (AWS managed
            key: fields left out).

    The defaults are ``REVIEW``'s placeholders, filled by the driver from its options.
    """

    instance_types: tuple[str, ...] = ()
    instance_profile: str = "${instance_profile}"
    subnet_id: str | None = "${subnet_id}"
    security_group_ids: tuple[str, ...] = ("${security_group_id}",)
    log_bucket: str | None = "${log_bucket}"
    log_prefix: str = ""
    regions: tuple[str, ...] = ("${region}",)
    target_accounts: tuple[str, ...] = ()
    kms_key_id: str | None = "${kms_key_id}"


#: what ``bake render ami`` shows: every account value as its ``${...}`` placeholder
REVIEW = AccountSettings()

#: the semantic version of a component or recipe that does not exist yet (rendered into the
#: recipe body); Image Builder versions are immutable, so a changed one gets ``bump_patch``
FIRST_VERSION = "1.0.0"


def bump_patch(version: str | None) -> str:
    """The next semantic version: ``None`` -> ``FIRST_VERSION``; ``1.0.4`` -> ``1.0.5``;
    ``1.0.4/1`` (a build version) -> ``1.0.5``."""
    if not version:
        return FIRST_VERSION
    major, minor, patch = (int(p) for p in version.split("/")[0].split("."))
    return f"{major}.{minor}.{patch + 1}"


def _release_tags(release: Any) -> dict[str, str]:
    return release_tags(release.kubernetes_version, release.arch, release.os)


def recipe_request(rendered: Mapping[str, Any], settings: AccountSettings) -> dict[str, Any]:
    """The CreateImageRecipe body: ``rendered`` with the KMS key of every EBS mapping set.

    Args:
        rendered: the rendered recipe body (``ImageDocuments.recipe.data``).
        settings: the account settings (only ``kms_key_id`` is read).
    Returns:
        a new dict; ``None`` values are dropped later by the caller that sends it.
    """
    body = dict(rendered)
    mappings = []
    for mapping in body.get("blockDeviceMappings") or []:
        mapping = dict(mapping)
        if "ebs" in mapping:
            mapping["ebs"] = {**mapping["ebs"], "kmsKeyId": settings.kms_key_id}
        mappings.append(mapping)
    if mappings:
        body["blockDeviceMappings"] = mappings
    return body


def infrastructure_request(
    rendered: Mapping[str, Any], release: Any, settings: AccountSettings, name: str
) -> dict[str, Any]:
    """The Create/UpdateInfrastructureConfiguration body.

    Args:
        rendered: the rendered body (``ImageDocuments.infrastructure.data``).
        release: the ``bake.catalog.Release`` (its tags go on the configuration).
        settings: the account settings.
        name: the configuration name when ``rendered`` has none.
    Returns:
        the body: instance types (the settings' or the rendered ones), instance profile,
        subnet, security groups, IMDSv2 required (``httpTokens: required``, the rendered hop
        limit or 1), terminate on failure, S3 logs when a log bucket is set, the release tags.
    """
    body = dict(rendered)
    logging = (body.get("logging") or {}).get("s3Logs") or {}
    body.pop("clientToken", None)
    body.update(
        {
            "name": body.get("name") or name,
            "instanceTypes": list(settings.instance_types) or body.get("instanceTypes"),
            "instanceProfileName": settings.instance_profile,
            "securityGroupIds": list(settings.security_group_ids),
            "subnetId": settings.subnet_id,
            "terminateInstanceOnFailure": True,
            "instanceMetadataOptions": {
                "httpPutResponseHopLimit": 1,
                **(body.get("instanceMetadataOptions") or {}),
                "httpTokens": "required",
            },
            "logging": (
                {
                    "s3Logs": {
                        "s3BucketName": settings.log_bucket,
                        "s3KeyPrefix": settings.log_prefix or logging.get("s3KeyPrefix"),
                    }
                }
                if settings.log_bucket
                else None
            ),
            "tags": {**(body.get("tags") or {}), **_release_tags(release)},
        }
    )
    return body


def distribution_request(
    rendered: Mapping[str, Any], release: Any, settings: AccountSettings, name: str
) -> dict[str, Any]:
    """The Create/UpdateDistributionConfiguration body.

    Args:
        rendered: the rendered body (``ImageDocuments.distribution.data``); its first
            distribution's ``amiDistributionConfiguration`` is the template of every region's.
        release: the ``bake.catalog.Release``.
        settings: the account settings.
        name: the configuration name when ``rendered`` has none.
    Returns:
        the body: one distribution per region of ``settings.regions`` with the rendered AMI
        name, description and tags (plus the release tags), the KMS key, the target accounts
        (``targetAccountIds`` and ``launchPermission.userIds``); no
        ``ssmParameterConfigurations`` (see the module docstring).
    """
    first = (rendered.get("distributions") or [{}])[0]
    ami = dict(first.get("amiDistributionConfiguration") or {})
    ami.setdefault(
        "name",
        f"bake-k8s-{release.kubernetes_version}-{release.os}-{release.arch}-"
        "{{ imagebuilder:buildDate }}",
    )
    ami["amiTags"] = {**(ami.get("amiTags") or {}), **_release_tags(release)}
    ami["kmsKeyId"] = settings.kms_key_id
    ami["targetAccountIds"] = list(settings.target_accounts)
    ami["launchPermission"] = (
        {"userIds": list(settings.target_accounts)} if settings.target_accounts else None
    )
    ami = {k: v for k, v in ami.items() if v not in (None, [], {})}
    return {
        "name": rendered.get("name") or name,
        "description": rendered.get("description")
        or f"bake Kubernetes {release.minor} {release.os} {release.arch}",
        "distributions": [
            {"region": region, "amiDistributionConfiguration": dict(ami)}
            for region in settings.regions
        ],
        "tags": {**(rendered.get("tags") or {}), **_release_tags(release)},
    }
