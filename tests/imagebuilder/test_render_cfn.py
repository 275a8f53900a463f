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
    # one component per baked add-on takes the template over CloudFormation's 51,200-byte
    # inline limit: the header says to deploy through S3, which takes up to 1 MB (CloudFormation
    # quotas, "Template body size in an Amazon S3 object")
    size = len(text.encode())
    assert size <= 1_048_576
    assert ("--s3-bucket BUCKET" in text.splitlines()[1]) == (size > 51_200), text[:400]


def test_golden_cloudformation(rendered, golden):
    golden.check(GOLDEN.parent, {GOLDEN.name: rendered[1]})


@pytest.mark.parametrize("os_name", ["ubuntu-22.04", "ubuntu-24.04", "al2023"])
def test_other_oses_pass_cfn_lint(os_name, tmp_path):
    """The CloudFormation form of the other OSes (issue 13): valid, named without the dot Image
    Builder names refuse, with the OS's parent image as the default; a template over the inline
    limit says to deploy it through an S3 bucket."""
    from bake.catalog import load_catalog, resolve
    from bake.oses import load_os
    from bake.render import RenderOptions, render_image_documents
    from bake.render_cfn import render_cloudformation

    docs = render_image_documents(resolve(load_catalog(), "1.30.12", "arm64", os_name),
                                  RenderOptions())
    text = render_cloudformation(docs)
    path = tmp_path / "imagebuilder.yaml"
    path.write_text(text)
    lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run([str(lint), str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    deploy = text.splitlines()[1]
    if len(text.encode()) > 51_200:
        assert deploy == "# aws cloudformation deploy --template-file THIS --s3-bucket BUCKET \\"
    else:
        assert deploy == "# aws cloudformation deploy --template-file THIS \\"
    template = yaml.safe_load(text)
    assert template["Parameters"]["ParentImage"]["Default"] == (
        load_os(os_name).parent_image_for("arm64"))
    recipe = template["Resources"]["ImageRecipe"]["Properties"]
    assert "." not in recipe["Name"]
