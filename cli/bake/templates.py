"""The one loader of bake's templates: the five data folders shipped inside the wheel.

The repository's ``components/``, ``image-recipes/``, ``userdata/``, ``cloudformation/`` and
``manifests/`` folders are packaged as ``bake.assets.<folder>`` (see pyproject.toml) and read
through ``importlib.resources`` only, never through paths relative to a source file or the
working directory. Jinja2 runs with ``StrictUndefined`` (a missing value fails the render) and
every output is parsed or checked straight after rendering (YAML, JSON and TOML parsed, shell
checked with ``bash -n``), so a template bug fails at render time with the template's name.
"""

from __future__ import annotations

import json
import re
import tomllib
from functools import cache
from importlib import resources
from typing import Any

import jinja2
import yaml

from bake.errors import RenderError

FOLDERS: dict[str, str] = {
    "components": "bake.assets.components",
    "image-recipes": "bake.assets.image_recipes",
    "userdata": "bake.assets.userdata",
    "cloudformation": "bake.assets.cloudformation",
    "manifests": "bake.assets.manifests",
}


def _folder(folder: str):
    try:
        return resources.files(FOLDERS[folder])
    except KeyError:
        raise RenderError(f"unknown template folder {folder!r}") from None


def list_templates(folder: str, suffix: str = "") -> list[str]:
    """Names of the files in a data folder (recursively, ``/``-separated), sorted.

    Args:
        folder: one of ``FOLDERS``.
        suffix: keep only names ending with this (e.g. ``".yaml.j2"``).
    """
    names: list[str] = []

    def walk(node, prefix: str) -> None:
        for child in node.iterdir():
            if child.name.startswith(("_", ".")) and child.name != "__init__.py":
                if child.name.startswith("__"):
                    continue
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            elif child.name.endswith(suffix) and child.name != "__init__.py":
                names.append(prefix + child.name)

    walk(_folder(folder), "")
    return sorted(names)


def read_text(folder: str, name: str) -> str:
    """The raw text of a file in a data folder (no rendering).

    Raises:
        RenderError: the file does not exist.
    """
    node = _folder(folder)
    for part in name.split("/"):
        node = node.joinpath(part)
    try:
        return node.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError):
        raise RenderError(f"template {folder}/{name} not found in the bake package") from None


@cache
def environment(folder: str) -> jinja2.Environment:
    """The Jinja2 environment for one data folder (``StrictUndefined``, no autoescape)."""

    def load(name: str):
        return read_text(folder, name), f"{folder}/{name}", lambda: True

    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(load),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["to_json"] = lambda v: json.dumps(v, sort_keys=True)
    env.filters["to_yaml_scalar"] = lambda v: json.dumps(v)  # JSON strings are YAML scalars
    return env


def render_text(folder: str, name: str, context: dict[str, Any]) -> str:
    """Render ``folder/name`` with ``context``.

    Returns:
        the rendered text.
    Raises:
        RenderError: unknown template or undefined variable (names template and variable).
    """
    try:
        text = environment(folder).get_template(name).render(**context)
    except jinja2.UndefinedError as exc:
        raise RenderError(f"template {folder}/{name}: {exc}") from exc
    except jinja2.TemplateError as exc:
        raise RenderError(f"template {folder}/{name}: {exc}") from exc
    check_rendered(f"{folder}/{name}", text)
    return text


def check_rendered(label: str, text: str) -> None:
    """Parse or check a rendered text by its file type (the name without ``.j2``): TOML with
    ``tomllib``, JSON with ``json``, shell (``.sh``) with ``bash -n``; other types pass (YAML
    is parsed by ``render_yaml``).

    Raises:
        RenderError: naming ``label`` and the parser's complaint.
    """
    kind = label.removesuffix(".j2").rsplit(".", 1)[-1]
    try:
        if kind == "toml":
            tomllib.loads(text)
        elif kind == "json":
            json.loads(text)
        elif kind == "sh":
            check_shell({label: text})
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise RenderError(f"template {label} rendered invalid {kind.upper()}: {exc}") from exc


def check_shell(scripts: dict[str, str]) -> None:
    """Check the syntax of shell scripts with one ``bash -n`` run (each script becomes the body
    of its own function, so they are checked together but apart).

    Args:
        scripts: label (e.g. ``bake-images: build/ImportImages``) -> script text.

    Raises:
        RenderError: naming the label of the first script with a syntax error and bash's
            message.
    """
    import subprocess

    lines: list[str] = []
    owners: list[tuple[int, int, str]] = []  # (first line, last line, label), 1-based
    for i, (label, text) in enumerate(scripts.items()):
        lines.append(f"_bake_script_{i}() {{")
        first = len(lines) + 1
        lines += text.splitlines()
        owners.append((first, len(lines), label))
        lines += [":", "}"]
    result = subprocess.run(
        ["bash", "-n"], input="\n".join(lines) + "\n", capture_output=True, text=True
    )
    if result.returncode == 0:
        return
    message = result.stderr.strip().splitlines()[0] if result.stderr.strip() else "syntax error"
    found = re.search(r"line (\d+):", message)
    where = next(iter(scripts), "?")
    if found:
        line = int(found.group(1))
        where = next((label for a, b, label in owners if a <= line <= b + 2), where)
        message = message.split(":", 2)[-1].strip()
    raise RenderError(f"{where} rendered a shell script bash rejects: {message}")


def render_yaml(folder: str, name: str, context: dict[str, Any]) -> tuple[str, Any]:
    """Render a YAML template and parse the result.

    Returns:
        ``(text, parsed)``.
    Raises:
        RenderError: render failure, or the output is not valid YAML.
    """
    text = render_text(folder, name, context)
    try:
        return text, yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RenderError(f"template {folder}/{name} rendered invalid YAML: {exc}") from exc


def render_json(folder: str, name: str, context: dict[str, Any]) -> tuple[str, Any]:
    """Render a JSON template and parse the result; ``RenderError`` on invalid JSON."""
    text = render_text(folder, name, context)
    try:
        return text, json.loads(text)
    except json.JSONDecodeError as exc:
        raise RenderError(f"template {folder}/{name} rendered invalid JSON: {exc}") from exc
