"""The AWSTOE document model the local runner executes: the actions and phases it knows, step
properties (``onFailure``, ``maxAttempts``, ``timeoutSeconds``: the AWSTOE document schema),
parameter substitution (``{{ name }}`` with the document's ``parameters`` defaults), the
component, a step's result and the failure of one attempt.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACTIONS = (
    "ExecuteBash", "WebDownload", "CreateFile", "CreateFolder", "SetFilePermissions",
    "DeleteFile", "MoveFile", "S3Download",
)


PHASES = ("build", "validate", "test")


DEFAULT_TIMEOUT_S = 7200  # AWSTOE step default timeoutSeconds


ON_FAILURE = ("Abort", "Continue", "Ignore")


_PARAM_RE = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")


@dataclass(frozen=True)
class ComponentDoc:
    """One component to run: ``name``, parsed ``data`` (AWSTOE YAML) and its ``text``."""

    name: str
    data: Mapping[str, Any]
    text: str = ""


def as_component(doc: Any) -> ComponentDoc:
    """Accept a ``bake.render.Document``, a ``ComponentDoc`` or a ``(name, data, text)`` tuple."""
    if isinstance(doc, ComponentDoc):
        return doc
    if isinstance(doc, tuple):
        name, data, *rest = doc
        return ComponentDoc(name, data, rest[0] if rest else "")
    return ComponentDoc(doc.name, doc.data, getattr(doc, "text", ""))


@dataclass
class StepResult:
    """Outcome of one step: ``status`` is ``success``, ``failed`` or ``ignored``."""

    component: str
    phase: str
    step: str
    status: str
    exit_code: int | None
    seconds: float
    log: Path
    message: str = ""


@dataclass
class RunReport:
    """Every step's result, in order."""

    steps: list[StepResult] = field(default_factory=list)


class StepFailure(Exception):
    """Internal: one attempt of a step failed (``exit_code`` None for non-process failures)."""

    def __init__(self, message: str, exit_code: int | None = None, artifact: bool = False):
        super().__init__(message)
        self.exit_code = exit_code
        self.artifact = artifact


def _substitute(value: Any, params: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return _PARAM_RE.sub(lambda m: str(params.get(m.group(1), m.group(0))), value)
    if isinstance(value, list):
        return [_substitute(v, params) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, params) for k, v in value.items()}
    return value


def _params(data: Mapping[str, Any], overrides: Mapping[str, str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for entry in data.get("parameters") or []:
        for name, spec in entry.items():
            if isinstance(spec, dict) and "default" in spec:
                params[name] = str(spec["default"])
    params.update({k: str(v) for k, v in overrides.items()})
    return params


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "step"
