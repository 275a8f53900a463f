"""Instance identity: who this node is (instance ID, region, private IP, host name).

Sources, in order: an override file (tests and non-EC2 labs), IMDSv2 (a session token from
``PUT /latest/api/token`` with header ``X-aws-ec2-metadata-token-ttl-seconds``, then ``GET`` with
``X-aws-ec2-metadata-token``; EC2 user guide, "Use IMDSv2"), which answers on EC2 and, in a local
VM cluster, from the IMDSv2-compatible endpoint ``bake launch --local`` serves, and last
cloud-init's instance data (``/run/cloud-init/instance-data.json``, keys ``v1.instance_id``,
``v1.region``, ``v1.local_hostname``; cloud-init docs, "Instance metadata") where no IMDS
answers. IMDS comes before cloud-init's data because it is the authority on EC2 (cloud-init's
file is a copy) and the only source of the private IP for datasources such as NoCloud.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bake_node.errors import ConfigError

IMDS = "http://169.254.169.254"
CLOUD_INIT_DATA = Path("/run/cloud-init/instance-data.json")


@dataclass(frozen=True)
class Identity:
    """This node: ``instance_id`` (e.g. ``i-0abc...``), ``region``, ``private_ip``, ``hostname``."""

    instance_id: str
    region: str | None = None
    private_ip: str = "127.0.0.1"
    hostname: str = "localhost"


def from_file(path: Path) -> Identity:
    """Read an override JSON file ``{"instance_id", "region", "private_ip", "hostname"}``."""
    try:
        data = json.loads(Path(path).read_text())
        return Identity(**data)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"identity override {path} is unreadable: {exc}") from None


def from_imds(base: str = IMDS, timeout: float = 2.0, attempts: int = 3) -> Identity:
    """Ask the instance metadata service with IMDSv2 (token first; IMDSv1 is never used).

    Args:
        base: the IMDS address.
        timeout: seconds per request.
        attempts: tries of the token request (a busy host answers late; IMDS rate-limits).

    Raises:
        ConfigError: IMDS unreachable or refusing (not on EC2, or hop limit too low).
    """
    last: OSError | None = None
    for attempt in range(attempts):
        try:
            return _imds_identity(base, timeout)
        except OSError as exc:
            last = exc
            if isinstance(exc, ConnectionRefusedError):
                break  # nothing listens: not on EC2
            time.sleep(0.5 * (attempt + 1))
    raise ConfigError(f"IMDSv2 at {base} did not answer: {last}") from None


def _imds_identity(base: str, timeout: float) -> Identity:
    try:
        req = urllib.request.Request(
            base + "/latest/api/token",
            method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"},
        )
        token = urllib.request.urlopen(req, timeout=timeout).read().decode()

        def get(path: str) -> str:
            r = urllib.request.Request(
                base + "/latest/meta-data/" + path, headers={"X-aws-ec2-metadata-token": token}
            )
            return urllib.request.urlopen(r, timeout=timeout).read().decode()

        return Identity(
            instance_id=get("instance-id"),
            region=get("placement/region"),
            private_ip=get("local-ipv4"),
            hostname=get("local-hostname"),
        )
    except urllib.error.HTTPError as exc:
        raise OSError(f"HTTP {exc.code} from {exc.url}") from None


def from_cloud_init(path: Path = CLOUD_INIT_DATA) -> Identity:
    """Read cloud-init's instance data (any datasource: NoCloud, EC2...)."""
    try:
        v1 = json.loads(Path(path).read_text())["v1"]
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"cloud-init instance data {path} unreadable: {exc}") from None
    return Identity(
        instance_id=v1["instance_id"],
        region=v1.get("region"),
        private_ip=v1.get("local_ipv4") or "127.0.0.1",
        hostname=v1.get("local_hostname") or "localhost",
    )


def discover(override: Path | None = None, imds: str = IMDS) -> Identity:
    """Return this node's identity: the override if given, else IMDSv2, else cloud-init's
    instance data.

    Raises:
        ConfigError: no source answered (names both).
    """
    if override:
        return from_file(override)
    try:
        return from_imds(imds)
    except ConfigError as imds_error:
        if CLOUD_INIT_DATA.exists():
            return from_cloud_init(CLOUD_INIT_DATA)
        raise ConfigError(f"{imds_error}, and no cloud-init instance data at "
                          f"{CLOUD_INIT_DATA}") from None
