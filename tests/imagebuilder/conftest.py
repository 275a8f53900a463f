"""Fixtures for the Image Builder driver tests.

moto has no Image Builder, so the ``imagebuilder`` client is a real botocore client wrapped in
botocore's ``Stubber`` (every request is validated against the service model, every scripted
response against the output shape); SSM, EC2 and S3 go to the moto server. ``fake_docs``
builds ``ImageDocuments``-shaped values from the catalog when ``bake.render`` is not available.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from bake.render import Document, ImageDocuments

ACCOUNT = "123456789012"
REGION = "us-east-1"
PARENT = f"arn:aws:imagebuilder:{REGION}:aws:image/debian-12-x86/x.x.x"


def _doc(kind: str, name: str, path: str, data: Any) -> Document:
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return Document(kind, name, path, text, yaml.safe_load(text))


@pytest.fixture
def release():
    from bake.catalog import load_catalog, resolve

    return resolve(load_catalog(), "1.30", "amd64")


def make_docs(release, marker: str = "v1") -> ImageDocuments:
    """Component, recipe, infrastructure and distribution documents per the render contract."""
    names = ("bake-os-base", "bake-container-runtime", "bake-kubernetes")
    components = tuple(
        _doc(
            "component",
            n,
            f"components/{n}.yaml",
            {
                "name": n,
                "schemaVersion": 1.0,
                "phases": [
                    {
                        "name": "build",
                        "steps": [
                            {
                                "name": "Install",
                                "action": "ExecuteBash",
                                "inputs": {"commands": [f"echo {n} {marker} # ünïcode kept"]},
                            }
                        ],
                    }
                ],
            },
        )
        for n in names
    )
    minor = release.minor.replace(".", "-")
    recipe = _doc(
        "image-recipe",
        f"bake-k8s-{minor}-{release.arch}",
        "image-recipes/recipe.yaml",
        {
            "name": f"bake-k8s-{minor}-{release.arch}",
            "description": f"bake Kubernetes {release.kubernetes_version}",
            "semanticVersion": "1.0.0",
            "parentImage": PARENT,
            "components": [{"componentArn": f"${{component:{n}}}"} for n in names],
            "blockDeviceMappings": [
                {
                    "deviceName": "/dev/xvda",
                    "ebs": {
                        "volumeSize": 20,
                        "volumeType": "gp3",
                        "encrypted": True,
                        "deleteOnTermination": True,
                    },
                }
            ],
        },
    )
    infra = _doc(
        "infrastructure-configuration",
        f"bake-k8s-{minor}-{release.arch}",
        "image-recipes/infrastructure.yaml",
        {
            "name": f"bake-k8s-{minor}-{release.arch}",
            "instanceProfileName": "${instance_profile}",
            "resourceTags": {"bake:managed": "true"},
        },
    )
    dist = _doc(
        "distribution-configuration",
        f"bake-k8s-{minor}-{release.arch}",
        "image-recipes/distribution.yaml",
        {
            "name": f"bake-k8s-{minor}-{release.arch}",
            "distributions": [
                {
                    "region": "${region}",
                    "amiDistributionConfiguration": {
                        "name": f"bake-k8s-{release.kubernetes_version}-"
                        "{{ imagebuilder:buildDate }}",
                        "amiTags": {"Name": "bake"},
                    },
                    "ssmParameterConfigurations": [
                        {"parameterName": "/bake/k8s/x", "dataType": "aws:ec2:image"}
                    ],
                }
            ],
        },
    )
    return ImageDocuments(release, components, recipe, infra, dist)


@pytest.fixture
def docs(release) -> ImageDocuments:
    return make_docs(release)


@pytest.fixture
def ib_stub():
    """A Stubber-wrapped ``imagebuilder`` client (no retries); asserts nothing left pending."""
    import botocore.session
    from botocore.config import Config
    from botocore.stub import Stubber

    client = botocore.session.get_session().create_client(
        "imagebuilder",
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "max_attempts": 1}),
    )
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def clients(aws, ib_stub):
    """``AwsClients`` for moto (SSM, EC2, S3) with the stubbed Image Builder client."""
    from bake.aws.session import AwsClients, AwsTarget

    return AwsClients(
        AwsTarget(region=REGION, endpoint_url=aws.endpoint, max_attempts=1),
        overrides={"imagebuilder": ib_stub.client},
    )


@pytest.fixture
def options():
    from bake.builders.imagebuilder import ImageBuilderOptions

    return ImageBuilderOptions(
        instance_types=("m7i.large",),
        subnet_id="subnet-0123456789abcdef0",
        security_group_ids=("sg-0123456789abcdef0",),
        instance_profile="bake-imagebuilder",
        log_bucket="bake-logs",
        log_prefix="imagebuilder",
        regions=(REGION,),
        target_accounts=(),
        kms_key_id="alias/bake",
        artifacts_s3=None,
        poll_seconds=0.0,
        timeout_minutes=60,
    )


ARN = f"arn:aws:imagebuilder:{REGION}:{ACCOUNT}"


def comp_arn(name: str, version: str = "1.0.0") -> str:
    """The build version ARN Image Builder gives component ``name`` at ``version``."""
    return f"{ARN}:component/{name}/{version}/1"


def stub_creates(stub, docs):
    """Answer ensure_resources on an empty account, whatever the requests (capture them with
    ``provide-client-params`` events)."""
    for doc in docs.components:
        stub.add_response("list_components", {"componentVersionList": []})
        stub.add_response("create_component", {"componentBuildVersionArn": comp_arn(doc.name)})
    stub.add_response("list_image_recipes", {"imageRecipeSummaryList": []})
    stub.add_response("create_image_recipe", {"imageRecipeArn": f"{ARN}:image-recipe/r/1.0.0"})
    stub.add_response(
        "list_infrastructure_configurations", {"infrastructureConfigurationSummaryList": []}
    )
    stub.add_response(
        "create_infrastructure_configuration",
        {"infrastructureConfigurationArn": f"{ARN}:infrastructure-configuration/i"},
    )
    stub.add_response(
        "list_distribution_configurations", {"distributionConfigurationSummaryList": []}
    )
    stub.add_response(
        "create_distribution_configuration",
        {"distributionConfigurationArn": f"{ARN}:distribution-configuration/d"},
    )
