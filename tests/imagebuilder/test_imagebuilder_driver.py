"""The Image Builder driver against a Stubber-validated imagebuilder client and moto (SSM, EC2).

Every scripted request is checked by botocore against the real Image Builder model; the
status sequences script what a user sees while waiting: success, failure, cancellation and
throttling.
"""

from __future__ import annotations

import json

import pytest
from botocore.stub import ANY
from tests.imagebuilder.conftest import ACCOUNT, ARN, REGION, comp_arn, make_docs, stub_creates

from bake.builders.imagebuilder import (
    CONTENT_TAG,
    ImageBuilderDriver,
    content_sha256,
    wait_interactive,
)
from bake.errors import AwsError, BuildError, UsageError
from bake.publish import publish

IMAGE_ARN = f"{ARN}:image/bake-k8s-1-30-amd64/1.0.0/1"


def driver(clients, options, lines=None):
    lines = [] if lines is None else lines
    return ImageBuilderDriver(clients, options, lines.append, sleep=lambda s: None)


def stub_fresh_account(stub, docs, *, infra_arn=None, dist_arn=None):
    """Script ensure_resources on an account with nothing yet; returns the create requests."""
    for doc in docs.components:
        stub.add_response(
            "list_components",
            {"componentVersionList": []},
            {"owner": "Self", "filters": [{"name": "name", "values": [doc.name]}]},
        )
        stub.add_response(
            "create_component",
            {"componentBuildVersionArn": comp_arn(doc.name)},
            {
                "name": doc.name,
                "semanticVersion": "1.0.0",
                "description": ANY,
                "platform": "Linux",
                "data": doc.text,
                "tags": ANY,
                "kmsKeyId": "alias/bake",
                "clientToken": ANY,
            },
        )
    stub.add_response("list_image_recipes", {"imageRecipeSummaryList": []})
    stub.add_response(
        "create_image_recipe", {"imageRecipeArn": f"{ARN}:image-recipe/bake-k8s-1-30-amd64/1.0.0"}
    )
    stub.add_response(
        "list_infrastructure_configurations", {"infrastructureConfigurationSummaryList": []}
    )
    stub.add_response(
        "create_infrastructure_configuration",
        {
            "infrastructureConfigurationArn": (
                f"{ARN}:infrastructure-configuration/bake-k8s-1-30-amd64"
            )
        },
        {
            "name": "bake-k8s-1-30-amd64",
            "instanceTypes": ["m7i.large"],
            "instanceProfileName": "bake-imagebuilder",
            "securityGroupIds": ["sg-0123456789abcdef0"],
            "subnetId": "subnet-0123456789abcdef0",
            "terminateInstanceOnFailure": True,
            "instanceMetadataOptions": {"httpTokens": "required", "httpPutResponseHopLimit": 1},
            "logging": {"s3Logs": {"s3BucketName": "bake-logs", "s3KeyPrefix": "imagebuilder"}},
            "resourceTags": {"bake:managed": "true"},
            "tags": ANY,
            "clientToken": ANY,
        },
    )
    stub.add_response(
        "list_distribution_configurations", {"distributionConfigurationSummaryList": []}
    )
    stub.add_response(
        "create_distribution_configuration",
        {"distributionConfigurationArn": f"{ARN}:distribution-configuration/bake-k8s-1-30-amd64"},
        {
            "name": "bake-k8s-1-30-amd64",
            "description": ANY,
            "distributions": [
                {
                    "region": REGION,
                    "amiDistributionConfiguration": {
                        "name": "bake-k8s-"
                        + docs.release.kubernetes_version
                        + "-{{ imagebuilder:buildDate }}",
                        "amiTags": ANY,
                        "kmsKeyId": "alias/bake",
                    },
                }
            ],
            "tags": ANY,
            "clientToken": ANY,
        },
    )


def test_first_run_creates_every_resource_and_uploads_component_text_byte_for_byte(
    clients, ib_stub, options, docs
):
    stub_fresh_account(ib_stub, docs)
    lines: list[str] = []
    resources = driver(clients, options, lines).ensure_resources(docs)

    assert [n for n, _ in resources.components] == [d.name for d in docs.components]
    assert len(resources.created) == 6 and resources.reused == ()
    assert resources.tags["bake:kubernetes-version"] == docs.release.kubernetes_version
    assert any(line.startswith("created recipe") for line in lines)


