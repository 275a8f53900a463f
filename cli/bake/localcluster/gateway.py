"""The parts of AWS a local cluster's VMs talk to: IMDSv2 and the AWS API endpoints.

One process, started detached by ``bake launch --local`` (``python -m
bake.localcluster.gateway CONFIG``), listening inside the cluster's network namespace only:

- **Instance metadata, IMDSv2 only** on ``169.254.169.254:80`` (EC2 user guide, "Use IMDSv2"):
  ``PUT /latest/api/token`` with ``X-aws-ec2-metadata-token-ttl-seconds`` (1-21600) returns a
  session token; every ``GET`` must carry it in ``X-aws-ec2-metadata-token`` or gets 401 (the
  launch templates require tokens: ``HttpTokens: required``). The caller is told apart by its
  source address, which DHCP gave it from its instance's private IP. Served: ``meta-data``
  (instance-id, local-ipv4, local-hostname, hostname, mac, instance-type, ami-id,
  placement/region and availability-zone, iam/info, iam/security-credentials/<role>),
  ``dynamic/instance-identity/document`` and ``user-data``. The role credentials are the
  embedded AWS's (moto accepts any key); their shape is IMDS's (``Code``, ``AccessKeyId``,
  ``SecretAccessKey``, ``Token``, ``Expiration``).
- **The AWS API endpoints** on ``<endpoints ip>:443``: what the interface endpoints with private
  DNS are in the air-gapped VPC. The VPC resolver sends every ``*.amazonaws.com`` name there;
  TLS is terminated with a certificate of the cluster's local CA (the VMs trust it through the
  NoCloud seed's vendor-data, the platform's channel, not the user-data) and the bytes are
  passed to the embedded AWS on this machine's 127.0.0.1.

Sockets are opened inside the namespace (``bake.localcluster.netns.inside``); connections to the
embedded AWS leave from this machine's own namespace. The process ends on SIGTERM.
"""

from __future__ import annotations

import json
import secrets
import select
import signal
import socket
import ssl
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bake.localcluster.netns import inside

TOKEN_MAX_TTL = 21600  # seconds (EC2 user guide, IMDSv2: "up to six hours")
CREDENTIAL_LIFETIME = timedelta(hours=6)


