"""The SSM wrappers the drills read the cluster's parameters through, against the embedded AWS."""

from __future__ import annotations

import json

from bake.aws import ssm


def test_describe_prefix_lists_names_types_and_versions_without_values(clients):
    client = clients.client("ssm")
    client.put_parameter(Name="/bake/clusters/a/shared/join/token", Value="x",
                         Type="SecureString")
    client.put_parameter(Name="/bake/clusters/a/shared/join/token", Value="y",
                         Type="SecureString", Overwrite=True)
    client.put_parameter(Name="/bake/clusters/a/endpoint", Value="10.0.0.1", Type="String")
    client.put_parameter(Name="/bake/clusters/b/endpoint", Value="10.0.0.2", Type="String")
    found = ssm.describe_prefix(client, "/bake/clusters/a/")
    assert found == {
        "/bake/clusters/a/shared/join/token": {"type": "SecureString", "version": 2},
        "/bake/clusters/a/endpoint": {"type": "String", "version": 1},
    }


def test_history_decrypts_secure_strings_in_version_order(clients):
    client = clients.client("ssm")
    name = "/bake/clusters/a/shared/join/token"
    for token in ("abcdef.0123456789abcdef", "ghijkl.0123456789abcdef"):
        client.put_parameter(Name=name, Value=json.dumps({"value": token}),
                             Type="SecureString", Overwrite=True)
    plain = ssm.history(client, name, decrypt=True)
    assert [json.loads(v.value)["value"][:6] for v in plain] == ["abcdef", "ghijkl"]
    assert [v.version for v in plain] == [1, 2]