def test_uploaded_text_is_exactly_the_rendered_document(clients, ib_stub, options, docs):
    """What Image Builder receives as component data is Document.text, unchanged."""
    sent = []
    ib_stub.client.meta.events.register(
        "provide-client-params.imagebuilder.CreateComponent",
        lambda params, **kw: sent.append(params["data"]),
    )
    stub_fresh_account(ib_stub, docs)
    driver(clients, options).ensure_resources(docs)
    assert sent == [d.text for d in docs.components]
    assert all("ünïcode" in s for s in sent)


def test_unchanged_documents_are_reused_and_configurations_updated_in_place(
    clients, ib_stub, options, docs
):
    for doc in docs.components:
        ib_stub.add_response(
            "list_components",
            {
                "componentVersionList": [
                    {
                        "arn": comp_arn(doc.name, "1.0.0").rsplit("/", 1)[0],
                        "name": doc.name,
                        "version": "1.0.0",
                    },
                    {
                        "arn": comp_arn(doc.name, "1.0.2").rsplit("/", 1)[0],
                        "name": doc.name,
                        "version": "1.0.2",
                    },
                ]
            },
        )
        ib_stub.add_response(
            "get_component",
            {
                "component": {
                    "name": doc.name,
                    "version": "1.0.2",
                    "data": doc.text,
                    "tags": {CONTENT_TAG: content_sha256(doc.text)},
                }
            },
            {"componentBuildVersionArn": comp_arn(doc.name, "1.0.2").rsplit("/", 1)[0]},
        )
    # the recipe digest depends on the ARNs; learn it from a first (fresh) computation
    recipe_arn = f"{ARN}:image-recipe/bake-k8s-1-30-amd64/1.0.7"
    captured = {}

    def capture(params, **kw):
        captured.update(params)

    ib_stub.add_response(
        "list_image_recipes",
        {"imageRecipeSummaryList": [{"arn": recipe_arn, "name": "bake-k8s-1-30-amd64"}]},
    )
    ib_stub.add_response("get_image_recipe", {"imageRecipe": {"arn": recipe_arn, "tags": {}}})
    ib_stub.add_response(
        "create_image_recipe",
        {"imageRecipeArn": f"{ARN}:image-recipe/bake-k8s-1-30-amd64/1.0.8"},
        {
            "name": "bake-k8s-1-30-amd64",
            "semanticVersion": "1.0.8",
            "description": ANY,
            "parentImage": ANY,
            "components": ANY,
            "blockDeviceMappings": ANY,
            "tags": ANY,
            "clientToken": ANY,
        },
    )
    ib_stub.client.meta.events.register(
        "provide-client-params.imagebuilder.CreateImageRecipe", capture
    )
    infra = f"{ARN}:infrastructure-configuration/bake-k8s-1-30-amd64"
    dist = f"{ARN}:distribution-configuration/bake-k8s-1-30-amd64"
    ib_stub.add_response(
        "list_infrastructure_configurations",
        {"infrastructureConfigurationSummaryList": [{"arn": infra, "name": "bake-k8s-1-30-amd64"}]},
    )
    ib_stub.add_response(
        "update_infrastructure_configuration",
        {"infrastructureConfigurationArn": infra},
        {
            "infrastructureConfigurationArn": infra,
            "instanceTypes": ["m7i.large"],
            "instanceProfileName": "bake-imagebuilder",
            "securityGroupIds": ANY,
            "subnetId": ANY,
            "terminateInstanceOnFailure": True,
            "instanceMetadataOptions": ANY,
            "logging": ANY,
            "resourceTags": ANY,
            "clientToken": ANY,
        },
    )
    ib_stub.add_response(
        "list_distribution_configurations",
        {"distributionConfigurationSummaryList": [{"arn": dist, "name": "bake-k8s-1-30-amd64"}]},
    )
    ib_stub.add_response(
        "update_distribution_configuration",
        {"distributionConfigurationArn": dist},
        {
            "distributionConfigurationArn": dist,
            "description": ANY,
            "distributions": ANY,
            "clientToken": ANY,
        },
    )
    first = driver(clients, options).ensure_resources(docs)
    # components reused at their newest version, recipe bumped 1.0.7 -> 1.0.8 (content differs)
    assert [a for _, a in first.components] == [
        comp_arn(d.name, "1.0.2").rsplit("/", 1)[0] for d in docs.components
    ]
    assert first.created == (f"{ARN}:image-recipe/bake-k8s-1-30-amd64/1.0.8",)
    assert infra in first.reused and dist in first.reused
    # and the same recipe content a second time is reused, not duplicated
    digest = captured["tags"][CONTENT_TAG]
    for doc in docs.components:
        ib_stub.add_response(
            "list_components",
            {
                "componentVersionList": [
                    {
                        "arn": comp_arn(doc.name, "1.0.2").rsplit("/", 1)[0],
                        "name": doc.name,
                        "version": "1.0.2",
                    }
                ]
            },
        )
        ib_stub.add_response(
            "get_component", {"component": {"tags": {CONTENT_TAG: content_sha256(doc.text)}}}
        )
    new_recipe = f"{ARN}:image-recipe/bake-k8s-1-30-amd64/1.0.8"
    ib_stub.add_response(
        "list_image_recipes",
        {"imageRecipeSummaryList": [{"arn": new_recipe, "name": "bake-k8s-1-30-amd64"}]},
    )
    ib_stub.add_response(
        "get_image_recipe", {"imageRecipe": {"arn": new_recipe, "tags": {CONTENT_TAG: digest}}}
    )
    ib_stub.add_response(
        "list_infrastructure_configurations",
        {"infrastructureConfigurationSummaryList": [{"arn": infra, "name": "bake-k8s-1-30-amd64"}]},
    )
    ib_stub.add_response(
        "update_infrastructure_configuration", {"infrastructureConfigurationArn": infra}
    )
    ib_stub.add_response(
        "list_distribution_configurations",
        {"distributionConfigurationSummaryList": [{"arn": dist, "name": "bake-k8s-1-30-amd64"}]},
    )
    ib_stub.add_response(
        "update_distribution_configuration", {"distributionConfigurationArn": dist}
    )
    second = driver(clients, options).ensure_resources(docs)
    assert second.created == () and second.recipe_arn == new_recipe


