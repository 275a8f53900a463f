"""Thin EC2 Image Builder wrapper: components, image recipes, configurations, image builds.

Every function takes an injected boto3 ``imagebuilder`` client and runs each API call through
``bake.aws.errors.call`` with its IAM action (``imagebuilder:CreateComponent``, ...), so failures
become one-line ``AwsError`` messages. Request and response shapes follow the EC2 Image Builder
API reference (CreateComponent, ListComponents, GetComponent, CreateImageRecipe,
ListImageRecipes, GetImageRecipe, Create/Update/List InfrastructureConfiguration(s),
Create/Update/List DistributionConfiguration(s), CreateImage, GetImage, CancelImageCreation,
ListWorkflowExecutions, ListWorkflowStepExecutions and the Delete* calls). Every mutating call
carries a fresh ``clientToken`` (the API's idempotency token). Image Builder versions are
semantic versions ``major.minor.patch``; a build version ARN adds ``/<build>``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from bake.aws.errors import call

#: terminal image states (API reference, ImageState.status)
TERMINAL_STATES = frozenset(
    {"AVAILABLE", "CANCELLED", "FAILED", "DEPRECATED", "DELETED", "DISABLED"}
)


def token() -> str:
    """A fresh idempotency ``clientToken`` (1-36 characters, API reference)."""
    return str(uuid.uuid4())


def _pages(action: str, fn, list_key: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Yield every item of a paginated ``list_*`` call (``nextToken`` pagination)."""
    next_token: str | None = None
    while True:
        page = call(action, fn, **kwargs, **({"nextToken": next_token} if next_token else {}))
        yield from page.get(list_key, [])
        next_token = page.get("nextToken")
        if not next_token:
            return


def _name_filter(name: str) -> list[dict[str, Any]]:
    return [{"name": "name", "values": [name]}]


def semver_key(version: str) -> tuple[int, ...]:
    """``"1.0.10"`` -> ``(1, 0, 10)`` for sorting Image Builder semantic versions."""
    return tuple(int(p) for p in version.split("/")[0].split("."))


# ---------------------------------------------------------------- components


def list_component_versions(client: Any, name: str) -> list[dict[str, Any]]:
    """The account's versions of component ``name``, newest first (``imagebuilder:ListComponents``).

    Returns:
        ``ComponentVersion`` dicts (``arn``, ``name``, ``version``, ...); ``[]`` when none.
    """
    items = [
        c
        for c in _pages(
            "imagebuilder:ListComponents",
            client.list_components,
            "componentVersionList",
            owner="Self",
            filters=_name_filter(name),
        )
        if c.get("name") == name
    ]
    items.sort(key=lambda c: semver_key(c["version"]), reverse=True)
    return items


def get_component(client: Any, arn: str) -> dict[str, Any]:
    """The ``Component`` at ``arn`` (a version or build version ARN), with ``data`` and ``tags``."""
    return call("imagebuilder:GetComponent", client.get_component, componentBuildVersionArn=arn)[
        "component"
    ]


def create_component(
    client: Any,
    *,
    name: str,
    version: str,
    data: str,
    description: str,
    tags: Mapping[str, str],
    kms_key_id: str | None = None,
) -> str:
    """Create a Linux AWSTOE component from its YAML text (``imagebuilder:CreateComponent``).

    Args:
        name: component name.
        version: semantic version ``x.y.z``.
        data: the component document, uploaded byte for byte (at most 16,000 characters inline,
            API reference ``data``).
        description: up to 1024 characters.
        tags: resource tags.
        kms_key_id: KMS key that encrypts the component, or ``None`` for the AWS managed key.

    Returns:
        the component build version ARN.
    """
    kwargs: dict[str, Any] = {
        "name": name,
        "semanticVersion": version,
        "description": description[:1024],
        "platform": "Linux",
        "data": data,
        "tags": dict(tags),
        "clientToken": token(),
    }
    if kms_key_id:
        kwargs["kmsKeyId"] = kms_key_id
    return call("imagebuilder:CreateComponent", client.create_component, **kwargs)[
        "componentBuildVersionArn"
    ]


