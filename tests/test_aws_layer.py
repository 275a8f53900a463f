"""AWS only through the wrapper layers: outside ``bake/aws/`` and ``bake_node/aws/`` no module
calls a boto3 client operation or reads a botocore error code itself.

The operation names are botocore's own (every operation of the services bake and the agent
use, in boto3's snake_case). A call ``x.<operation>(...)`` is an offence when ``x`` is a boto3
client: a ``.client("...")`` call itself, or a name or ``self`` attribute assigned from one in the
module. Exempt: ``bake/lambdas/`` (a Lambda's ZipFile body runs alone, with boto3 only) and
``bake/localcluster/runcommand.py`` (boto3-shaped stand-ins *for* clients, handed to that
Lambda code on the local platform).
"""

from __future__ import annotations

import ast
from pathlib import Path

import botocore.session
import pytest
from botocore import xform_name

ROOT = Path(__file__).resolve().parents[1] / "cli"
SERVICES = (
    "autoscaling",
    "cloudformation",
    "dynamodb",
    "ec2",
    "elbv2",
    "imagebuilder",
    "kms",
    "s3",
    "ssm",
    "sts",
)
PACKAGES = ("bake", "bake_node")


def _operations() -> set[str]:
    session = botocore.session.get_session()
    names = {"get_paginator", "get_waiter"}
    for service in SERVICES:
        model = session.get_service_model(service)
        names |= {xform_name(op) for op in model.operation_names}
    return names


EXEMPT = {ROOT / "bake/localcluster/runcommand.py"}


def _modules(package: str) -> list[Path]:
    base = ROOT / package
    skip = {base / "aws", base / "lambdas"}
    return sorted(
        p for p in base.rglob("*.py") if not any(s in p.parents for s in skip) and p not in EXEMPT
    )


def _is_client_call(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "client"
    )


def _target_key(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return f"{node.value.id}.{node.attr}"
    return None


@pytest.mark.parametrize("package", PACKAGES)
def test_no_boto3_call_outside_the_wrapper_layer(package):
    operations = _operations()
    offenders = []
    for path in _modules(package):
        tree = ast.parse(path.read_text(), str(path))
        clients = set()  # names and self attributes bound to a boto3 client
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("botocore"):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports botocore")
            if isinstance(node, ast.Assign) and _is_client_call(node.value):
                clients |= {k for t in node.targets if (k := _target_key(t))}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            receiver = node.func.value
            if node.func.attr in operations and (
                _is_client_call(receiver) or _target_key(receiver) in clients
            ):
                offenders.append(
                    f"{path.relative_to(ROOT)}:{node.lineno} calls .{node.func.attr}()"
                )
    assert offenders == []


def test_a_failed_agent_call_is_one_line_with_its_code(monkeypatch):
    import boto3
    from botocore.stub import Stubber

    from bake_node.aws import AwsCallError
    from bake_node.aws import dynamodb as ddb

    client = boto3.client(
        "dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(client) as stub:
        stub.add_client_error("put_item", "AccessDeniedException", "not authorized")
        with pytest.raises(AwsCallError) as info:
            ddb.put_item(client, "lock", {"pk": {"S": "cluster"}})
        assert info.value.code == "AccessDeniedException"
        assert str(info.value) == ("dynamodb:PutItem failed: AccessDeniedException: not authorized")
        # a failed condition is an answer, not an error
        stub.add_client_error("update_item", "ConditionalCheckFailedException", "no")
        assert (
            ddb.update_if(
                client,
                "lock",
                {"pk": {"S": "x"}},
                update="SET a = :a",
                condition="attribute_not_exists(pk)",
                values={":a": {"S": "1"}},
            )
            is None
        )