def test_changed_component_gets_the_next_patch_version(clients, ib_stub, options, release):
    docs = make_docs(release, marker="v2")
    doc = docs.components[0]
    ib_stub.add_response(
        "list_components",
        {
            "componentVersionList": [
                {"arn": f"{ARN}:component/{doc.name}/1.0.3", "name": doc.name, "version": "1.0.3"}
            ]
        },
    )
    ib_stub.add_response(
        "get_component", {"component": {"data": "old", "tags": {CONTENT_TAG: "0" * 64}}}
    )
    ib_stub.add_response(
        "create_component",
        {"componentBuildVersionArn": comp_arn(doc.name, "1.0.4")},
        {
            "name": doc.name,
            "semanticVersion": "1.0.4",
            "description": ANY,
            "platform": "Linux",
            "data": doc.text,
            "tags": ANY,
            "kmsKeyId": "alias/bake",
            "clientToken": ANY,
        },
    )
    # then AccessDenied on the next component: the new version is deleted again
    ib_stub.add_client_error(
        "list_components",
        "AccessDeniedException",
        "User is not authorized to perform: imagebuilder:ListComponents",
        http_status_code=403,
    )
    ib_stub.add_response(
        "delete_component", {}, {"componentBuildVersionArn": comp_arn(doc.name, "1.0.4")}
    )
    with pytest.raises(AwsError, match=r"imagebuilder:ListComponents") as info:
        driver(clients, options).ensure_resources(docs)
    assert "grant imagebuilder:ListComponents" in info.value.format_message()


def test_failed_rollback_names_what_was_left(clients, ib_stub, options, docs):
    doc = docs.components[0]
    ib_stub.add_response("list_components", {"componentVersionList": []})
    ib_stub.add_response("create_component", {"componentBuildVersionArn": comp_arn(doc.name)})
    ib_stub.add_client_error(
        "list_components", "ServiceQuotaExceededException", "too many components"
    )
    ib_stub.add_client_error("delete_component", "ServiceUnavailableException", "try later")
    with pytest.raises(AwsError) as info:
        driver(clients, options).ensure_resources(docs)
    message = info.value.format_message()
    assert "quota" in message and f"created and NOT removed: {comp_arn(doc.name)}" in message


def test_missing_instance_profile_fails_before_any_call(clients, options, docs):
    from dataclasses import replace

    with pytest.raises(UsageError, match="--instance-profile"):
        driver(clients, replace(options, instance_profile="")).ensure_resources(docs)


