"""``JoinMaterial``: the bootstrap token, CA cert hash and certificate key in SSM Parameter Store.

Three SecureString parameters encrypted with the cluster's KMS key, in two subtrees so that IAM
and the KMS encryption context can keep workers out of what only control planes may read:
``<ssmPrefix>/shared/join/token`` (kubeadm bootstrap token) and
``<ssmPrefix>/shared/join/ca-cert-hash`` (``sha256:<hex>``, for
``--discovery-token-ca-cert-hash``), which every node reads, and
``<ssmPrefix>/control-plane/join/certificate-key`` (decrypts the ``kubeadm-certs`` Secret, so
with a token it lets a node join as a control plane and obtain the cluster CA key; kubeadm
deletes the Secret after 2 hours - kubeadm HA docs), which only control planes read. Each value is
JSON ``{"value": ..., "expires": <epoch seconds or null>}``. A worker reads token and hash with
ONE ``GetParameters`` call (the SSM GetParameter* quota is 40 TPS shared, Systems Manager
service quotas). Rotation (``rotate``) runs under the control-plane lease: a new token when the
current one passed half its TTL (Cluster API rotates at TTL/2), new certificate key and
re-uploaded certificates before the 2 h expiry.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from bake_node.aws import ssm
from bake_node.errors import JoinMaterialError

log = logging.getLogger("bake_node.joinmaterial")

#: bytes of an Advanced-tier parameter value (SSM quotas: Standard 4 KB, Advanced 8 KB)
ADVANCED_PARAMETER_LIMIT = 8192
CERT_KEY_TTL = 2 * 3600.0  # kubeadm deletes the kubeadm-certs Secret after 2 h
DEFAULT_TOKEN_TTL = 1800.0  # 30 min; rotated at TTL/2 by the control-plane timer
# a join starts only with material valid this long: kubeadm's discovery timeout (kubeadm config
# API: v1beta3 JoinConfiguration discovery.timeout, v1beta4 timeouts.discovery; default 5m0s)
JOIN_MIN_VALIDITY = 300.0
# bake-node-rotate.timer (components/bake-node.yaml.j2): every 2 min, up to 20 s late
ROTATE_PERIOD = 140.0


@dataclass(frozen=True)
class Secret:
    """One join secret: ``value`` and ``expires`` (epoch seconds, or None = never)."""

    value: str
    expires: float | None = None
    issued: float | None = None

    def valid_for(self, now: float) -> float:
        """Seconds of validity left at ``now`` (infinite when it never expires)."""
        return float("inf") if self.expires is None else self.expires - now

    def to_json(self) -> str:
        return json.dumps({"value": self.value, "expires": self.expires, "issued": self.issued})

    @classmethod
    def from_json(cls, text: str) -> Secret:
        data = json.loads(text)
        return cls(data["value"], data.get("expires"), data.get("issued"))


@dataclass(frozen=True)
class Material:
    """What a node needs to join: ``token`` and ``ca_hash``, plus ``certificate_key`` for
    control planes (None when not read or not published)."""

    token: Secret
    ca_hash: Secret
    certificate_key: Secret | None = None


class JoinMaterial:
    """Join material of one cluster in SSM.

    Args:
        ssm: a boto3 SSM client (standard retry mode retries throttling).
        prefix: ``NodeConfig.ssm_prefix``, e.g. ``/bake/clusters/demo``.
        kms_key_id: the KMS key of every SecureString written.
        clock: returns epoch seconds.
    """

    NAMES = ("token", "ca-cert-hash", "certificate-key")
    #: the subtree each part lives in: "shared" (all nodes) or "control-plane" (control planes)
    SUBTREE = {"token": "shared", "ca-cert-hash": "shared", "certificate-key": "control-plane"}

    def __init__(self, ssm, prefix: str, kms_key_id: str, clock=time.time):
        self.ssm, self.prefix, self.kms_key_id, self.clock = ssm, prefix, kms_key_id, clock

    def name(self, part: str) -> str:
        """Full parameter name of ``part`` (one of ``NAMES``), e.g.
        ``/bake/clusters/demo/shared/join/token``."""
        return f"{self.prefix}/{self.SUBTREE[part]}/join/{part}"

    def put(self, part: str, secret: Secret) -> None:
        """Write one part as a SecureString under the KMS key (overwriting)."""
        ssm.put_secure_string(
            self.ssm,
            self.name(part),
            secret.to_json(),
            self.kms_key_id,
            "bake-node join material (do not edit; rotated automatically)",
        )

    def publish(self, material: Material) -> None:
        """Write every part of ``material`` (the certificate key only when present)."""
        self.put("ca-cert-hash", material.ca_hash)
        if material.certificate_key:
            self.put("certificate-key", material.certificate_key)
        self.put("token", material.token)  # last: its presence means "material complete"

    def read(self, control_plane: bool = False) -> Material | None:
        """Read the material with one ``GetParameters`` call (decrypted).

        Returns:
            ``Material``, or ``None`` when not (completely) published yet.
        """
        parts = ["token", "ca-cert-hash"] + (["certificate-key"] if control_plane else [])
        values = ssm.get_decrypted(self.ssm, [self.name(p) for p in parts])
        found = {name.rsplit("/", 1)[1]: Secret.from_json(v) for name, v in values.items()}
        if any(p not in found for p in parts):
            return None
        return Material(found["token"], found["ca-cert-hash"], found.get("certificate-key"))

    def admin_kubeconfig_name(self) -> str:
        """Where the admin kubeconfig is kept: ``<prefix>/control-plane/admin-kubeconfig``
        (the control-plane subtree: workers cannot read it; ``bake kubeconfig`` fetches it)."""
        return f"{self.prefix}/control-plane/admin-kubeconfig"

    def admin_kubeconfig(self) -> str | None:
        """The admin kubeconfig the first control plane stored (decrypted), or ``None``."""
        name = self.admin_kubeconfig_name()
        return ssm.get_decrypted(self.ssm, [name]).get(name)

    def publish_admin_kubeconfig(self, text: str) -> None:
        """Keep kubeadm's ``admin.conf`` for ``bake kubeconfig``: a SecureString under the
        cluster's KMS key, ``Intelligent-Tiering`` (a kubeconfig with its embedded certificates
        is about 5.6 KB: over Standard's 4 KB, within Advanced's 8 KB; SSM quotas).

        Raises:
            JoinMaterialError: the file is over 8 KB (Advanced's limit): nothing is written.
        """
        size = len(text.encode())
        if size > ADVANCED_PARAMETER_LIMIT:
            raise JoinMaterialError(
                f"admin kubeconfig is {size} bytes, over SSM's {ADVANCED_PARAMETER_LIMIT}-byte "
                "limit for a parameter: not stored (read it on a control plane)"
            )
        ssm.put_secure_string(
            self.ssm,
            self.admin_kubeconfig_name(),
            text,
            self.kms_key_id,
            "bake-node: the cluster's admin kubeconfig (bake kubeconfig fetches it)",
            tier="Intelligent-Tiering",
        )

    def delete_all(self) -> None:
        """Remove every part (a taker-over clears a dead leader's half-published material)."""
        ssm.delete_parameters(self.ssm, [self.name(p) for p in self.NAMES])

    def wait(
        self,
        control_plane: bool,
        min_validity: float = JOIN_MIN_VALIDITY,
        timeout: float = 3600.0,
        poll: float = 2.0,
        max_poll: float = 15.0,
    ) -> Material:
        """Wait for material whose token (and certificate key) stays valid ``min_validity`` s
        (default: kubeadm's 5 min discovery timeout, so the token outlives the join's discovery
        and TLS bootstrap). The rotation timer keeps at least that much on the published token
        when its TTL is 15 min or more (TTL/2 + ``ROTATE_PERIOD`` + 5 min <= TTL).

        Polls with exponential backoff from ``poll`` to ``max_poll`` seconds (a waiting node,
        not a retry: botocore retries failed calls). Expired material is never used: the
        control-plane rotation timer replaces it.

        Raises:
            JoinMaterialError: nothing usable within ``timeout`` seconds.
        """
        deadline = self.clock() + timeout
        delay = poll
        while True:
            material = self.read(control_plane)
            now = self.clock()
            if (
                material
                and material.token.valid_for(now) > min_validity
                and (not control_plane or material.certificate_key.valid_for(now) > min_validity)
            ):
                return material
            if now > deadline:
                raise JoinMaterialError(
                    f"no valid join material under {self.prefix}/shared/join after "
                    f"{timeout:.0f} s: "
                    "is a control plane up (its bake-node-rotate timer refreshes the token)?"
                )
            time.sleep(delay)
            delay = min(delay * 2, max_poll)

    def rotate(
        self, kubeadm, token_ttl: float = DEFAULT_TOKEN_TTL, margin: float = 1800.0
    ) -> list[str]:
        """Refresh what is due; call only while holding the control-plane lease.

        A new token (``kubeadm token create --ttl``) when the current one is past half its TTL
        or missing; a new certificate key with re-uploaded certificates
        (``kubeadm init phase upload-certs --upload-certs``) when the current key expires within
        ``margin`` seconds.

        Args:
            kubeadm: the ``Kubeadm`` adapter of this control plane.
            token_ttl: seconds a new token lives.
            margin: seconds before the certificate key's expiry at which it is renewed.

        Returns:
            the parts rotated (e.g. ``["token"]``).
        """
        now = self.clock()
        current = self.read(control_plane=True)
        rotated = []
        token = current.token if current else None
        if (
            token is None
            or token.issued is None
            or now >= token.issued + (token.expires - token.issued) / 2
        ):
            value, ca_hash = kubeadm.token_create(token_ttl)
            self.put("ca-cert-hash", Secret(ca_hash))
            self.put("token", Secret(value, now + token_ttl, now))
            rotated.append("token")
        key = current.certificate_key if current else None
        if key is None or key.valid_for(now) < margin:
            value = kubeadm.upload_certs()
            self.put("certificate-key", Secret(value, now + CERT_KEY_TTL, now))
            rotated.append("certificate-key")
        log.info("join material rotated: %s", ", ".join(rotated) or "nothing due")
        return rotated
