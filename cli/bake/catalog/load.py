"""Loading the catalog: the shipped ``bake/data/catalog.yaml`` merged with the user's overlays,
each validated against ``bake/data/catalog.schema.json`` (JSON Schema 2020-12) on load; and the
user's mirror URLs (``--mirror``), checked here too.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from bake.catalog.model import PATCH_RE, SCHEMA, Catalog
from bake.errors import CatalogError

MIRROR_SCHEMES = ("http", "https", "file")


def parse_mirror(
    value: str, option: str = "--mirror", allow_dir: bool = False, must_exist: bool = True
) -> str:
    """Check a mirror base given by the user and return it without a trailing slash.

    Accepted: ``http://host[:port][/path]``, ``https://...`` and ``file:///abs/path`` (and a
    plain existing directory with ``allow_dir``, which becomes a ``file://`` URL). S3 is not a
    mirror: builds read a staged bucket with ``--artifacts s3://...``.

    Args:
        value: what the user passed.
        option: the option name, for the message.
        allow_dir: accept a local directory (``bake stage``).
        must_exist: a directory must exist (it is read); ``False`` for one bake writes into.

    Returns:
        the normalized base URL.

    Raises:
        CatalogError: another scheme (``ftp://``, ``s3://``), an unparsable URL (``http://[::1``),
            no host, a bad port, or a directory that does not exist.
    """
    raw = value.strip()
    if "://" not in raw:
        if allow_dir:
            path = Path(raw).expanduser()
            if must_exist and not path.is_dir():
                raise CatalogError(
                    f"{option} {value}: no such directory; pass a directory or an "
                    "http(s)://, file:// URL"
                )
            return path.resolve().as_uri()
        raise CatalogError(
            f"{option} {value!r} is not a URL: use http://host[:port]/path, https://... or "
            "file:///abs/path"
        )
    try:
        parts = urlsplit(raw)
        port = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise CatalogError(f"{option} {value!r} is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme == "s3":
        raise CatalogError(
            f"{option} {value!r}: S3 is not a mirror; stage with `bake stage` and build with "
            "--artifacts s3://BUCKET/PREFIX"
        )
    if scheme not in MIRROR_SCHEMES:
        raise CatalogError(
            f"{option} {value!r}: unsupported scheme {parts.scheme!r}; use http, https or file"
        )
    if scheme in ("http", "https") and not parts.hostname:
        raise CatalogError(f"{option} {value!r} has no host: use {scheme}://host[:port]/path")
    if scheme == "file" and (parts.netloc or not parts.path.startswith("/")):
        raise CatalogError(f"{option} {value!r}: a file URL is file:///absolute/path")
    if parts.query or parts.fragment:
        raise CatalogError(f"{option} {value!r}: a mirror base has no ?query or #fragment")
    del port
    return raw.rstrip("/")


# ---------------------------------------------------------------- loading and validation


@lru_cache(maxsize=1)
def catalog_schema() -> dict[str, Any]:
    """The catalog's JSON Schema (``bake/data/catalog.schema.json``; a test holds it to the
    model's constants: arches, OSes, artifact names, version patterns)."""
    return json.loads(resources.files("bake.data").joinpath("catalog.schema.json").read_text())


def _validate(doc: Any, source: str) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(catalog_schema())
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        message = err.message
        if err.validator == "pattern" and err.schema.get("pattern") == PATCH_RE.pattern:
            # a version key or value: say what is expected instead of the regular expression
            message = f"{err.instance!r} is not a version like 1.30.13 (MAJOR.MINOR.PATCH)"
        raise CatalogError(f"invalid catalog {source}: at {where}: {message}")


def _merge(base: dict, overlay: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read(path: Path | None) -> tuple[dict, str]:
    if path is None:
        text = resources.files("bake.data").joinpath("catalog.yaml").read_text()
        source = "bake/data/catalog.yaml (shipped)"
    else:
        from bake.userfiles import read_text

        text = read_text(path, "catalog overlay", CatalogError)
        source = str(path)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogError(
            f"catalog overlay {source} is not valid YAML: {exc}".splitlines()[0]
        ) from exc
    if not isinstance(doc, dict):
        raise CatalogError(f"catalog {source} must be a mapping with schema: {SCHEMA}")
    return doc, source


def load_catalog(overlays: Sequence[Path] = ()) -> Catalog:
    """Load the shipped catalog and merge the user's overlays over it, validating each.

    Args:
        overlays: paths of ``bake.catalog/v1`` YAML files, applied in order (later wins).
    Returns:
        the merged ``Catalog``.
    Raises:
        CatalogError: unreadable file, bad YAML, or a schema violation (names file and field).
    """
    merged: dict[str, Any] = {}
    sources = []
    for path in [None, *overlays]:
        doc, source = _read(path)
        _validate(doc, source)
        merged = _merge(merged, doc)
        sources.append(source)
    _validate(merged, "(merged)")
    return Catalog(merged, tuple(sources))