def test_unknown_parent_image_is_one_clear_line(clients, options, docs):
    from dataclasses import replace

    recipe = replace(
        docs.recipe, data={**docs.recipe.data, "parentImage": "ssm:/bake/test/no-such-parent"}
    )
    with pytest.raises(UsageError, match="unknown parent image ssm:/bake/test/no-such-parent"):
        driver(clients, options).ensure_resources(replace(docs, recipe=recipe))
    recipe = replace(docs.recipe, data={**docs.recipe.data, "parentImage": "ami-0123456789abcdef0"})
    with pytest.raises(UsageError, match="unknown parent image ami-0123456789abcdef0"):
        driver(clients, options).ensure_resources(replace(docs, recipe=recipe))


# ---------------------------------------------------------------- waiting


def image(status, reason=None, amis=()):
    state = {"status": status, **({"reason": reason} if reason else {})}
    out = {"image": {"arn": IMAGE_ARN, "state": state}}
    if amis:
        out["image"]["outputResources"] = {
            "amis": [{"region": r, "image": i, "accountId": ACCOUNT} for r, i in amis]
        }
    return out


def steps(stub, *items):
    stub.add_response(
        "list_workflow_executions",
        {"workflowExecutions": [{"workflowExecutionId": "wf-build", "type": "BUILD"}]}
        if items
        else {"workflowExecutions": []},
    )
    if items:
        stub.add_response(
            "list_workflow_step_executions",
            {
                "steps": [
                    {"name": n, "status": s, **({"message": m} if m else {})} for n, s, m in items
                ]
            },
        )


def test_wait_reports_transitions_and_steps_until_available(clients, ib_stub, options):
    ib_stub.add_response("get_image", image("PENDING"), {"imageBuildVersionArn": IMAGE_ARN})
    steps(ib_stub)
    ib_stub.add_response("get_image", image("BUILDING"))
    steps(
        ib_stub,
        ("LaunchBuildInstance", "COMPLETED", None),
        ("ApplyBuildComponents", "RUNNING", None),
    )
    ib_stub.add_client_error(
        "get_image", "ThrottlingException", "Rate exceeded", http_status_code=400
    )
    ib_stub.add_response("get_image", image("TESTING"))
    steps(
        ib_stub,
        ("LaunchBuildInstance", "COMPLETED", None),
        ("ApplyBuildComponents", "COMPLETED", None),
    )
    ib_stub.add_response("get_image", image("AVAILABLE", amis=[(REGION, "ami-0aaaaaaaaaaaaaaaa")]))
    steps(
        ib_stub,
        ("LaunchBuildInstance", "COMPLETED", None),
        ("ApplyBuildComponents", "COMPLETED", None),
    )
    lines: list[str] = []
    result = driver(clients, options, lines).wait(IMAGE_ARN)
    assert [a.image_id for a in result.amis] == ["ami-0aaaaaaaaaaaaaaaa"]
    text = "\n".join(lines)
    for expected in (
        "PENDING",
        "BUILDING",
        "TESTING",
        "AVAILABLE",
        "throttled",
        "build step ApplyBuildComponents: RUNNING",
        "build step ApplyBuildComponents: COMPLETED",
    ):
        assert expected in text
    assert lines[0].startswith("[00:00]")


def test_failed_build_names_reason_step_and_logs_and_publishes_nothing(clients, ib_stub, options):
    ib_stub.add_response("get_image", image("BUILDING"))
    steps(ib_stub)
    ib_stub.add_response("get_image", image("FAILED", reason="Component bake-kubernetes failed"))
    steps(
        ib_stub,
        ("LaunchBuildInstance", "COMPLETED", None),
        ("ApplyBuildComponents", "FAILED", "sha256 mismatch for kubeadm"),
    )
    with pytest.raises(BuildError) as info:
        driver(clients, options).wait(IMAGE_ARN)
    message = info.value.format_message()
    assert "Component bake-kubernetes failed" in message
    assert "build step ApplyBuildComponents" in message and "sha256 mismatch" in message
    assert "s3://bake-logs/imagebuilder/bake-k8s-1-30-amd64/1.0.0/1/" in message
    assert "nothing was published" in message
    from bake.aws import ssm

    assert ssm.list_by_path(clients.client("ssm"), "/bake/k8s") == []


