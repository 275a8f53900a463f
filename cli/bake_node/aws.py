"""boto3 clients for the agent: botocore's ``standard`` retry mode, endpoints from node.yaml.

Throttling (``ThrottlingException``) and transient errors are retried by botocore itself
(botocore docs, "Retries": standard mode, exponential backoff with jitter, a client-side retry
quota); the agent has no retry loop of its own. ``endpoints`` in node.yaml (VPC endpoints, or
the embedded AWS in tests) override the per-service endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_ATTEMPTS = 10  # total attempts per call; standard mode's default is 3


@dataclass
class Clients:
    """A lazy cache of boto3 clients for one region.

    Args:
        region: region name (``NodeConfig.region``).
        endpoints: service name -> endpoint URL overrides.
        overrides: service name -> pre-built client (tests: clients with event hooks).
        hooks: ``(event name, handler)`` pairs registered on every client built here (the
            benchmark counts calls with ``before-call``).
    """

    region: str
    endpoints: dict[str, str] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    hooks: list[tuple[str, Any]] = field(default_factory=list)
    _session: Any = None
    _cache: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str):
        """Return the client for ``service`` (``"dynamodb"``, ``"ssm"``, ``"ec2"``...)."""
        if service in self.overrides:
            return self.overrides[service]
        if service not in self._cache:
            import boto3
            from botocore.config import Config

            if self._session is None:
                self._session = boto3.session.Session(region_name=self.region)
            config = Config(
                retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
                connect_timeout=5,
                read_timeout=30,
            )
            client = self._session.client(
                service, endpoint_url=self.endpoints.get(service), config=config
            )
            for event, handler in self.hooks:
                client.meta.events.register(event, handler)
            self._cache[service] = client
        return self._cache[service]


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ``ClientError`` (e.g. ``ParameterNotFound``), else None."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("Error", {}).get("Code")
    return None
