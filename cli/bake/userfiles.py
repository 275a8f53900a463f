"""The one place bake reads files a user wrote and writes into paths a user named.

Every failure is a one-line ``UsageError`` (exit code 2) that names the file or option and says
how to fix it, never an ``OSError`` or ``UnicodeDecodeError`` reaching the user as an internal
error:

- ``read_text(path, what)``: a user file (cluster file, catalog overlay) as UTF-8 text; a
  missing, unreadable, directory or binary file is named.
- ``write_files(out_dir, files, option)``: a set of rendered files into a directory, all or
  nothing: everything is written into a staging directory beside the target first, then moved
  into place; a failure removes the staging directory and any directory this call created, so
  nothing half-written is left.
- ``write_file(path, text, option)``: one file (``bake init``), created with its parents.
- ``prepare_dir(path, option)``: a directory bake will write into (``--log-dir``), created and
  checked writable.
- ``describe_os_error(exc, data_dir)``: the line for an ``OSError`` that escaped everything
  else (``bake.main``'s last resort), naming ``--data-dir`` when the path is under it.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from bake.errors import UsageError


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def read_text(path: Path, what: str, error: type[UsageError] = UsageError) -> str:
    """Read a user file as UTF-8 text.

    Args:
        path: the file.
        what: what it is, for the message (e.g. ``"cluster file"``).
        error: the ``UsageError`` subclass to raise (e.g. ``ClusterFileError``).

    Returns:
        the text.

    Raises:
        error: missing, unreadable, a directory, or not UTF-8 text (binary).
    """
    try:
        data = Path(path).read_bytes()
    except IsADirectoryError:
        raise error(f"{what} {path} is a directory: pass a file") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {_reason(exc)}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(
            f"{what} {path} is not UTF-8 text (byte {exc.start} is 0x{data[exc.start]:02x}; "
            "a binary file?): pass the YAML file"
        ) from None


def _missing_parents(path: Path) -> list[Path]:
    """The ancestors of ``path`` (itself included) that do not exist yet, outermost first."""
    missing = []
    for candidate in [path, *path.parents]:
        if candidate.exists():
            break
        missing.append(candidate)
    return list(reversed(missing))


def _cannot(option: str, path: Path, exc: OSError, kind: str = "directory") -> UsageError:
    return UsageError(
        f"{option} {path}: cannot write the {kind} ({_reason(exc)}): pass a writable {kind}"
    )


def prepare_dir(path: Path, option: str) -> Path:
    """Create ``path`` (with parents) and check that bake can write into it.

    Args:
        path: the directory.
        option: the option that named it, for the message (e.g. ``"--log-dir"``).

    Returns:
        ``path``.

    Raises:
        UsageError: it cannot be created or written ("nothing created" on failure).
    """
    path = Path(path)
    created = _missing_parents(path.absolute())
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".bake-write-check-")
        probe.close()
    except OSError as exc:
        for directory in reversed(created):
            try:
                directory.rmdir()
            except OSError:
                break
        raise _cannot(option, path, exc) from None
    return path


def write_files(out_dir: Path, files: Mapping[str, str | bytes], option: str = "-o") -> list[Path]:
    """Write ``{relative path: content}`` under ``out_dir``, all or nothing.

    Files already in ``out_dir`` that are not in ``files`` stay; files in ``files`` replace
    what is there.

    Args:
        out_dir: the output directory (created when missing).
        files: relative paths (``components/x.yaml``) to text (UTF-8) or bytes.
        option: the option that named ``out_dir``, for messages.

    Returns:
        the paths written, in ``files`` order.

    Raises:
        UsageError: ``out_dir`` cannot be created or written, or a file cannot be placed (then
            nothing from this call is left behind, including directories it created).
    """
    out_dir = Path(out_dir)
    created = _missing_parents(out_dir.absolute())
    staging: Path | None = None
    placed: list[Path] = []
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".bake-out-", dir=out_dir))
        for rel, content in files.items():
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            data = content.encode("utf-8") if isinstance(content, str) else content
            target.write_bytes(data)
            os.chmod(target, 0o644)
        for rel in files:
            final = out_dir / rel
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / rel, final)
            placed.append(final)
    except OSError as exc:
        if created:
            shutil.rmtree(created[0], ignore_errors=True)
        raise _cannot(option, out_dir, exc) from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return placed


def write_file(path: Path, text: str, option: str, mode: int = 0o644) -> Path:
    """Write one text file (parents created), replacing it atomically.

    Raises:
        UsageError: it cannot be written (nothing left behind).
    """
    path = Path(path)
    created = _missing_parents(path.parent.absolute())
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        if created:
            shutil.rmtree(created[0], ignore_errors=True)
        raise _cannot(option, path, exc, kind="file") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return path


def describe_os_error(exc: OSError, data_dir: Path | None) -> tuple[str, int]:
    """The one line and exit code for an ``OSError`` nothing else translated.

    Args:
        exc: the error (its ``filename`` names the path).
        data_dir: bake's data dir (``--data-dir``), to name it when the path lies under it.

    Returns:
        ``(message, exit code)``: 1 for a full disk, 2 for a path the user can fix.
    """
    name = exc.filename
    reason = _reason(exc)
    if exc.errno == errno.ENOSPC:
        return f"no space left on the device writing {name or 'a file'}: free some space", 1
    if name and data_dir is not None:
        try:
            inside = Path(str(name)).absolute().is_relative_to(Path(data_dir).absolute())
        except (TypeError, ValueError):
            inside = False
        if inside or Path(data_dir).absolute().is_relative_to(Path(str(name)).absolute()):
            return (
                f"--data-dir {data_dir}: cannot use {name} ({reason}): pass a writable "
                "--data-dir or set BAKE_DATA_DIR",
                2,
            )
    return f"cannot use {name or 'a path'}: {reason} (check the path and its permissions)", 2
