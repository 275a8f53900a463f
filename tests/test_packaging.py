"""A plain (non-editable) install ships the package, every sub-package and the template folders."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA_FOLDERS = {"components", "image-recipes", "userdata", "cloudformation", "manifests"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
    )
    (whl,) = out.glob("bake-*.whl")
    return whl


def _python_packages(base: Path, prefix: str) -> set[str]:
    found = set()
    for init in base.rglob("__init__.py"):
        if "__pycache__" in init.parts:
            continue
        rel = init.parent.relative_to(base)
        found.add(".".join([prefix, *rel.parts]) if rel.parts else prefix)
    return found


def test_every_package_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    for name, directory in config["package-dir"].items():
        on_disk = _python_packages(ROOT / directory, name)
        if name.startswith("bake.assets."):
            on_disk = {name}  # data folders: the folder itself, no sub-packages
        missing = on_disk - listed
        assert not missing, (
            f"add to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"
        )


def test_wheel_ships_every_template(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in DATA_FOLDERS:
        package = folder.replace("-", "_")
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                rel = path.relative_to(ROOT / folder).as_posix()
                assert f"bake/assets/{package}/{rel}" in names, (
                    f"{folder}/{rel} missing from the wheel"
                )
    assert "bake/data/catalog.yaml" in names


def test_installed_wheel_loads_templates_and_catalog(wheel, tmp_path):
    """Unpack the wheel alone on sys.path (no source tree) and use the loader from it."""
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    # dependencies from this venv's site-packages, without its .pth files (so no editable
    # finder): `bake` can only come from the unpacked wheel
    deps = [p for p in sys.path if "site-packages" in p]
    code = (
        f"import sys; sys.path[:0] = {[str(target), *deps]!r}\n"
        "import bake, bake.templates as t, bake.catalog as c\n"
        f"assert bake.__file__.startswith({str(target)!r}), bake.__file__\n"
        "print(len(t.list_templates('components')), c.load_catalog().minors()[0])\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    count, first_minor = out.stdout.split()
    assert int(count) >= 1 and first_minor == "1.30"