def test_ctrl_c_asks_and_cancels(clients, ib_stub, options):
    calls = []

    def interrupted_sleep(seconds):
        raise KeyboardInterrupt

    ib_stub.add_response("get_image", image("BUILDING"))
    steps(ib_stub)
    ib_stub.add_response(
        "cancel_image_creation",
        {"imageBuildVersionArn": IMAGE_ARN},
        {"imageBuildVersionArn": IMAGE_ARN, "clientToken": ANY},
    )
    d = ImageBuilderDriver(clients, options, calls.append, sleep=interrupted_sleep)
    with pytest.raises(BuildError, match="cancelled; nothing was published"):
        wait_interactive(d, IMAGE_ARN, confirm=lambda q: calls.append(q) or True)
    assert any("cancel the build" in c for c in calls)


def test_cancelled_build_ends_the_wait(clients, ib_stub, options):
    ib_stub.add_response("get_image", image("CANCELLED"))
    steps(ib_stub)
    with pytest.raises(BuildError, match="ended CANCELLED"):
        driver(clients, options).wait(IMAGE_ARN)


def test_start_build_quota_error_is_one_line(clients, ib_stub, options):
    from bake.builders.imagebuilder import Resources

    ib_stub.add_client_error(
        "create_image", "ServiceQuotaExceededException", "Concurrent builds limit reached"
    )
    with pytest.raises(AwsError, match="quota reached for imagebuilder:CreateImage"):
        driver(clients, options).start_build(Resources((), "r", "i", "d"))


def test_publish_after_available_writes_labelled_ssm_parameter(clients, options, release):
    from bake.aws import ec2, ssm
    from bake.builders.imagebuilder import AmiOutput, BuildResult, BuildStatus

    image_id = ec2.register_image(
        clients.client("ec2"), name="ib-output", description="", arch="amd64", tags={}
    )
    status = BuildStatus(IMAGE_ARN, "AVAILABLE")
    result = BuildResult(IMAGE_ARN, (AmiOutput(REGION, image_id, ACCOUNT),), 1.0, status)
    built = driver(clients, options).built_image(result, release)
    published = [p.to_json() for p in publish(clients, built)]
    name = f"/bake/k8s/{release.minor}/{release.os}/{release.arch}/image_id"
    assert published[0]["ssm_parameter"] == name
    hist = ssm.history(clients.client("ssm"), name)
    assert hist[-1].value == image_id and f"v{release.kubernetes_version}" in hist[-1].labels
    tags = ec2.describe_image(clients.client("ec2"), image_id)["Tags"]
    assert {"Key": "bake:managed", "Value": "true"} in tags


@pytest.mark.parametrize("os_name", ["debian-12", "ubuntu-24.04", "al2023"])
def test_real_rendered_documents_reach_image_builder_byte_for_byte(
    clients, ib_stub, options, release, tmp_path, os_name
):
    """bake.render's documents (what `bake ami --local` runs) are what Image Builder receives,
    for every OS family (the requests checked by botocore against the imagebuilder model)."""
    from dataclasses import replace

    from bake.render import RenderOptions, render_image_documents

    docs = render_image_documents(replace(release, os=os_name), RenderOptions())
    docs = replace(
        docs, recipe=replace(docs.recipe, data={**docs.recipe.data, "parentImage": PARENT_ARN})
    )
    written = {p.name: p.read_bytes() for p in docs.write(tmp_path / "out")}
    sent: list[str] = []
    recipe: dict = {}
    infra: dict = {}
    dist: dict = {}
    events = ib_stub.client.meta.events
    events.register(
        "provide-client-params.imagebuilder.CreateComponent",
        lambda params, **kw: sent.append(params["data"]),
    )
    events.register(
        "provide-client-params.imagebuilder.CreateImageRecipe",
        lambda params, **kw: recipe.update(params),
    )
    events.register(
        "provide-client-params.imagebuilder.CreateInfrastructureConfiguration",
        lambda params, **kw: infra.update(params),
    )
    events.register(
        "provide-client-params.imagebuilder.CreateDistributionConfiguration",
        lambda params, **kw: dist.update(params),
    )
    stub_creates(ib_stub, docs)
    no_kms = replace(options, kms_key_id=None, instance_types=())
    driver(clients, no_kms).ensure_resources(docs)

    assert sent == [d.text for d in docs.components]
    for doc in docs.components:
        assert written[doc.path.rsplit("/", 1)[-1]] == doc.text.encode()
    assert [c["componentArn"] for c in recipe["components"]] == [
        comp_arn(d.name) for d in docs.components
    ]
    assert "kmsKeyId" not in recipe["blockDeviceMappings"][0]["ebs"]  # account default EBS key
    assert recipe["blockDeviceMappings"][0]["ebs"]["encrypted"] is True
    assert infra["instanceTypes"] == docs.infrastructure.data["instanceTypes"]
    assert infra["instanceMetadataOptions"]["httpTokens"] == "required"
    assert infra["securityGroupIds"] == ["sg-0123456789abcdef0"]
    assert [d["region"] for d in dist["distributions"]] == [REGION]
    assert "ssmParameterConfigurations" not in dist["distributions"][0]  # bake publishes, labelled
    assert "${" not in json.dumps([recipe, infra, dist])


