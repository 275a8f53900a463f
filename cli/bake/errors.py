"""The user-facing error family of bake.

Every failure a user can cause or fix (bad version, missing credentials, AccessDenied, checksum
mismatch, build failure) is a ``BakeError``. ``bake.main`` prints its one-line message and exits
with its ``exit_code``; a traceback is shown only with ``--debug``. Modeled on the exception
family of aws-sam-cli (``samcli/commands/exceptions.py``).
"""

from __future__ import annotations

import click


class BakeError(click.ClickException):
    """A failure the user can act on.

    Args:
        message: one line saying what went wrong and, where possible, how to fix it.

    ``exit_code`` is 1 unless a subclass says otherwise.
    """

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)

    def format_message(self) -> str:  # one line, always
        return " ".join(str(self.message).split())


class UsageError(BakeError):
    """Bad input on the command line or in a file the user wrote (exit code 2)."""

    exit_code = 2


class CatalogError(UsageError):
    """An unknown or malformed version, arch or catalog overlay."""


class RenderError(BakeError):
    """A template failed to render or rendered into an invalid document (a bake bug)."""


class ArtifactError(BakeError):
    """An artifact could not be fetched, or its SHA-256 did not match the catalog."""


class BuildError(BakeError):
    """An image build step failed; the message names component, phase, step and log file."""


class AwsError(BakeError):
    """An AWS call failed in a way the user can fix (credentials, permissions, quotas).

    Args:
        message: the one line (``bake.aws.errors.describe_client_error``).
        code: the AWS error code behind it (``"ThrottlingException"``, ``"ParameterNotFound"``),
            ``None`` for connection, credential and region failures.
        throttled: AWS throttled the call beyond botocore's retries (``bake.aws.errors``
            classifies the codes).
    """

    def __init__(self, message: str, code: str | None = None, throttled: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.throttled = throttled


class SandboxError(BakeError):
    """The embedded AWS (moto server) is not running or could not be started."""


class EnvironmentProblem(BakeError):
    """The machine lacks something bake needs (root, a Debian package, free disk space)."""


class CheckFailures(BakeError):
    """Several checks before any work failed; the message lists every one (one line).

    Args:
        message: ``"<n> problems before baking: <first>; <second>; ..."``.
        exit_code: 2 when any failure is bad input (a ``UsageError``), else 1.
    """

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
