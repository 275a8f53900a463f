"""The local cluster's gateway: IMDSv2 as EC2 serves it, and the TLS endpoint of the AWS APIs.

The IMDS handler is served on 127.0.0.1 here (in a cluster it listens on 169.254.169.254 inside
the cluster's namespace) and asked by the very clients the VMs use: botocore's own instance
metadata fetcher (the credential chain of every boto3 client on EC2) and the node agent's
identity discovery. The endpoint proxy terminates TLS with the cluster CA's certificate and
passes the bytes to the embedded AWS (moto), as the VMs' boto3 clients see it.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import threading
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer

import pytest

from bake.localcluster.gateway import Imds, Metadata, _proxy

INSTANCE = {
    "instance_id": "i-0123456789abcdef0",
    "private_ip": "10.0.0.4",
    "hostname": "ip-10-0-0-4.ec2.internal",
    "mac": "52:54:00:00:00:04",
    "availability_zone": "us-east-1a",
    "instance_type": "t3.medium",
    "image_id": "ami-0123456789abcdef0",
    "region": "us-east-1",
    "account_id": "123456789012",
    "profile_role": "bake-demo-ControlPlaneRole-ABC",
    "user_data_b64": base64.b64encode(b"#cloud-config\n").decode(),
}


@pytest.fixture
def imds(tmp_path):
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"127.0.0.1": INSTANCE}))
    Imds.metadata = Metadata(path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Imds)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _token(base, ttl="21600"):
    req = urllib.request.Request(base + "/latest/api/token", method="PUT",
                                 headers={"X-aws-ec2-metadata-token-ttl-seconds": ttl})
    return urllib.request.urlopen(req, timeout=5).read().decode()


def _get(base, path, token=None):
    headers = {"X-aws-ec2-metadata-token": token} if token else {}
    req = urllib.request.Request(base + path, headers=headers)
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.read().decode()


def test_imds_answers_only_with_a_session_token(imds):
    with pytest.raises(urllib.error.HTTPError) as err:  # IMDSv1 (no token): refused
        _get(imds, "/latest/meta-data/instance-id")
    assert err.value.code == 401
    token = _token(imds)
    assert _get(imds, "/latest/meta-data/instance-id", token) == INSTANCE["instance_id"]
    assert _get(imds, "/latest/meta-data/local-ipv4", token) == "10.0.0.4"
    doc = json.loads(_get(imds, "/latest/dynamic/instance-identity/document", token))
    assert (doc["instanceId"], doc["region"], doc["privateIp"]) == (
        INSTANCE["instance_id"], "us-east-1", "10.0.0.4")
    assert _get(imds, "/latest/user-data", token) == "#cloud-config\n"
    with pytest.raises(urllib.error.HTTPError) as err:
        _token(imds, ttl="0")
    assert err.value.code == 400
    with pytest.raises(urllib.error.HTTPError) as err:
        _get(imds, "/latest/meta-data/instance-id", "not-a-token")
    assert err.value.code == 401


def test_botocore_gets_role_credentials_as_on_ec2(imds):
    """The credential chain of every boto3 client in the VM (IMDSv2 token, role name, keys)."""
    from botocore.utils import InstanceMetadataFetcher

    fetcher = InstanceMetadataFetcher(timeout=5, num_attempts=2, base_url=imds)
    creds = fetcher.retrieve_iam_role_credentials()
    assert creds["role_name"] == INSTANCE["profile_role"]
    assert creds["access_key"].startswith("ASIA") and creds["token"]


def test_the_agent_identity_comes_from_imds(imds):
    from bake_node.identity import from_imds

    ident = from_imds(imds)
    assert (ident.instance_id, ident.region, ident.private_ip, ident.hostname) == (
        INSTANCE["instance_id"], "us-east-1", "10.0.0.4", INSTANCE["hostname"])


def test_an_address_that_is_no_instance_is_refused(imds, tmp_path):
    Imds.metadata = Metadata(tmp_path / "instances.json")
    (tmp_path / "instances.json").write_text(json.dumps({"10.9.9.9": INSTANCE}))
    req = urllib.request.Request(imds + "/latest/api/token", method="PUT",
                                 headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 403


def test_endpoint_proxy_terminates_tls_and_reaches_the_embedded_aws(aws, tmp_path):
    """A boto3 client that trusts only the cluster CA talks to moto through the proxy, by the
    AWS API's own host name."""
    import boto3

    from bake.localcluster.pki import endpoint_certificate

    cert, key = endpoint_certificate(tmp_path / "pki", "demo", "us-east-1")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    threading.Thread(target=_proxy, args=(listener, context, ("127.0.0.1", aws.port)),
                     daemon=True).start()
    # the VM resolves ssm.us-east-1.amazonaws.com to the endpoint address; here: 127.0.0.1
    real_getaddrinfo = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if host.endswith(".amazonaws.com"):
            host = "127.0.0.1"
        return real_getaddrinfo(host, *args, **kwargs)

    socket.getaddrinfo = resolve
    try:
        ssm = boto3.client("ssm", region_name="us-east-1",
                           endpoint_url=f"https://ssm.us-east-1.amazonaws.com:{port}",
                           verify=str(tmp_path / "pki" / "ca.crt"),
                           aws_access_key_id="ASIAEXAMPLE", aws_secret_access_key="x")
        ssm.put_parameter(Name="/bake/probe", Value="through the endpoint", Type="String")
        assert ssm.get_parameter(Name="/bake/probe")["Parameter"]["Value"] == \
            "through the endpoint"
        # S3 by its virtual-hosted name (<bucket>.s3.<region>.amazonaws.com), as the etcd
        # snapshot upload addresses it
        from botocore.config import Config

        s3 = boto3.client("s3", region_name="us-east-1",
                          endpoint_url=f"https://s3.us-east-1.amazonaws.com:{port}",
                          verify=str(tmp_path / "pki" / "ca.crt"),
                          config=Config(s3={"addressing_style": "virtual"}),
                          aws_access_key_id="ASIAEXAMPLE", aws_secret_access_key="x")
        s3.create_bucket(Bucket="bake-demo-snapshots")
        s3.put_object(Bucket="bake-demo-snapshots", Key="etcd-snapshots/probe", Body=b"ok")
        assert s3.get_object(Bucket="bake-demo-snapshots",
                             Key="etcd-snapshots/probe")["Body"].read() == b"ok"
    finally:
        socket.getaddrinfo = real_getaddrinfo
        listener.close()
