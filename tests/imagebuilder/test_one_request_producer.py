"""What ``bake render ami`` shows is what the Image Builder driver sends.

The recipe, infrastructure and distribution bodies have one producer
(``bake.imagebuilder_requests``). Here the files a user gets from ``bake render ami`` are read
back, their ``${...}`` placeholders filled with the values of a build, and compared with the
requests the driver hands to botocore (captured before they are sent; botocore's Stubber checks
each against the service model). The only fields the driver adds are the recipe's
``bake:content-sha256`` tag (how it finds an unchanged recipe again) and the idempotency
``clientToken``; on an account without the recipe its version is the rendered ``1.0.0`` (a
changed recipe later gets the next patch: recipes are immutable).
"""

from __future__ import annotations

import json
from dataclasses import replace

import yaml
from tests.imagebuilder.conftest import REGION, comp_arn, stub_creates
from tests.imagebuilder.test_imagebuilder_driver import driver

from bake.catalog import load_catalog, resolve
from bake.imagebuilder_requests import (
    REVIEW,
    distribution_request,
    infrastructure_request,
    recipe_request,
)
from bake.render import LOG_PREFIX, RenderOptions, render_image_documents
from bake.tags import CONTENT_TAG

CALLS = {
    "CreateImageRecipe": "image-recipes/image-recipe.yaml",
    "CreateInfrastructureConfiguration": "image-recipes/infrastructure-configuration.yaml",
    "CreateDistributionConfiguration": "image-recipes/distribution-configuration.yaml",
}


def _drop_unset(data):
    from bake.builders.imagebuilder.requests import _drop_none

    return _drop_none(data)


def test_rendered_bodies_are_the_producers_review_bodies():
    """The templates render exactly what the producer gives for placeholder settings, so no
    field of a reviewed body is changed on the way to Image Builder."""
    docs = render_image_documents(resolve(load_catalog(), "1.30.12", "amd64"), RenderOptions())
    release = docs.release
    assert recipe_request(docs.recipe.data, REVIEW) == docs.recipe.data
    assert (
        infrastructure_request(docs.infrastructure.data, release, REVIEW, "x")
        == docs.infrastructure.data
    )
    assert (
        distribution_request(docs.distribution.data, release, REVIEW, "x")
        == docs.distribution.data
    )
    assert "ssmParameterConfigurations" not in json.dumps(docs.distribution.data)
    assert docs.ssm_parameter == "/bake/k8s/1.30/debian-12/amd64/image_id"


def test_bake_render_ami_files_filled_in_are_the_sent_requests(
    run_bake, tmp_path, clients, ib_stub, options, monkeypatch
):
    result = run_bake("render", "ami", "--k8s", "1.30.12", "--arch", "amd64", "-o", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    files = {rel: yaml.safe_load((tmp_path / rel).read_text()) for rel in CALLS.values()}

    # the build `bake ami` runs with its defaults for instance types and log prefix
    build = replace(options, instance_types=(), log_prefix=LOG_PREFIX)
    docs = render_image_documents(resolve(load_catalog(), "1.30.12", "amd64"), RenderOptions())
    sent: dict[str, dict] = {}
    for call in CALLS:
        ib_stub.client.meta.events.register(
            f"provide-client-params.imagebuilder.{call}",
            lambda params, call=call, **kw: sent.__setitem__(call, dict(params)),
        )
    stub_creates(ib_stub, docs)
    d = driver(clients, build)
    # moto has no Debian public parameters (and refuses to create /aws/ ones): the parent
    # image check is not what this test is about
    monkeypatch.setattr(d, "check_parent_image", lambda parent: None)
    d.ensure_resources(docs)

    from bake.builders.imagebuilder import fill_placeholders

    values = {
        **d.placeholder_values(docs),
        **{f"component:{doc.name}": comp_arn(doc.name) for doc in docs.components},
    }
    for call, rel in CALLS.items():
        body = {k: v for k, v in sent[call].items() if k != "clientToken"}
        if call == "CreateImageRecipe":
            assert len(body["tags"].pop(CONTENT_TAG)) == 64
        assert body == _drop_unset(fill_placeholders(files[rel], values)), rel
    regions = [r["region"] for r in sent["CreateDistributionConfiguration"]["distributions"]]
    assert regions == [REGION]