class Metadata:
    """The instances the IMDS answers for, re-read when the launch rewrites the file.

    The file is JSON ``{private ip: {instance_id, hostname, mac, availability_zone,
    instance_type, image_id, region, account_id, profile_role, user_data_b64}}``.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._mtime = -1.0
        self._data: dict = {}
        self.tokens: dict[str, tuple[str, float]] = {}  # token -> (caller ip, expiry)
        self.lock = threading.Lock()

    def instance(self, ip: str) -> dict | None:
        with self.lock:
            mtime = self.path.stat().st_mtime
            if mtime != self._mtime:
                self._data = json.loads(self.path.read_text())
                self._mtime = mtime
            return self._data.get(ip)

    def new_token(self, ip: str, ttl: int) -> str:
        token = secrets.token_urlsafe(32)
        with self.lock:
            now = time.time()
            self.tokens = {t: v for t, v in self.tokens.items() if v[1] > now}
            self.tokens[token] = (ip, now + ttl)
        return token

    def valid(self, token: str | None, ip: str) -> bool:
        with self.lock:
            entry = self.tokens.get(token or "")
        return bool(entry) and entry[0] == ip and entry[1] > time.time()


def credentials(instance: dict) -> dict:
    """The role credentials document IMDS serves at iam/security-credentials/<role>."""
    now = datetime.now(UTC)
    return {
        "Code": "Success",
        "LastUpdated": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Type": "AWS-HMAC",
        "AccessKeyId": "ASIA" + instance["instance_id"].removeprefix("i-").upper()[:16],
        "SecretAccessKey": "embedded-aws-" + instance["profile_role"],
        "Token": "embedded-aws-session",
        "Expiration": (now + CREDENTIAL_LIFETIME).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def identity_document(instance: dict) -> dict:
    """``dynamic/instance-identity/document`` (EC2 user guide, "Instance identity documents")."""
    return {
        "accountId": instance["account_id"],
        "architecture": instance.get("architecture", "x86_64"),
        "availabilityZone": instance["availability_zone"],
        "imageId": instance["image_id"],
        "instanceId": instance["instance_id"],
        "instanceType": instance["instance_type"],
        "privateIp": instance["private_ip"],
        "region": instance["region"],
        "version": "2017-09-30",
    }


def meta_data(instance: dict, path: str) -> tuple[int, str]:
    """``(status, body)`` for ``/latest/meta-data/<path>``."""
    role = instance["profile_role"]
    leaves = {
        "instance-id": instance["instance_id"],
        "local-ipv4": instance["private_ip"],
        "local-hostname": instance["hostname"],
        "hostname": instance["hostname"],
        "mac": instance["mac"],
        "instance-type": instance["instance_type"],
        "ami-id": instance["image_id"],
        "placement/region": instance["region"],
        "placement/availability-zone": instance["availability_zone"],
        "iam/info": json.dumps({
            "Code": "Success",
            "InstanceProfileArn": f"arn:aws:iam::{instance['account_id']}:instance-profile/{role}",
            "InstanceProfileId": "AIPA" + instance["instance_id"][2:].upper()[:16],
        }),
        "iam/security-credentials/": role,
        f"iam/security-credentials/{role}": json.dumps(credentials(instance)),
    }
    if path in ("", "/"):
        return 200, "\n".join(sorted({k.split("/", 1)[0] + ("/" if "/" in k else "")
                                      for k in leaves}))
    if path in leaves:
        return 200, leaves[path]
    if path.rstrip("/") in ("iam", "placement", "iam/security-credentials"):
        prefix = path.rstrip("/") + "/"
        return 200, "\n".join(sorted({k[len(prefix):].split("/", 1)[0] for k in leaves
                                      if k.startswith(prefix) and k != prefix}))
    return 404, ""


class Imds(BaseHTTPRequestHandler):
    """The IMDSv2 handler; ``metadata`` is set on the class by ``serve``."""

    server_version = "EC2ws"
    metadata: Metadata

    def log_message(self, fmt, *args):
        pass

    def _send(self, code: int, body: str = "", ctype: str = "text/plain"):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self):  # noqa: N802 - http.server's name
        if self.path != "/latest/api/token":
            return self._send(404)
        if self.headers.get("X-Forwarded-For"):  # IMDS refuses proxied token requests
            return self._send(403)
        try:
            ttl = int(self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", ""))
        except ValueError:
            return self._send(400)
        if not 1 <= ttl <= TOKEN_MAX_TTL:
            return self._send(400)
        caller = self.client_address[0]
        if self.metadata.instance(caller) is None:
            return self._send(403)
        self._send(200, self.metadata.new_token(caller, ttl))

    def do_GET(self):  # noqa: N802
        caller = self.client_address[0]
        instance = self.metadata.instance(caller)
        if instance is None:
            return self._send(403)
        if not self.metadata.valid(self.headers.get("X-aws-ec2-metadata-token"), caller):
            return self._send(401)  # IMDSv2 only: HttpTokens required
        path = self.path.split("?", 1)[0]
        if path.startswith("/latest/meta-data/") or path == "/latest/meta-data":
            code, body = meta_data(instance, path.removeprefix("/latest/meta-data").lstrip("/"))
            return self._send(code, body)
        if path == "/latest/dynamic/instance-identity/document":
            return self._send(200, json.dumps(identity_document(instance), indent=2),
                              "application/json")
        if path == "/latest/user-data":
            import base64

            return self._send(200, base64.b64decode(instance["user_data_b64"]).decode())
        return self._send(404)


def _pump(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    sockets = [a, b]
    try:
        while True:
            readable, _, broken = select.select(sockets, [], sockets, 300)
            if broken or not readable:
                return
            for s in readable:
                data = s.recv(65536)
                if not data:
                    return
                (b if s is a else a).sendall(data)
    except OSError:
        return
    finally:
        for s in sockets:
            try:
                s.close()
            except OSError:
                pass


def _proxy(listener: socket.socket, context: ssl.SSLContext, upstream: tuple[str, int]) -> None:
    while True:
        try:
            raw, _ = listener.accept()
        except OSError:
            return

        def handle(raw=raw):
            try:
                tls = context.wrap_socket(raw, server_side=True)
            except (OSError, ssl.SSLError):
                raw.close()
                return
            try:
                back = socket.create_connection(upstream, timeout=30)
            except OSError:
                tls.close()
                return
            _pump(tls, back)

        threading.Thread(target=handle, daemon=True).start()


def serve(config: dict) -> None:
    """Open the listeners inside the namespace, then serve until SIGTERM.

    Args:
        config: ``{netns, imds_ip, endpoints_ip, cert, key, instances, upstream_host,
            upstream_port}`` (written by the launch).
    """
    Imds.metadata = Metadata(Path(config["instances"]))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(config["cert"], config["key"])
    with inside(config["netns"]):
        imds = ThreadingHTTPServer((config["imds_ip"], 80), Imds)
        imds.daemon_threads = True
        endpoints = socket.create_server((config["endpoints_ip"], 443), backlog=128)
    upstream = (config["upstream_host"], int(config["upstream_port"]))
    threading.Thread(target=imds.serve_forever, daemon=True).start()
    threading.Thread(target=_proxy, args=(endpoints, context, upstream), daemon=True).start()
    print(f"gateway: IMDSv2 on {config['imds_ip']}:80, AWS endpoints on "
          f"{config['endpoints_ip']}:443 -> {upstream[0]}:{upstream[1]} (namespace "
          f"{config['netns']})", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    imds.shutdown()
    endpoints.close()


def main(argv: list[str] | None = None) -> None:
    """``python -m bake.localcluster.gateway CONFIG.json``."""
    args = sys.argv[1:] if argv is None else argv
    serve(json.loads(Path(args[0]).read_text()))


if __name__ == "__main__":
    main()
