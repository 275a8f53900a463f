"""The config phase: node.yaml against its schema (built-in validator agrees with jsonschema)
and the semantic rules (overlapping CIDRs)."""

from __future__ import annotations

import jsonschema
import pytest
import yaml

from bake_node.config import load_config, load_schema, parse_config, schema_errors
from bake_node.errors import ConfigError

GOOD = {
    "apiVersion": "bake.node/v1",
    "clusterName": "demo",
    "role": "control-plane",
    "region": "us-east-1",
    "controlPlaneEndpoint": "demo-api-0123.elb.us-east-1.amazonaws.com:6443",
    "lockTable": "bake-demo",
    "ssmPrefix": "/bake/clusters/demo",
    "kmsKeyId": "alias/bake-demo",
    "podCIDR": "10.244.0.0/16",
    "serviceCIDR": "10.96.0.0/12",
    "vpcCIDR": "10.0.0.0/16",
    "cni": "flannel",
    "kubernetesVersion": "1.30.12",
    "endpoints": {},
}

BAD_SCHEMA = [
    (
        "missing-role",
        {k: v for k, v in GOOD.items() if k != "role"},
        "missing required field 'role'",
    ),
    ("bad-role", {**GOOD, "role": "master"}, "role: must be one of"),
    ("unknown-field", {**GOOD, "token": "abc"}, "token: unknown field"),
    ("bad-name", {**GOOD, "clusterName": "Demo_1"}, "clusterName"),
    ("no-port", {**GOOD, "controlPlaneEndpoint": "demo-api"}, "controlPlaneEndpoint"),
    ("bad-endpoint-url", {**GOOD, "endpoints": {"ssm": "ftp://x"}}, "endpoints.ssm"),
    ("wrong-type", {**GOOD, "podCIDR": 10}, "podCIDR: must be a string"),
    ("token-ttl-low", {**GOOD, "bootstrapTokenTTLSeconds": 60},
     "bootstrapTokenTTLSeconds: must be at least 900, got 60"),
    ("token-ttl-high", {**GOOD, "bootstrapTokenTTLSeconds": 90000},
     "bootstrapTokenTTLSeconds: must be at most 86400"),
    ("token-ttl-text", {**GOOD, "bootstrapTokenTTLSeconds": "15m"},
     "bootstrapTokenTTLSeconds: must be an integer"),
    ("token-ttl-bool", {**GOOD, "bootstrapTokenTTLSeconds": True},
     "bootstrapTokenTTLSeconds: must be an integer"),
    ("unknown-addon", {**GOOD, "addons": {"weave": {}}}, "addons"),
    ("addon-settings-not-a-mapping", {**GOOD, "addons": {"metrics-server": True}},
     "addons.metrics-server: must be an object"),
    ("cloud-provider-other", {**GOOD, "cloudProvider": "aws"}, "cloudProvider: must be one of"),
]


def test_doc_example_is_valid():
    assert parse_config(GOOD).endpoint_host == "demo-api-0123.elb.us-east-1.amazonaws.com"
    assert parse_config(GOOD).bootstrap_token_ttl_s == 1800  # the default
    assert parse_config({**GOOD, "bootstrapTokenTTLSeconds": 900}).bootstrap_token_ttl_s == 900
    with_addons = parse_config({**GOOD, "cloudProvider": "external", "addons": {
        "metrics-server": {}, "local-path-provisioner": {"defaultStorageClass": True}}})
    assert with_addons.cloud_provider == "external"
    assert with_addons.addons == (("local-path-provisioner", (("defaultStorageClass", True),)),
                                  ("metrics-server", ()))
    assert parse_config(GOOD).cloud_provider is None and parse_config(GOOD).addons == ()


@pytest.mark.parametrize(
    "data,message", [(d, m) for _i, d, m in BAD_SCHEMA], ids=[i for i, _d, _m in BAD_SCHEMA]
)
def test_schema_rules(data, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(data)
    # the shipped schema is a real JSON schema, and jsonschema agrees it is invalid
    assert list(jsonschema.Draft202012Validator(load_schema()).iter_errors(data))


def test_builtin_validator_agrees_with_jsonschema_on_valid():
    jsonschema.Draft202012Validator.check_schema(load_schema())
    jsonschema.validate(GOOD, load_schema())
    assert schema_errors(GOOD, load_schema()) == []


@pytest.mark.parametrize(
    "change,message",
    [
        ({"serviceCIDR": "10.244.128.0/20"}, "podCIDR 10.244.0.0/16 overlaps serviceCIDR"),
        ({"podCIDR": "10.0.0.0/8"}, "overlaps vpcCIDR"),
        ({"podCIDR": "10.244.0.1/16"}, "host bits set"),
        ({"controlPlaneEndpoint": "api:70000"}, "outside 1-65535"),
    ],
    ids=["pod-service", "pod-vpc", "host-bits", "port"],
)
def test_semantic_rules(change, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({**GOOD, **change})


def test_load_config_errors_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "node.yaml"
    bad.write_text("role: [")
    with pytest.raises(ConfigError, match="not valid YAML") as exc:
        load_config(bad)
    assert "\n" not in str(exc.value)
    bad.write_text(yaml.safe_dump(GOOD))
    assert load_config(bad).role == "control-plane"


def test_cli_validate(tmp_path, capsys):
    from bake_node.main import main

    (tmp_path / "node.yaml").write_text(yaml.safe_dump({**GOOD, "podCIDR": "10.96.0.0/16"}))
    (tmp_path / "id.json").write_text('{"instance_id": "i-0123", "region": "us-east-1"}')
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "--config",
                str(tmp_path / "node.yaml"),
                "validate",
                "--identity",
                str(tmp_path / "id.json"),
            ]
        )
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("bake-node: error:") and "overlaps" in err and err.count("\n") == 1


def test_agent_does_not_import_bake():
    """On a node only bake_node is installed: importing every agent module must not need bake."""
    import subprocess
    import sys

    code = (
        "import sys, bake_node.main, bake_node.agent, bake_node.etcd, bake_node.lease; "
        "assert not [m for m in sys.modules if m == 'bake' or m.startswith('bake.')], 'bake'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
