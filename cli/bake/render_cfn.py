"""The Image Builder resources of one release as a CloudFormation template (``bake render ami
--format cloudformation``), for teams that deploy through stacks.

``render_cloudformation(docs)`` turns the rendered ``ImageDocuments`` into ``AWS::ImageBuilder::
Component`` (``Data`` is ``Document.text``, byte for byte), ``ImageRecipe``,
``InfrastructureConfiguration``, ``DistributionConfiguration`` and, unless ``BuildImage`` is
``false``, one ``Image`` (a stack create then bakes the AMI). Account-specific values are stack
parameters (the driver's ``${...}`` placeholders). Components and the recipe are immutable in
Image Builder, so their names carry the first 8 hex digits of their content SHA-256: a changed
document becomes a new resource instead of a name/version clash on replacement. The distribution
publishes the AMI id to ``docs.ssm_parameter`` itself (``SsmParameterConfigurations``, data type
``aws:ec2:image``; Image Builder API reference) because no bake process runs afterwards to label
it; the request bodies bake sends have none (``bake.imagebuilder_requests``).
Resource shapes: CloudFormation resource reference, "EC2 Image Builder resource type reference".
The template is built as data and dumped with PyYAML (never by string concatenation); the
result is parsed again and ``Data`` compared to the component texts before it is returned.
Templates over 51,200 bytes must be deployed from S3 (CloudFormation quotas): their header says
so (``--s3-bucket``).
"""

from __future__ import annotations

import hashlib
from typing import Any

import yaml

from bake.errors import RenderError

NO_VALUE = {"Ref": "AWS::NoValue"}


def _if(condition: str, value: Any) -> dict[str, Any]:
    return {"Fn::If": [condition, value, NO_VALUE]}


