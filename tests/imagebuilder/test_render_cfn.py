"""``bake.render_cfn``: the Image Builder resources as a CloudFormation template.

Checked with cfn-lint (the real linter, with the CloudFormation resource specs), against a
golden file (tests/imagebuilder/golden/; ``make golden`` rewrites it), and for byte-exact
component documents.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

GOLDEN = Path(__file__).parent / "golden" / "cloudformation-1.30.12-amd64.yaml"


@pytest.fixture(scope="module")
def rendered():
    from bake.catalog import load_catalog, resolve
    from bake.render import RenderOptions, render_image_documents
    from bake.render_cfn import render_cloudformation

    docs = render_image_documents(resolve(load_catalog(), "1.30.12", "amd64"), RenderOptions())
    return docs, render_cloudformation(docs)


def test_template_passes_cfn_lint(rendered, tmp_path):
    path = tmp_path / "imagebuilder.yaml"
    path.write_text(rendered[1])
    lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run([str(lint), str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_components_are_the_rendered_documents_byte_for_byte(rendered):
    docs, text = rendered
    resources = yaml.safe_load(text)["Resources"]
    data = [
        r["Properties"]["Data"]
        for r in resources.values()
        if r["Type"] == "AWS::ImageBuilder::Component"
    ]
    assert data == [d.text for d in docs.components]
    recipe = resources["ImageRecipe"]["Properties"]
    assert [c["ComponentArn"]["Ref"] for c in recipe["Components"]] == [
        k for k, r in resources.items() if r["Type"] == "AWS::ImageBuilder::Component"
    ]
    infra = resources["InfrastructureConfiguration"]["Properties"]
    assert infra["InstanceMetadataOptions"]["HttpTokens"] == "required"
    assert infra["TerminateInstanceOnFailure"] is True
    assert recipe["BlockDeviceMappings"][0]["Ebs"]["Encrypted"] is True
    assert len(text.encode()) <= 51_200, "over the inline template limit: deploy from S3"


def test_golden_cloudformation(rendered, golden):
    golden.check(GOLDEN.parent, {GOLDEN.name: rendered[1]})
