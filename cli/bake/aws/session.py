"""Builds boto3 clients for the wrappers, with bake's retry policy and endpoint choice.

One ``AwsClients`` per command run; wrappers receive clients from it (or from a test's Stubber).
The endpoint is ``--endpoint-url`` when given, otherwise boto3's own resolution, which honours
``AWS_ENDPOINT_URL`` and ``AWS_ENDPOINT_URL_<SERVICE>`` (boto3 >= 1.28, "service-specific
endpoints"). Retries use botocore's ``standard`` mode (botocore docs, "Retries").
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class AwsTarget:
    """Where AWS calls go.

    Attributes:
        region: region name or ``None`` (standard chain).
        profile: shared-config profile or ``None``.
        endpoint_url: endpoint for every service, or ``None``.
        max_attempts: total attempts per call in botocore's standard retry mode.
        access_key_id: explicit access key, or ``None`` for the standard credential chain.
            Only the embedded AWS sets it (to moto's dummy ``testing``), so that no environment
            variable has to be written; never put a real key here.
        secret_access_key: the matching secret (hidden from ``repr``), or ``None``.
    """

    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    max_attempts: int = 8
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)


def target_from_options(options: Any) -> AwsTarget:
    """Build the ``AwsTarget`` of a command run from its ``bake.context.GlobalOptions``.

    Args:
        options: any object with ``region``, ``profile`` and ``endpoint_url`` attributes
            (``GlobalOptions``), each ``None`` when not given on the command line.

    Returns:
        a target that uses boto3's own chain (credentials, region, ``AWS_ENDPOINT_URL``) for
        whatever the options leave unset.
    """
    return AwsTarget(
        region=options.region, profile=options.profile, endpoint_url=options.endpoint_url
    )


@dataclass
class AwsClients:
    """A lazy cache of boto3 clients for one ``AwsTarget``.

    ``client("ssm")`` returns the same client on every call. Tests pass pre-built (stubbed)
    clients in ``overrides``.
    """

    target: AwsTarget
    overrides: dict[str, Any] = field(default_factory=dict)
    _session: Any = None
    _cache: dict[str, Any] = field(default_factory=dict)
    _regional: dict[str, AwsClients] = field(default_factory=dict)

    def session(self):
        """Return the boto3 ``Session`` (created on first use)."""
        if self._session is None:
            import boto3

            self._session = boto3.session.Session(
                profile_name=self.target.profile,
                region_name=self.target.region,
                aws_access_key_id=self.target.access_key_id,
                aws_secret_access_key=self.target.secret_access_key,
            )
        return self._session

    def client(self, service: str):
        """Return a boto3 client for ``service`` (e.g. ``"ssm"``), built once."""
        if service in self.overrides:
            return self.overrides[service]
        if service not in self._cache:
            from botocore.config import Config

            config = Config(retries={"mode": "standard", "max_attempts": self.target.max_attempts})
            kwargs: dict[str, Any] = {"config": config}
            if self.target.endpoint_url:
                kwargs["endpoint_url"] = self.target.endpoint_url
            self._cache[service] = self.session().client(service, **kwargs)
        return self._cache[service]

    @property
    def region(self) -> str | None:
        """The effective region name (``None`` when none is configured anywhere)."""
        return self.target.region or self.session().region_name

    def in_region(self, region: str) -> AwsClients:
        """Clients of the same account and credentials in ``region`` (e.g. ``eu-west-1``):
        ``self`` for its own region (or ``""``), else an ``AwsClients`` for that region, built
        once (every call returns the same one, so its clients are reused)."""
        if not region or region == self.region:
            return self
        if region not in self._regional:
            self._regional[region] = AwsClients(replace(self.target, region=region))
        return self._regional[region]