def _logical_id(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("_", "-").split("-") if part)


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _tags(data: dict[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (data.get("tags") or {}).items()}


def build_template(docs: Any) -> dict[str, Any]:
    """The CloudFormation template of ``docs`` as a dict.

    Args:
        docs: ``bake.render.ImageDocuments``.

    Returns:
        the template (``AWSTemplateFormatVersion``, ``Parameters``, ``Conditions``,
        ``Resources``, ``Outputs``).
    """
    release = docs.release
    recipe = docs.recipe.data
    infra = docs.infrastructure.data
    dist = docs.distribution.data
    rendered_dist = (dist.get("distributions") or [{}])[0]
    ami = rendered_dist.get("amiDistributionConfiguration") or {}
    resources: dict[str, Any] = {}
    component_ids = []
    version_dashed = release.kubernetes_version.replace(".", "-")
    for doc in docs.components:
        logical = f"Component{_logical_id(doc.name)}"
        component_ids.append(logical)
        resources[logical] = {
            "Type": "AWS::ImageBuilder::Component",
            "Properties": {
                "Name": f"{doc.name}-{version_dashed}-{_short_hash(doc.text)}",
                "Version": "1.0.0",
                "Platform": "Linux",
                "Description": f"bake {doc.name} for Kubernetes {release.kubernetes_version} "
                f"{release.os} {release.arch}",
                "Data": doc.text,
                "KmsKeyId": _if("HasKmsKey", {"Ref": "KmsKeyId"}),
                "Tags": _tags(recipe),
            },
        }
    ebs_src = ((recipe.get("blockDeviceMappings") or [{}])[0]).get("ebs") or {}
    recipe_hash = _short_hash(docs.recipe.text + "".join(d.text for d in docs.components))
    recipe_props: dict[str, Any] = {
        "Name": f"{recipe['name']}-{recipe_hash}",
        "Version": "1.0.0",
        "Description": recipe.get("description", ""),
        "ParentImage": {"Ref": "ParentImage"},
        "Components": [{"ComponentArn": {"Ref": c}} for c in component_ids],
        "BlockDeviceMappings": [
            {
                "DeviceName": (recipe.get("blockDeviceMappings") or [{}])[0].get(
                    "deviceName", "/dev/xvda"
                ),
                "Ebs": {
                    "Encrypted": True,
                    "KmsKeyId": _if("HasKmsKey", {"Ref": "KmsKeyId"}),
                    "VolumeSize": int(ebs_src.get("volumeSize", 20)),
                    "VolumeType": ebs_src.get("volumeType", "gp3"),
                    "DeleteOnTermination": True,
                },
            }
        ],
        "Tags": _tags(recipe),
    }
    if recipe.get("workingDirectory"):
        recipe_props["WorkingDirectory"] = recipe["workingDirectory"]
    agent = (recipe.get("additionalInstanceConfiguration") or {}).get("systemsManagerAgent") or {}
    if "uninstallAfterBuild" in agent:
        recipe_props["AdditionalInstanceConfiguration"] = {
            "SystemsManagerAgent": {"UninstallAfterBuild": bool(agent["uninstallAfterBuild"])}
        }
    resources["ImageRecipe"] = {
        "Type": "AWS::ImageBuilder::ImageRecipe",
        "Properties": recipe_props,
    }
    imds = infra.get("instanceMetadataOptions") or {}
    log_prefix = ((infra.get("logging") or {}).get("s3Logs") or {}).get(
        "s3KeyPrefix", "bake/imagebuilder"
    )
    resources["InfrastructureConfiguration"] = {
        "Type": "AWS::ImageBuilder::InfrastructureConfiguration",
        "Properties": {
            "Name": {"Fn::Sub": f"{infra['name']}-${{AWS::StackName}}"},
            "Description": infra.get("description", ""),
            "InstanceTypes": list(infra.get("instanceTypes") or []),
            "InstanceProfileName": {"Ref": "InstanceProfileName"},
            "SubnetId": _if("HasSubnet", {"Ref": "SubnetId"}),
            "SecurityGroupIds": _if("HasSecurityGroups", {"Ref": "SecurityGroupIds"}),
            "TerminateInstanceOnFailure": True,
            "InstanceMetadataOptions": {
                "HttpTokens": "required",
                "HttpPutResponseHopLimit": int(imds.get("httpPutResponseHopLimit", 1)),
            },
            "Logging": _if(
                "HasLogBucket",
                {"S3Logs": {"S3BucketName": {"Ref": "LogBucket"}, "S3KeyPrefix": log_prefix}},
            ),
            "Tags": _tags(infra),
        },
    }
    ami_props: dict[str, Any] = {
        "Name": ami.get(
            "name", f"bake-k8s-{release.kubernetes_version}-{{{{imagebuilder:buildDate}}}}"
        ),
        "AmiTags": {str(k): str(v) for k, v in (ami.get("amiTags") or {}).items()},
        "KmsKeyId": _if("HasKmsKey", {"Ref": "KmsKeyId"}),
    }
    if ami.get("description"):
        ami_props["Description"] = ami["description"]
    distribution: dict[str, Any] = {
        "Region": {"Ref": "AWS::Region"},
        "AmiDistributionConfiguration": ami_props,
    }
    if docs.ssm_parameter:
        distribution["SsmParameterConfigurations"] = [
            {"ParameterName": docs.ssm_parameter, "DataType": "aws:ec2:image"}
        ]
    resources["DistributionConfiguration"] = {
        "Type": "AWS::ImageBuilder::DistributionConfiguration",
        "Properties": {
            "Name": {"Fn::Sub": f"{dist['name']}-${{AWS::StackName}}"},
            "Description": dist.get("description", ""),
            "Distributions": [distribution],
            "Tags": _tags(dist),
        },
    }
    resources["Image"] = {
        "Type": "AWS::ImageBuilder::Image",
        "Condition": "BuildImage",
        "Properties": {
            "ImageRecipeArn": {"Ref": "ImageRecipe"},
            "InfrastructureConfigurationArn": {"Ref": "InfrastructureConfiguration"},
            "DistributionConfigurationArn": {"Ref": "DistributionConfiguration"},
            "ImageTestsConfiguration": {"ImageTestsEnabled": True, "TimeoutMinutes": 720},
            "EnhancedImageMetadataEnabled": True,
            "Tags": _tags(recipe),
        },
    }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "bake: EC2 Image Builder resources for Kubernetes "
        f"{release.kubernetes_version} "
        f"({release.os}, {release.arch})",
        "Parameters": {
            "InstanceProfileName": {
                "Type": "String",
                "Description": "Instance profile of the build instance "
                "(EC2InstanceProfileForImageBuilder + AmazonSSMManagedInstanceCore)",
            },
            "ParentImage": {
                "Type": "String",
                "Default": recipe.get("parentImage", ""),
                "Description": "Parent image: AMI id, Image Builder image ARN or ssm:<parameter>",
            },
            "SubnetId": {
                "Type": "String",
                "Default": "",
                "Description": "Private subnet (empty: default VPC)",
            },
            "SecurityGroupIds": {
                "Type": "CommaDelimitedList",
                "Default": "",
                "Description": "Security groups of the build instance (used with SubnetId)",
            },
            "LogBucket": {
                "Type": "String",
                "Default": "",
                "Description": "S3 bucket for build logs (empty: none)",
            },
            "KmsKeyId": {
                "Type": "String",
                "Default": "",
                "Description": "KMS key for components and AMI (empty: AWS managed keys)",
            },
            "BuildImage": {
                "Type": "String",
                "Default": "true",
                "AllowedValues": ["true", "false"],
                "Description": "Bake the image when the stack is created",
            },
        },
        "Conditions": {
            "HasSubnet": {"Fn::Not": [{"Fn::Equals": [{"Ref": "SubnetId"}, ""]}]},
            "HasSecurityGroups": {
                "Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "SecurityGroupIds"}]}, ""]}]
            },
            "HasLogBucket": {"Fn::Not": [{"Fn::Equals": [{"Ref": "LogBucket"}, ""]}]},
            "HasKmsKey": {"Fn::Not": [{"Fn::Equals": [{"Ref": "KmsKeyId"}, ""]}]},
            "BuildImage": {"Fn::Equals": [{"Ref": "BuildImage"}, "true"]},
        },
        "Resources": resources,
        "Outputs": {
            "ImageRecipeArn": {"Value": {"Ref": "ImageRecipe"}},
            "InfrastructureConfigurationArn": {"Value": {"Ref": "InfrastructureConfiguration"}},
            "DistributionConfigurationArn": {"Value": {"Ref": "DistributionConfiguration"}},
            "ImageId": {"Condition": "BuildImage", "Value": {"Fn::GetAtt": ["Image", "ImageId"]}},
        },
    }


