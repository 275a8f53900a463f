"""Fixtures for the embedded-AWS and publication tests.

- ``clients``: ``AwsClients`` pointed at the session's moto server (reset per test).
- ``publish_request``: a factory of ``BuiltImage`` values for fake local bakes (one AMI to
  register).
- ``fail_call``: makes one API operation of a real client fail with a given AWS error code,
  through botocore's own ``before-call`` event (the request never leaves the process), so the
  rest of the client keeps talking to moto.
"""

from __future__ import annotations

import types

import pytest


@pytest.fixture
def clients(aws):
    from bake.aws.session import AwsClients, AwsTarget

    return AwsClients(AwsTarget(region="us-east-1", endpoint_url=aws.endpoint))


@pytest.fixture
def publish_request():
    from bake.publish import BuiltImage

    def make(patch: int = 12, stamp: str = "20261122T030000Z", **kwargs) -> BuiltImage:
        version = f"1.30.{patch}"
        values = dict(
            kubernetes_version=version,
            minor="1.30",
            arch="amd64",
            os="debian-12",
            build_id=f"{version}-amd64-{stamp}",
            manifest_sha256="0" * 64,
        )
        values.update(kwargs)
        return BuiltImage(**values)

    return make


@pytest.fixture
def fail_call():
    def install(client, operation: str, code: str, message: str = "injected failure") -> None:
        service_id = client.meta.service_model.service_id.hyphenize()

        def handler(**_kwargs):
            http = types.SimpleNamespace(status_code=400, headers={})
            return http, {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {}}

        client.meta.events.register(f"before-call.{service_id}.{operation}", handler)

    return install
