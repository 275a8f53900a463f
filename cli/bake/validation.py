"""Checks before any work, run together, every failure reported at once.

pcluster's validators are the model (``pcluster/validators/common.py``: small validators that
each return findings with a level, run as one pass before anything is created). Here a check is
any function that raises a one-line ``BakeError`` when something is wrong; ``Findings.check``
runs it and turns the error into an error ``Finding``, and ``Findings.warn`` records a warning.
``Findings.raise_errors`` then prints the warnings and raises one error naming every failure,
so a user fixes everything in one round instead of one problem per run.

A check that needs another's result (the mirror probe needs the resolved release) is simply
not run when that one failed: it has nothing to check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from bake.errors import BakeError, CheckFailures

T = TypeVar("T")

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Finding:
    """One check's result worth reporting.

    Attributes:
        check: the check's name, e.g. ``catalog``, ``mirror``, ``builder``.
        level: ``error`` (stops the bake) or ``warning`` (printed, the bake goes on).
        message: one line naming the file or field and how to fix it.
        error: the ``BakeError`` an error finding came from (its class sets the exit code).
    """

    check: str
    level: str
    message: str
    error: BakeError | None = None


class Findings:
    """Collects the findings of one validation pass (see the module docstring)."""

    def __init__(self) -> None:
        self.items: list[Finding] = []

    def check(self, name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """Run ``fn(*args, **kwargs)``; a ``BakeError`` it raises becomes an error finding.

        Returns:
            ``fn``'s value, or ``None`` when it failed.
        """
        try:
            return fn(*args, **kwargs)
        except BakeError as exc:
            self.items.append(Finding(name, ERROR, exc.format_message(), exc))
            return None

    def warn(self, name: str, message: str) -> None:
        """Record a warning (printed by ``raise_errors``; the bake goes on)."""
        self.items.append(Finding(name, WARNING, message))

    @property
    def errors(self) -> list[Finding]:
        """The error findings, in the order the checks ran."""
        return [f for f in self.items if f.level == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        """The warning findings, in the order the checks ran."""
        return [f for f in self.items if f.level == WARNING]

    def raise_errors(self, progress: Callable[[str], None] = lambda _line: None) -> None:
        """Report the warnings through ``progress``, then fail if any check failed.

        Raises:
            BakeError: the one failure's own error, unchanged (its message and exit code);
                failures with the same message count once.
            CheckFailures: several failures, ``"<n> problems before baking: a; b"``; exit 2
                when any of them is bad input, else 1.
        """
        for finding in self.warnings:
            progress(f"warning: {finding.message}")
        errors: list[Finding] = []
        for finding in self.errors:  # the same problem found twice (e.g. per arch) is one
            if all(f.message != finding.message for f in errors):
                errors.append(finding)
        if len(errors) == 1 and errors[0].error is not None:
            raise errors[0].error
        if errors:
            exit_code = 2 if any(f.error and f.error.exit_code == 2 for f in errors) else 1
            raise CheckFailures(
                f"{len(errors)} problems before baking: " + "; ".join(f.message for f in errors),
                exit_code,
            )
