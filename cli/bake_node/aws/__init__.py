"""The agent's only door to AWS: boto3 clients, and one small wrapper module per service.

``Clients`` builds boto3 clients with botocore's ``standard`` retry mode and endpoints from
node.yaml; ``bake_node.aws.dynamodb``, ``.ssm`` and ``.ec2`` are the calls the agent makes, each
taking the boto3 client first (as ``bake.aws`` does; the agent must not import ``bake``). The
rest of the agent never calls a boto3 client or reads a botocore error code itself: a failed
call raises ``AwsCallError`` (one line naming the action, with the AWS error ``code``), and the
outcomes the agent acts on (a failed condition, a missing parameter) are return values.

Throttling (``ThrottlingException``) and transient errors are retried by botocore itself
(botocore docs, "Retries": standard mode, exponential backoff with jitter, a client-side retry
quota); the agent has no retry loop of its own. ``endpoints`` in node.yaml (VPC endpoints, or
the embedded AWS in tests) override the per-service endpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bake_node.errors import NodeError

T = TypeVar("T")

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


class AwsCallError(NodeError):
    """An AWS call failed (after botocore's retries).

    Args:
        message: one line, ``"<service>:<Action> failed: <code>: <AWS message>"``.
        code: the AWS error code (``AccessDeniedException``), ``None`` for connection errors.
    """

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ``ClientError`` or an ``AwsCallError``, else None."""
    if isinstance(exc, AwsCallError):
        return exc.code
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("Error", {}).get("Code")
    return None


def call(action: str, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run one boto3 call; a botocore failure becomes an ``AwsCallError``.

    Args:
        action: ``"<service>:<Action>"`` (IAM's name, e.g. ``dynamodb:PutItem``) for the message.
        fn: the bound client method (or paginator step).

    Raises:
        AwsCallError: with the AWS error code (``None`` for connection or credential errors).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fn(*args, **kwargs)
    except ClientError as exc:
        code = error_code(exc)
        detail = exc.response.get("Error", {}).get("Message", "") or str(exc)
        raise AwsCallError(f"{action} failed: {code}: {detail}", code) from exc
    except BotoCoreError as exc:
        raise AwsCallError(f"{action} failed: {exc}") from exc
