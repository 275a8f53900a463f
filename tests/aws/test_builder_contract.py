"""One builder contract: every builder goes through ``bake.publish.build_and_publish`` and
yields the one result type, ``AmiResult``; a failure after the build leaves nothing published
and nothing staged, whichever step failed."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bake.builders.contract import Builder
from bake.errors import AwsError, BuildError
from bake.publish import AmiResult, build_and_publish

PARAMETER = "/bake/k8s/1.30/debian-12/amd64/image_id"


class FakeBuilder:
    """A builder that hands over ``image`` and records what the pipeline asked of it."""

    name = "fake"

    def __init__(self, image, commit_error: Exception | None = None) -> None:
        self.image = image
        self.commit_error = commit_error
        self.calls: list[str] = []

    def preflight(self) -> None:
        self.calls.append("preflight")

    def build(self, documents):
        self.calls.append("build")
        return self.image

    def commit(self, image, publications):
        self.calls.append("commit")
        if self.commit_error:
            raise self.commit_error
        return replace(image, details={"committed": publications[0].image_id})

    def discard(self, image) -> None:
        self.calls.append("discard")


def test_both_builders_meet_the_one_contract():
    from bake.builders.imagebuilder import InImageBuilder
    from bake.builders.local.machine import OnThisMachine

    members = [m for m in vars(Builder) if not m.startswith("_")] + ["name"]
    for builder in (OnThisMachine, InImageBuilder):
        for member in set(members):
            assert hasattr(builder, member), (builder.__name__, member)
    assert {OnThisMachine.name, InImageBuilder.name} == {"local", "imagebuilder"}


def test_build_publish_commit_is_one_result(clients, publish_request):
    builder = FakeBuilder(publish_request(details={"local": {"disk": "/x/disk.raw"}}))
    result = build_and_publish(builder, None, clients)
    assert builder.calls == ["build", "commit"]
    assert isinstance(result, AmiResult)
    value = clients.client("ssm").get_parameter(Name=PARAMETER)["Parameter"]["Value"]
    assert result.image_id == value and result.ssm_parameter == PARAMETER
    assert result.label == "v1.30.12"
    summary = result.to_json()
    assert summary["builder"] == "fake" and summary["committed"] == value
    assert summary["amis"] == [{"region": "us-east-1", "image_id": value, "account_id": ""}]
    assert summary["publications"][0]["parameter_version"] == 1


def test_a_build_only_started_publishes_nothing(clients, publish_request):
    builder = FakeBuilder(publish_request(amis=(), details={"image_arn": "arn:x:image/b/1/1"}))
    result = build_and_publish(builder, None, clients)
    assert builder.calls == ["build"]
    assert result.publications == () and result.image_id is None
    assert result.image_arn == "arn:x:image/b/1/1"
    assert clients.client("ssm").describe_parameters()["Parameters"] == []


def test_a_failed_commit_unpublishes_and_discards(clients, publish_request):
    builder = FakeBuilder(publish_request(), commit_error=BuildError("image exists already"))
    with pytest.raises(BuildError, match="image exists already"):
        build_and_publish(builder, None, clients)
    assert builder.calls == ["build", "commit", "discard"]
    assert clients.client("ssm").describe_parameters()["Parameters"] == []
    images = clients.client("ec2").describe_images(Owners=["self"])["Images"]
    assert [i for i in images if i["State"] != "deregistered"] == []


def test_a_failed_publication_discards_the_build(clients, publish_request, fail_call):
    builder = FakeBuilder(publish_request())
    fail_call(clients.client("ssm"), "PutParameter", "AccessDeniedException")
    with pytest.raises(AwsError):
        build_and_publish(builder, None, clients)
    assert builder.calls == ["build", "discard"]