def delete_component(client: Any, arn: str) -> None:
    """Delete one component build version (``imagebuilder:DeleteComponent``)."""
    call("imagebuilder:DeleteComponent", client.delete_component, componentBuildVersionArn=arn)


# ---------------------------------------------------------------- image recipes


def list_recipe_versions(client: Any, name: str) -> list[dict[str, Any]]:
    """The account's image recipes called ``name``, newest version first.

    Uses ``imagebuilder:ListImageRecipes``; each summary's ARN ends in ``/<x.y.z>``.
    """
    items = [
        r
        for r in _pages(
            "imagebuilder:ListImageRecipes",
            client.list_image_recipes,
            "imageRecipeSummaryList",
            owner="Self",
            filters=_name_filter(name),
        )
        if r.get("name") == name
    ]
    items.sort(key=lambda r: semver_key(r["arn"].rsplit("/", 1)[-1]), reverse=True)
    return items


def get_image_recipe(client: Any, arn: str) -> dict[str, Any]:
    """The ``ImageRecipe`` at ``arn`` (``imagebuilder:GetImageRecipe``), with ``tags``."""
    return call("imagebuilder:GetImageRecipe", client.get_image_recipe, imageRecipeArn=arn)[
        "imageRecipe"
    ]


def create_image_recipe(client: Any, request: Mapping[str, Any]) -> str:
    """Create an image recipe (``imagebuilder:CreateImageRecipe``).

    Args:
        request: the request body without ``clientToken`` (``name``, ``semanticVersion``,
            ``components``, ``parentImage``, ``blockDeviceMappings``, ``tags`` ...).

    Returns:
        the image recipe ARN.
    """
    return call(
        "imagebuilder:CreateImageRecipe",
        client.create_image_recipe,
        **dict(request),
        clientToken=token(),
    )["imageRecipeArn"]


def delete_image_recipe(client: Any, arn: str) -> None:
    """Delete an image recipe version (``imagebuilder:DeleteImageRecipe``)."""
    call("imagebuilder:DeleteImageRecipe", client.delete_image_recipe, imageRecipeArn=arn)


# ---------------------------------------------------------------- configurations


def find_infrastructure_configuration(client: Any, name: str) -> str | None:
    """ARN of the infrastructure configuration called ``name``, or ``None``."""
    for item in _pages(
        "imagebuilder:ListInfrastructureConfigurations",
        client.list_infrastructure_configurations,
        "infrastructureConfigurationSummaryList",
        filters=_name_filter(name),
    ):
        if item.get("name") == name:
            return item["arn"]
    return None


def put_infrastructure_configuration(
    client: Any, request: Mapping[str, Any], arn: str | None
) -> str:
    """Create (``arn`` is ``None``) or update in place an infrastructure configuration.

    Uses ``imagebuilder:CreateInfrastructureConfiguration`` or
    ``imagebuilder:UpdateInfrastructureConfiguration``; ``name`` and ``tags`` are dropped on
    update (the Update API does not take them).

    Returns:
        the infrastructure configuration ARN.
    """
    body = dict(request)
    if arn is None:
        return call(
            "imagebuilder:CreateInfrastructureConfiguration",
            client.create_infrastructure_configuration,
            **body,
            clientToken=token(),
        )["infrastructureConfigurationArn"]
    body.pop("name", None)
    body.pop("tags", None)
    return call(
        "imagebuilder:UpdateInfrastructureConfiguration",
        client.update_infrastructure_configuration,
        infrastructureConfigurationArn=arn,
        **body,
        clientToken=token(),
    )["infrastructureConfigurationArn"]


def delete_infrastructure_configuration(client: Any, arn: str) -> None:
    """``imagebuilder:DeleteInfrastructureConfiguration``."""
    call(
        "imagebuilder:DeleteInfrastructureConfiguration",
        client.delete_infrastructure_configuration,
        infrastructureConfigurationArn=arn,
    )


def find_distribution_configuration(client: Any, name: str) -> str | None:
    """ARN of the distribution configuration called ``name``, or ``None``."""
    for item in _pages(
        "imagebuilder:ListDistributionConfigurations",
        client.list_distribution_configurations,
        "distributionConfigurationSummaryList",
        filters=_name_filter(name),
    ):
        if item.get("name") == name:
            return item["arn"]
    return None


