"""Every boto3 client bake builds honours ``AWS_ENDPOINT_URL`` and ``--endpoint-url``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bake.aws.session import AwsClients, AwsTarget, target_from_options
from bake.context import GlobalOptions
from bake.publish import publish

SERVICES = ["ec2", "ssm", "imagebuilder", "s3", "kms", "iam", "sts", "cloudformation",
            "autoscaling", "dynamodb", "elbv2"]


@pytest.mark.parametrize("service", SERVICES)
def test_clients_honour_aws_endpoint_url(service, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4599")
    client = AwsClients(AwsTarget(region="us-east-1")).client(service)
    assert client.meta.endpoint_url == "http://127.0.0.1:4599"


@pytest.mark.parametrize("service", SERVICES)
def test_endpoint_url_option_wins_over_the_environment(service, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4599")
    options = GlobalOptions(endpoint_url="http://127.0.0.1:4600", region="eu-west-1")
    client = AwsClients(target_from_options(options)).client(service)
    assert client.meta.endpoint_url == "http://127.0.0.1:4600"
    assert client.meta.region_name == "eu-west-1"


def test_images_list_through_aws_endpoint_url(aws, clients, publish_request, run_bake,
                                              monkeypatch):
    pub = publish(clients, publish_request())[0]
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint)
    result = run_bake("images", "list", "--output", "json")
    assert result.exit_code == 0, result.stderr
    assert [i["image_id"] for i in json.loads(result.stdout)["images"]] == [pub.image_id]


def test_sandbox_target_passes_credentials_without_touching_the_environment(monkeypatch):
    from bake.sandbox import Sandbox, sandbox_target

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var)
    before = dict(os.environ)
    sbx = Sandbox(pid=1, port=4601, endpoint="http://127.0.0.1:4601", started="x")
    clients = AwsClients(sandbox_target(sbx))
    client = clients.client("ssm")
    assert client.meta.endpoint_url == "http://127.0.0.1:4601"
    assert client.meta.region_name == "us-east-1"
    assert clients.session().get_credentials().access_key == "testing"
    assert dict(os.environ) == before


def test_command_modules_do_not_import_boto3():
    code = ("import sys, bake.main, bake.commands.images, bake.commands.sandbox, bake.sandbox; "
            "print('boto3' in sys.modules, 'moto' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "False"]
