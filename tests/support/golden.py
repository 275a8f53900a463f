"""One golden-file check for every rendered artifact (pytest plugin, from tests/conftest.py).

``golden.check(directory, files)`` compares ``{relative path: text}`` with the files under
``directory`` and fails with one unified diff per differing file, so a reviewer reads what
changed. ``complete=True`` says ``files`` is all the directory should hold: a golden file no
longer rendered is reported too (and removed when updating).

Regenerate with ``make golden``, which runs ``pytest -m golden --update-golden``: every test that
uses the ``golden`` fixture carries the ``golden`` marker, whatever its name.
``BAKE_UPDATE_GOLDEN=1`` is the same as ``--update-golden``.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite the golden files of rendered artifacts instead of comparing (make golden)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "golden: compares rendered artifacts with golden files (the golden fixture)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "golden" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.golden)


@dataclass(frozen=True)
class Golden:
    """Compares rendered text with golden files, or rewrites them (``update``)."""

    update: bool

    def check(self, directory: Path, files: Mapping[str, str], complete: bool = False) -> None:
        """Compare ``files`` (``{path relative to directory: text}``) with ``directory``.

        Raises:
            pytest.fail.Exception: a file differs, is missing, or (``complete``) a golden file
                is not rendered any more; the message has the unified diffs.
        """
        stale = []
        if complete and directory.exists():
            golden = {str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()}
            stale = sorted(golden - set(files))
        if self.update:
            for rel, text in files.items():
                (directory / rel).parent.mkdir(parents=True, exist_ok=True)
                (directory / rel).write_text(text)
            for rel in stale:
                (directory / rel).unlink()
            return
        problems = [f"golden {directory / rel} is not rendered any more" for rel in stale]
        for rel, text in files.items():
            path = directory / rel
            want = path.read_text() if path.exists() else ""
            if want != text:
                problems.append(
                    "".join(
                        difflib.unified_diff(
                            want.splitlines(True),
                            text.splitlines(True),
                            os.path.relpath(path),
                            f"rendered/{rel}",
                        )
                    )
                )
        if problems:
            pytest.fail(
                "rendered output differs from the golden files (`make golden` accepts it; "
                "review the diff):\n" + "\n".join(problems),
                pytrace=False,
            )


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Golden:
    """The ``Golden`` checker; updating with ``--update-golden`` or ``BAKE_UPDATE_GOLDEN=1``."""
    update = request.config.getoption("--update-golden") or (
        os.environ.get("BAKE_UPDATE_GOLDEN") == "1"
    )
    return Golden(update=bool(update))
