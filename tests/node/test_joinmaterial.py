"""``JoinMaterial`` in SSM (moto): SecureString under the KMS key, expiry, rotation, and
throttling retried by botocore's standard retry mode (injected with a ``before-send`` hook that
answers the first calls with HTTP 400 ThrottlingException)."""

from __future__ import annotations

import time

import pytest

from bake_node.errors import JoinMaterialError
from bake_node.joinmaterial import JoinMaterial, Material, Secret


class FakeKubeadm:
    def __init__(self):
        self.calls = []

    def token_create(self, ttl):
        self.calls.append(("token", ttl))
        return f"tok{len(self.calls):03d}.0123456789abcdef", "sha256:" + "1" * 64

    def upload_certs(self):
        self.calls.append(("certs",))
        return f"{len(self.calls):064x}"


def material(now, token_ttl=600.0):
    return Material(
        Secret("abcdef.0123456789abcdef", now + token_ttl, now),
        Secret("sha256:" + "1" * 64),
        Secret("ab" * 32, now + 7200, now),
    )


def test_publish_read_securestring(cluster):
    ssm = cluster.clients().client("ssm")
    jm = JoinMaterial(ssm, cluster.prefix, cluster.kms_key_id)
    assert jm.read() is None
    jm.publish(material(time.time()))
    got = jm.read(control_plane=True)
    assert got.token.value == "abcdef.0123456789abcdef" and got.certificate_key.value == "ab" * 32
    assert jm.read().certificate_key is None  # workers never read the certificate key
    params = ssm.describe_parameters()["Parameters"]
    assert {p["Name"] for p in params} == {jm.name(n) for n in JoinMaterial.NAMES}
    assert {(p["Type"], p["KeyId"]) for p in params} == {("SecureString", cluster.kms_key_id)}


def test_rotation_at_half_ttl_and_before_cert_expiry(cluster):
    now = [1_000_000.0]
    jm = JoinMaterial(
        cluster.clients().client("ssm"), cluster.prefix, cluster.kms_key_id, clock=lambda: now[0]
    )
    kubeadm = FakeKubeadm()
    jm.publish(material(now[0], token_ttl=600))
    now[0] += 200
    assert jm.rotate(kubeadm, token_ttl=600) == []  # token at 1/3 of its life: nothing due
    now[0] += 150
    assert jm.rotate(kubeadm, token_ttl=600) == ["token"]  # past TTL/2
    assert jm.read().token.value == "tok001.0123456789abcdef"
    now[0] += 5500  # certificate key has < 30 min left
    assert "certificate-key" in jm.rotate(kubeadm, token_ttl=600)
    assert jm.read(control_plane=True).certificate_key.expires == now[0] + 7200


def test_wait_ignores_expired_material(cluster):
    jm = JoinMaterial(cluster.clients().client("ssm"), cluster.prefix, cluster.kms_key_id)
    jm.publish(material(time.time() - 1000, token_ttl=600))  # expired 400 s ago
    with pytest.raises(JoinMaterialError, match="no valid join material"):
        jm.wait(control_plane=False, timeout=0.5, poll=0.1)


def test_throttling_is_retried_by_botocore(cluster):
    from botocore.awsrequest import AWSResponse

    class Raw:
        def stream(self, **_):
            yield b""

    throttled = {"n": 0}

    def throttle(request, **_):
        if b"GetParameters" in (request.headers.get("X-Amz-Target") or b"") and throttled["n"] < 3:
            throttled["n"] += 1
            body = b'{"__type":"ThrottlingException","message":"Rate exceeded"}'
            resp = AWSResponse(
                request.url, 400, {"Content-Type": "application/x-amz-json-1.1"}, Raw()
            )
            resp._content = body
            return resp
        return None

    clients = cluster.clients()
    ssm = clients.client("ssm")
    ssm.meta.events.register("before-send.ssm", throttle)
    jm = JoinMaterial(ssm, cluster.prefix, cluster.kms_key_id)
    jm.publish(material(time.time()))
    assert jm.read().token.value == "abcdef.0123456789abcdef"
    assert throttled["n"] == 3  # three throttled answers, then success, within one read()


def test_admin_kubeconfig_is_a_control_plane_secret_within_the_advanced_limit(cluster):
    """The admin kubeconfig (about 5.6 KB with its certificates) goes under control-plane/ as
    a SecureString under the cluster key, Intelligent-Tiering (Advanced only when over 4 KB);
    one over Advanced's 8 KB is refused in one line and nothing is written."""
    ssm = cluster.clients().client("ssm")
    jm = JoinMaterial(ssm, cluster.prefix, cluster.kms_key_id)
    text = "apiVersion: v1\nkind: Config\n" + "x" * 5600
    jm.publish_admin_kubeconfig(text)
    name = f"{cluster.prefix}/control-plane/admin-kubeconfig"
    assert jm.admin_kubeconfig_name() == name
    (param,) = ssm.describe_parameters()["Parameters"]
    assert (param["Name"], param["Type"], param["KeyId"]) == (
        name, "SecureString", cluster.kms_key_id
    )
    assert param["Tier"] == "Intelligent-Tiering"
    assert ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"] == text
    with pytest.raises(JoinMaterialError, match="over SSM's 8192-byte limit"):
        jm.publish_admin_kubeconfig("y" * 8193)
    assert ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"] == text