class _Dumper(yaml.SafeDumper):
    """Block scalars for multi-line strings, so component documents stay readable; no YAML
    aliases (CloudFormation rejects them)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = (
        "|" if "\n" in value and not value.endswith((" ", "\t")) and " \n" not in value else None
    )
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render_cloudformation(docs: Any) -> str:
    """Render ``docs`` as a CloudFormation YAML template.

    Args:
        docs: ``bake.render.ImageDocuments``.

    Returns:
        the template text (UTF-8 YAML).

    Raises:
        RenderError: the dumped template does not parse back to the same data (a bake bug).
    """
    template = build_template(docs)
    body = yaml.dump(template, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000,
                     default_flow_style=None)
    text = _header(inline=True) + body
    if len(text.encode()) > TEMPLATE_BODY_LIMIT:
        text = _header(inline=False) + body
    if yaml.safe_load(text) != template:
        raise RenderError("CloudFormation template did not round-trip through YAML (bake bug)")
    return text


#: CloudFormation's limit of an inline template body, bytes (CloudFormation quotas); a larger
#: template goes through S3: ``aws cloudformation deploy --s3-bucket`` uploads it (AWS CLI
#: reference, "deploy": required for templates over 51,200 bytes)
TEMPLATE_BODY_LIMIT = 51_200


def _header(inline: bool) -> str:
    """How to deploy the template: inline, or through an S3 bucket when it is too large."""
    bucket = "" if inline else " --s3-bucket BUCKET"
    note = "" if inline else (
        "# (over CloudFormation's 51,200-byte inline limit: --s3-bucket uploads it first)\n")
    return (
        "# Rendered by bake (bake render ami --format cloudformation); deploy with\n"
        f"# aws cloudformation deploy --template-file THIS{bucket} \\\n"
        "#   --parameter-overrides InstanceProfileName=...\n" + note
    )
