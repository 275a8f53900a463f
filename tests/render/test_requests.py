"""Image recipe, infrastructure and distribution configuration bodies against botocore's model.

botocore's ``Stubber`` validates every parameter of a call against the imagebuilder service
model before answering, so a rendered body with a wrong key, type or missing required member
fails here exactly as it would against EC2 Image Builder. Placeholders are filled with test
values the way the AWS driver fills them.
"""

from __future__ import annotations

import json

import pytest

from bake.catalog import load_catalog, resolve
from bake.render import (
    IMAGEBUILDER_BUILD_DATE,
    RenderOptions,
    component_names,
    render_image_documents,
)

ACCOUNT = "123456789012"
COMPONENT_ARN = f"arn:aws:imagebuilder:us-east-1:{ACCOUNT}:component"
# every add-on any catalog minor bakes (bake-addon-<name> components)
ADDONS = tuple(sorted({
    a for entry in load_catalog().data["kubernetes"].values() for a in entry.get("addons", {})
}))
VALUES = {
    "${kms_key_id}": f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "${instance_profile}": "bake-imagebuilder",
    "${subnet_id}": "subnet-0123456789abcdef0",
    "${security_group_id}": "sg-0123456789abcdef0",
    "${log_bucket}": "bake-logs-123456789012",
    "${region}": "us-east-1",
    **{f"${{component:{name}}}": f"{COMPONENT_ARN}/{name}/1.0.0/1"
       for name in component_names(True, ADDONS)},
}


def fill(data):
    """``data`` with every ``${...}`` placeholder replaced by its test value."""
    text = json.dumps(data)
    for key, value in VALUES.items():
        text = text.replace(key, value)
    assert "${" not in text, text
    return json.loads(text)


@pytest.fixture(scope="module")
def client():
    import boto3

    return boto3.client(
        "imagebuilder",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.mark.parametrize("request_, arch", [("1.30.12", "amd64"), ("1.34", "arm64")])
def test_bodies_pass_the_imagebuilder_model(client, request_, arch):
    from botocore.stub import Stubber

    docs = render_image_documents(resolve(load_catalog(), request_, arch), RenderOptions())
    arn = f"arn:aws:imagebuilder:us-east-1:{ACCOUNT}:image-recipe/x/1.0.0"
    with Stubber(client) as stub:
        stub.add_response("create_image_recipe", {"imageRecipeArn": arn})
        stub.add_response(
            "create_infrastructure_configuration", {"infrastructureConfigurationArn": arn}
        )
        stub.add_response(
            "create_distribution_configuration", {"distributionConfigurationArn": arn}
        )
        client.create_image_recipe(**fill(docs.recipe.data))
        client.create_infrastructure_configuration(**fill(docs.infrastructure.data))
        client.create_distribution_configuration(**fill(docs.distribution.data))
        stub.assert_no_pending_responses()


def test_a_wrong_body_is_rejected_by_the_model(client):
    from botocore.exceptions import ParamValidationError
    from botocore.stub import Stubber

    docs = render_image_documents(resolve(load_catalog(), "1.30.12", "amd64"), RenderOptions())
    body = fill(docs.infrastructure.data)
    body["instanceMetadataOptions"]["httpTokens"] = 2  # wrong type
    with Stubber(client) as stub, pytest.raises(ParamValidationError):
        stub.add_response("create_infrastructure_configuration", {})
        client.create_infrastructure_configuration(**body)


def test_security_defaults_and_publication():
    release = resolve(load_catalog(), "1.30", "arm64")
    docs = render_image_documents(
        release, RenderOptions(ssm_prefix="/team/k8s", volume_size_gib=30)
    )
    recipe, infra, dist = docs.recipe.data, docs.infrastructure.data, docs.distribution.data
    assert recipe["parentImage"] == "ssm:/aws/service/debian/release/12/latest/arm64"
    assert [c["componentArn"] for c in recipe["components"]] == [
        f"${{component:{n}}}" for n in component_names(False, tuple(a for a, _ in release.addons))
    ]
    ebs = recipe["blockDeviceMappings"][0]["ebs"]
    assert (ebs["volumeType"], ebs["encrypted"], ebs["volumeSize"]) == ("gp3", True, 30)
    # the SSM agent stays: the etcd member cleanup runs on control planes via SSM Run Command
    assert (
        recipe["additionalInstanceConfiguration"]["systemsManagerAgent"]["uninstallAfterBuild"]
        is False
    )
    assert infra["instanceMetadataOptions"]["httpTokens"] == "required"
    assert infra["terminateInstanceOnFailure"] is True
    (target,) = dist["distributions"]
    assert target["amiDistributionConfiguration"]["name"].endswith(IMAGEBUILDER_BUILD_DATE)
    tags = target["amiDistributionConfiguration"]["amiTags"]
    assert tags["bake:managed"] == "true"
    assert tags["bake:kubernetes-version"] == release.kubernetes_version
    assert (tags["bake:arch"], tags["bake:os"]) == ("arm64", "debian-12")
    # the image id goes to this parameter: bake publishes it after the build (with a version
    # label), so the body Image Builder gets has no ssmParameterConfigurations of its own
    assert docs.ssm_parameter == "/team/k8s/1.30/debian-12/arm64/image_id"
    assert "ssmParameterConfigurations" not in target
    assert RenderOptions().parent_image is None


def test_parent_image_override():
    release = resolve(load_catalog(), "1.30", "amd64")
    docs = render_image_documents(release, RenderOptions(parent_image="ami-0123456789abcdef0"))
    assert docs.recipe.data["parentImage"] == "ami-0123456789abcdef0"
