"""The one place botocore failures become one-line ``AwsError`` messages.

``call(service, operation, fn, **kwargs)`` runs one API call and translates failures:
missing credentials or region, AccessDenied (naming the action), throttling and quota errors,
unreachable endpoints. The action names follow the IAM service prefixes of each API
(e.g. ``ssm:PutParameter``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from bake.errors import AwsError

log = logging.getLogger("bake.aws")
T = TypeVar("T")

# error codes that mean "you are not allowed" across AWS services
_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthFailure"}
_CREDENTIALS = {
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
}
_QUOTA = {"LimitExceededException", "ServiceQuotaExceededException", "ResourceLimitExceeded"}
# throttling error codes: botocore's standard retry mode's list
# (botocore/retries/standard.py, ThrottledRetryableChecker) less LimitExceededException, which
# Image Builder, IAM and others use for quotas (_QUOTA above)
_THROTTLE = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
}


def translate_unexpected(exc: BaseException) -> str | None:
    """Turn a botocore exception that escaped the wrappers into one line, or ``None``.

    Args:
        exc: any exception.

    Returns:
        a message for credential, region and connection problems; ``None`` for anything else.
    """
    from botocore import exceptions as bce

    if isinstance(exc, bce.NoCredentialsError | bce.PartialCredentialsError):
        return (
            "no AWS credentials found: configure them (aws configure, AWS_PROFILE, an instance "
            "role) or use the embedded AWS with --local / `bake sandbox start`"
        )
    if isinstance(exc, bce.NoRegionError):
        return (
            "no AWS region set: pass --region or set AWS_REGION / a profile region "
            "(use --local for the embedded AWS)"
        )
    if isinstance(exc, bce.ProfileNotFound):
        return f"{exc}: check --profile against ~/.aws/config"
    if isinstance(exc, bce.EndpointConnectionError):
        return (
            f"cannot reach the AWS endpoint {exc.kwargs.get('endpoint_url')}: check "
            "--endpoint-url and your network (for the embedded AWS: `bake sandbox start`)"
        )
    if isinstance(exc, bce.ClientError):
        return describe_client_error(exc, "")
    return None


def describe_client_error(exc: Exception, action: str) -> str:
    """One line for a botocore ``ClientError``.

    Args:
        exc: a ``botocore.exceptions.ClientError``.
        action: the IAM action of the call, e.g. ``"ssm:PutParameter"`` (may be empty).

    Returns:
        the message, naming the missing permission for AccessDenied.
    """
    err = getattr(exc, "response", {}).get("Error", {})
    code = err.get("Code", "Unknown")
    msg = err.get("Message", str(exc))
    if code in _DENIED:
        what = f" {action}" if action else ""
        return f"AWS denied{what}: {msg} (grant{what or ' the permission'} to your role)"
    if code in _CREDENTIALS:
        return f"AWS rejected the credentials ({code}): refresh or reconfigure them"
    if code in _QUOTA:
        return (
            f"AWS quota reached for {action or 'this call'} ({code}): {msg}; "
            "raise the quota or free resources"
        )
    if code in _THROTTLE:
        return (
            f"AWS throttled {action or 'the call'} beyond the retry budget ({code}); "
            "try again later"
        )
    return f"{action + ': ' if action else ''}{code}: {msg}"


def call(action: str, fn: Callable[..., T], /, **kwargs: Any) -> T:
    """Run one AWS API call, logging it and translating failures to ``AwsError``.

    Args:
        action: the IAM action, ``"<service>:<Operation>"``.
        fn: the bound client method.
        **kwargs: the request parameters.

    Returns:
        the API response.

    Raises:
        AwsError: for any botocore client or connection failure (one-line message).
    """
    from botocore import exceptions as bce

    log.debug("aws %s", action)
    try:
        return fn(**kwargs)
    except bce.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        raise AwsError(
            describe_client_error(exc, action), code=code, throttled=code in _THROTTLE
        ) from exc
    except (
        bce.NoCredentialsError,
        bce.NoRegionError,
        bce.EndpointConnectionError,
        bce.ProfileNotFound,
        bce.PartialCredentialsError,
    ) as exc:
        raise AwsError(f"{action}: {translate_unexpected(exc) or exc}") from exc


def error_code(exc: BaseException) -> str | None:
    """Return the AWS error code behind an ``AwsError`` or ``ClientError``, if any."""
    if isinstance(exc, AwsError) and exc.code:
        return exc.code
    cause = exc.__cause__ if isinstance(exc, AwsError) else exc
    response = getattr(cause, "response", None)
    if isinstance(response, dict):
        return response.get("Error", {}).get("Code")
    return None