PARENT_ARN = f"arn:aws:imagebuilder:{REGION}:aws:image/debian-12-x86/x.x.x"


def test_offline_build_needs_s3_sources_and_vpc_endpoints(clients, options, docs, release):
    from dataclasses import replace

    from bake.render import RenderOptions, render_image_documents

    ec2_client = clients.client("ec2")
    vpc = ec2_client.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2_client.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    offline = replace(options, artifacts_s3="s3://bake-artifacts/offline", subnet_id=subnet)

    web = render_image_documents(release, RenderOptions())  # WebDownload from upstream
    with pytest.raises(UsageError, match="still download from the internet"):
        driver(clients, offline).ensure_resources(web)

    for service in ("ssm", "imagebuilder"):
        ec2_client.create_vpc_endpoint(
            VpcId=vpc,
            ServiceName=f"com.amazonaws.{REGION}.{service}",
            VpcEndpointType="Interface",
            SubnetIds=[subnet],
        )
    with pytest.raises(UsageError) as info:
        driver(clients, offline).ensure_resources(docs)
    message = info.value.format_message()
    assert f"subnet {subnet} (VPC {vpc})" in message
    for missing in ("ssmmessages", "ec2messages", "s3"):
        assert f"com.amazonaws.{REGION}.{missing}" in message
    assert f"com.amazonaws.{REGION}.ssm," not in message


def test_whole_bake_publishes_only_after_available(clients, ib_stub, options, docs):
    from dataclasses import replace

    from bake.aws import ec2, ssm
    from bake.builders.imagebuilder import bake_with_image_builder

    image_id = ec2.register_image(
        clients.client("ec2"), name="ib-out", description="", arch="amd64", tags={}
    )
    stub_fresh_account(ib_stub, docs)
    ib_stub.add_response("create_image", {"imageBuildVersionArn": IMAGE_ARN})
    ib_stub.add_response("get_image", image("BUILDING"))
    steps(ib_stub)
    ib_stub.add_response("get_image", image("AVAILABLE", amis=[(REGION, image_id)]))
    steps(ib_stub)
    lines: list[str] = []
    outcome = bake_with_image_builder(driver(clients, options, lines), docs)
    name = f"/bake/k8s/{docs.release.minor}/{docs.release.os}/{docs.release.arch}/image_id"
    assert outcome.publications[0]["ssm_parameter"] == name
    assert ssm.get_parameter(clients.client("ssm"), name).value == image_id
    assert outcome.to_json()["amis"][0]["image_id"] == image_id

    # --no-wait: returns the ARN right after CreateImage, publishes nothing
    clients.client("ssm").delete_parameter(Name=name)
    stub_fresh_account(ib_stub, docs)
    ib_stub.add_response("create_image", {"imageBuildVersionArn": IMAGE_ARN})
    outcome = bake_with_image_builder(driver(clients, replace(options, wait=False)), docs)
    assert outcome.image_arn == IMAGE_ARN and outcome.publications == ()
    assert ssm.get_parameter(clients.client("ssm"), name) is None


