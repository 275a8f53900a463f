"""Instance identity over IMDSv2 (a local IMDS emulator on 127.0.0.1 that refuses requests
without a session token), cloud-init instance data, and ``bake-node status``."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bake_node.errors import ConfigError
from bake_node.identity import from_cloud_init, from_imds

META = {
    "instance-id": "i-0abc",
    "placement/region": "eu-west-1",
    "local-ipv4": "10.0.3.4",
    "local-hostname": "ip-10-0-3-4.eu-west-1.compute.internal",
}


class Imds(BaseHTTPRequestHandler):
    seen: list[str] = []

    def log_message(self, *args):
        pass

    def do_PUT(self):
        assert self.headers["X-aws-ec2-metadata-token-ttl-seconds"]
        self.seen.append("PUT")
        self._send(200, b"TOKEN123")

    def do_GET(self):
        if self.headers.get("X-aws-ec2-metadata-token") != "TOKEN123":
            self.seen.append("GET-no-token")
            return self._send(401, b"")
        key = self.path.removeprefix("/latest/meta-data/")
        self._send(200, META[key].encode()) if key in META else self._send(404, b"")

    def _send(self, code, body):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def imds():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Imds)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_imdsv2(imds):
    Imds.seen.clear()
    ident = from_imds(imds)
    assert (ident.instance_id, ident.region, ident.private_ip) == (
        "i-0abc",
        "eu-west-1",
        "10.0.3.4",
    )
    assert Imds.seen == ["PUT"]  # token first; never an IMDSv1 (token-less) request


def test_imds_unreachable_is_one_line():
    with pytest.raises(ConfigError, match="IMDSv2 at http://127.0.0.1:9 did not answer"):
        from_imds("http://127.0.0.1:9", timeout=0.5)


def test_cloud_init_instance_data(tmp_path):
    path = tmp_path / "instance-data.json"
    path.write_text(
        json.dumps({"v1": {"instance_id": "nocloud-1", "region": None, "local_hostname": "lab-1"}})
    )
    ident = from_cloud_init(path)
    assert (ident.instance_id, ident.hostname, ident.region) == ("nocloud-1", "lab-1", None)


def test_status_prints_state(tmp_path, capsys):
    from bake_node.agent import State
    from bake_node.main import main

    State(tmp_path).phase("config", "done", 0.1234)
    main(["--state-dir", str(tmp_path), "status"])
    data = json.loads(capsys.readouterr().out)
    assert data["phases"]["config"] == {"status": "done", "seconds": 0.123}
    assert data["joined"] is False


def test_discover_asks_imds_before_cloud_init(imds, tmp_path, monkeypatch):
    """IMDS is the authority (cloud-init's file is a copy, and NoCloud's has no private IP)."""
    from bake_node import identity

    data = tmp_path / "instance-data.json"
    data.write_text(json.dumps({"v1": {"instance_id": "nocloud-1", "local_hostname": "x"}}))
    monkeypatch.setattr(identity, "CLOUD_INIT_DATA", data)
    assert identity.discover(imds=imds).instance_id == "i-0abc"
    # no IMDS: cloud-init's data, and without it one line naming both sources
    assert identity.discover(imds="http://127.0.0.1:9").instance_id == "nocloud-1"
    data.unlink()
    with pytest.raises(ConfigError, match="did not answer.*no cloud-init instance data"):
        identity.discover(imds="http://127.0.0.1:9")
