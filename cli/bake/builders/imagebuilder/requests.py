"""Filling the rendered request bodies in: ``${...}`` placeholders, empty values dropped, and the
content digest that identifies a component or recipe (``bake:content-sha256``)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from bake.errors import RenderError

_PLACEHOLDER = re.compile(r"\$\{([^}]+)\}")


def content_sha256(value: str | Mapping[str, Any]) -> str:
    """SHA-256 hex of a text, or of a request body as canonical JSON (sorted keys)."""
    text = (
        value
        if isinstance(value, str)
        else json.dumps(value, sort_keys=True, separators=(",", ":"))
    )
    return hashlib.sha256(text.encode()).hexdigest()


def fill_placeholders(data: Any, values: Mapping[str, Any]) -> Any:
    """Replace ``${key}`` placeholders in every string of ``data`` (dicts, lists, strings).

    A string that is exactly one placeholder takes the value itself (which may be a list);
    placeholders inside longer strings are replaced by ``str(value)``.

    Raises:
        RenderError: a placeholder has no value (names it).
    """
    if isinstance(data, Mapping):
        return {k: fill_placeholders(v, values) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [fill_placeholders(v, values) for v in data]
    if not isinstance(data, str):
        return data
    whole = _PLACEHOLDER.fullmatch(data)
    if whole:
        return _value(whole.group(1), values)
    return _PLACEHOLDER.sub(lambda m: str(_value(m.group(1), values)), data)


def _value(key: str, values: Mapping[str, Any]) -> Any:
    if key not in values:
        raise RenderError(
            f"rendered document has the placeholder ${{{key}}} that the Image Builder driver "
            f"cannot fill (known: {', '.join(sorted(values))})"
        )
    return values[key]


def _drop_none(data: Any) -> Any:
    """Remove ``None``, empty strings, lists and dicts from nested dicts and lists, so an unset
    option (e.g. ``${kms_key_id}`` without a key) drops its field instead of sending ``null``."""
    if isinstance(data, Mapping):
        cleaned = {k: _drop_none(v) for k, v in data.items()}
        return {k: v for k, v in cleaned.items() if v not in (None, [], {}, "")}
    if isinstance(data, list | tuple):
        return [v for v in (_drop_none(v) for v in data) if v not in (None, [], {}, "")]
    return data


def _component_arns(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(k.split(":", 1)[1], v) for k, v in values.items() if k.startswith("component:")]


def _account_of(arn: str) -> str:
    parts = arn.split(":")
    return parts[4] if len(parts) > 4 else ""