def test_wait_on_a_started_build_publishes_it_like_bake_ami(clients, ib_stub, options):
    """`bake ami --no-wait` then `bake ami wait ARN`: the release comes from the build's bake
    tags and the AMI is published exactly as a waited bake would; a build without those tags
    is not bake's to publish (one line, nothing written)."""
    from bake.aws import ec2, ssm
    from bake.builders.imagebuilder import publish_when_done
    from bake.errors import UsageError
    from bake.tags import release_tags

    image_id = ec2.register_image(
        clients.client("ec2"), name="ib-out", description="", arch="arm64", tags={}
    )
    available = image("AVAILABLE", amis=[(REGION, image_id)])
    available["image"]["tags"] = release_tags("1.31.2", "arm64", "debian-12")
    ib_stub.add_response("get_image", available)
    steps(ib_stub)
    result = publish_when_done(driver(clients, options), IMAGE_ARN)
    name = "/bake/k8s/1.31/debian-12/arm64/image_id"
    assert result.ssm_parameter == name and result.label == "v1.31.2"
    assert ssm.get_parameter(clients.client("ssm"), name).value == image_id
    assert result.image_arn == IMAGE_ARN and result.builder == "imagebuilder"
    tags = clients.client("ec2").describe_images(ImageIds=[image_id])["Images"][0]["Tags"]
    assert {"Key": "bake:image-builder-arn", "Value": IMAGE_ARN} in tags

    clients.client("ssm").delete_parameter(Name=name)
    ib_stub.add_response("get_image", image("AVAILABLE", amis=[(REGION, image_id)]))
    steps(ib_stub)
    with pytest.raises(UsageError, match="was not started by bake ami"):
        publish_when_done(driver(clients, options), IMAGE_ARN)
    assert ssm.get_parameter(clients.client("ssm"), name) is None


def test_throttled_create_beyond_retries_rolls_back(clients, ib_stub, options, docs):
    first = docs.components[0]
    ib_stub.add_response("list_components", {"componentVersionList": []})
    ib_stub.add_response("create_component", {"componentBuildVersionArn": comp_arn(first.name)})
    ib_stub.add_response("list_components", {"componentVersionList": []})
    ib_stub.add_client_error("create_component", "ThrottlingException", "Rate exceeded")
    ib_stub.add_response("delete_component", {}, {"componentBuildVersionArn": comp_arn(first.name)})
    with pytest.raises(AwsError, match="throttled imagebuilder:CreateComponent"):
        driver(clients, options).ensure_resources(docs)


def test_ctrl_c_without_cancel_leaves_the_build_running(clients, ib_stub, options):
    def interrupted_sleep(seconds):
        raise KeyboardInterrupt

    ib_stub.add_response("get_image", image("BUILDING"))
    steps(ib_stub)
    d = ImageBuilderDriver(clients, options, lambda line: None, sleep=interrupted_sleep)
    with pytest.raises(BuildError, match=f"the build continues: `bake ami wait {IMAGE_ARN}`"):
        wait_interactive(d, IMAGE_ARN, confirm=lambda q: False)


def test_every_region_gets_a_distribution_and_an_ssm_parameter(
    aws, clients, options, release, docs
):
    from dataclasses import replace

    from bake.aws import ec2, ssm
    from bake.aws.session import AwsClients, AwsTarget
    from bake.builders.imagebuilder import AmiOutput, BuildResult, BuildStatus

    two = replace(options, regions=(REGION, "eu-west-1"), target_accounts=("210987654321",))
    request = driver(clients, two).distribution_request(
        docs, driver(clients, two).placeholder_values(docs)
    )
    assert [d["region"] for d in request["distributions"]] == [REGION, "eu-west-1"]
    ami = request["distributions"][1]["amiDistributionConfiguration"]
    assert ami["targetAccountIds"] == ["210987654321"]
    assert ami["launchPermission"] == {"userIds": ["210987654321"]}

    eu = AwsClients(AwsTarget(region="eu-west-1", endpoint_url=aws.endpoint))
    ids = {
        r: ec2.register_image(c.client("ec2"), name="out", description="", arch="amd64", tags={})
        for r, c in ((REGION, clients), ("eu-west-1", eu))
    }
    amis = tuple(AmiOutput(r, i, ACCOUNT) for r, i in ids.items()) + (
        AmiOutput("eu-west-1", "ami-0ffffffffffffffff", "210987654321"),  # the target's copy
    )
    result = BuildResult(IMAGE_ARN, amis, 1.0, BuildStatus(IMAGE_ARN, "AVAILABLE"))
    built = driver(clients, two).built_image(result, release)
    published = [p.to_json() for p in publish(clients, built)]
    assert [(p["region"], p["image_id"]) for p in published] == list(ids.items())
    name = published[0]["ssm_parameter"]
    assert ssm.get_parameter(eu.client("ssm"), name).value == ids["eu-west-1"]