def put_distribution_configuration(client: Any, request: Mapping[str, Any], arn: str | None) -> str:
    """Create (``arn`` is ``None``) or update in place a distribution configuration.

    Uses ``imagebuilder:CreateDistributionConfiguration`` or
    ``imagebuilder:UpdateDistributionConfiguration`` (``name`` and ``tags`` dropped on update).

    Returns:
        the distribution configuration ARN.
    """
    body = dict(request)
    if arn is None:
        return call(
            "imagebuilder:CreateDistributionConfiguration",
            client.create_distribution_configuration,
            **body,
            clientToken=token(),
        )["distributionConfigurationArn"]
    body.pop("name", None)
    body.pop("tags", None)
    return call(
        "imagebuilder:UpdateDistributionConfiguration",
        client.update_distribution_configuration,
        distributionConfigurationArn=arn,
        **body,
        clientToken=token(),
    )["distributionConfigurationArn"]


def delete_distribution_configuration(client: Any, arn: str) -> None:
    """``imagebuilder:DeleteDistributionConfiguration``."""
    call(
        "imagebuilder:DeleteDistributionConfiguration",
        client.delete_distribution_configuration,
        distributionConfigurationArn=arn,
    )


# ---------------------------------------------------------------- image builds


def create_image(
    client: Any,
    *,
    recipe_arn: str,
    infrastructure_arn: str,
    distribution_arn: str,
    tags: Mapping[str, str],
    test_timeout_minutes: int = 720,
) -> str:
    """Start an image build (``imagebuilder:CreateImage``) with the test phase enabled.

    Args:
        test_timeout_minutes: 60-1440, API default 720 (API reference, ImageTestsConfiguration).

    Returns:
        the image build version ARN (``arn:aws:imagebuilder:<region>:<acct>:image/<name>/x.y.z/n``).
    """
    return call(
        "imagebuilder:CreateImage",
        client.create_image,
        imageRecipeArn=recipe_arn,
        infrastructureConfigurationArn=infrastructure_arn,
        distributionConfigurationArn=distribution_arn,
        imageTestsConfiguration={
            "imageTestsEnabled": True,
            "timeoutMinutes": max(60, min(1440, int(test_timeout_minutes))),
        },
        enhancedImageMetadataEnabled=True,
        tags=dict(tags),
        clientToken=token(),
    )["imageBuildVersionArn"]


def get_image(client: Any, arn: str) -> dict[str, Any]:
    """The ``Image`` of a build (``imagebuilder:GetImage``): ``state``, ``outputResources`` ..."""
    return call("imagebuilder:GetImage", client.get_image, imageBuildVersionArn=arn)["image"]


def cancel_image_creation(client: Any, arn: str) -> None:
    """Cancel a running build (``imagebuilder:CancelImageCreation``)."""
    call(
        "imagebuilder:CancelImageCreation",
        client.cancel_image_creation,
        imageBuildVersionArn=arn,
        clientToken=token(),
    )


def workflow_steps(client: Any, arn: str) -> list[dict[str, Any]]:
    """Every workflow step of a build, in start order.

    Uses ``imagebuilder:ListWorkflowExecutions`` then ``imagebuilder:ListWorkflowStepExecutions``
    per workflow. Each item is a ``WorkflowStepMetadata`` (``name``, ``action``, ``status``,
    ``message``, ``startTime``, ``endTime``) plus ``workflowType`` (BUILD, TEST, DISTRIBUTION).
    """
    steps: list[dict[str, Any]] = []
    for execution in _pages(
        "imagebuilder:ListWorkflowExecutions",
        client.list_workflow_executions,
        "workflowExecutions",
        imageBuildVersionArn=arn,
    ):
        for step in _pages(
            "imagebuilder:ListWorkflowStepExecutions",
            client.list_workflow_step_executions,
            "steps",
            workflowExecutionId=execution["workflowExecutionId"],
        ):
            steps.append({**step, "workflowType": execution.get("type", "")})
    return steps
