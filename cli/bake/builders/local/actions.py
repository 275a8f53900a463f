"""The AWSTOE actions of the local runner (AWSTOE user guide, "Action modules supported by
AWSTOE"): ``ExecuteBash`` in the chroot, ``WebDownload`` and ``S3Download`` verified before the
file lands, and the file actions with paths mapped into the root filesystem. ``Actions`` is
mixed into ``bake.builders.local.runner.LocalRunner``, which dispatches a step's ``action`` to
``_do_<action>``.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bake.aws import s3
from bake.builders.local.awstoe import StepFailure
from bake.builders.local.chroot import CHROOT_ENV, rootfs_path
from bake.errors import AwsError


def _mode(value: Any) -> int:
    return int(str(value), 8)


class Actions:
    """The action implementations (``_do_<Action>(inputs, out, timeout_s)``); the runner provides
    ``rootfs``, ``chroot``, ``s3_client`` and ``progress``."""

    def _path(self, path: Any) -> Path:
        if not isinstance(path, str) or not path.startswith("/"):
            raise StepFailure(f"path {path!r} must be absolute")
        return rootfs_path(self.rootfs, path)

    @staticmethod
    def _list(inputs: Any) -> list[Mapping[str, Any]]:
        if isinstance(inputs, dict):
            return [inputs]
        if not isinstance(inputs, list):
            raise StepFailure("inputs must be a list of objects")
        return inputs

    def _do_ExecuteBash(self, inputs: Any, out, timeout_s: int | None) -> None:  # noqa: N802
        commands = (inputs or {}).get("commands") if isinstance(inputs, dict) else None
        if not isinstance(commands, list):
            raise StepFailure("ExecuteBash needs inputs.commands (a list of strings)")
        script = "\n".join(str(c) for c in commands)
        if self.chroot:
            argv = ["chroot", str(self.rootfs), "/bin/bash", "-e", "-c", script]
            cwd = "/"
        else:
            argv = ["/bin/bash", "-e", "-c", script]
            cwd = str(self.rootfs)
        out.write(f"command: {shlex.join(argv[:-1])} <script>\nscript:\n{script}\n")
        out.flush()
        proc = subprocess.Popen(
            argv, cwd=cwd, env=dict(CHROOT_ENV), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            self._write_streams(out, stdout, stderr)
            raise StepFailure(f"timed out after {timeout_s} s (timeoutSeconds)") from None
        self._write_streams(out, stdout, stderr)
        out.write(f"exit code: {proc.returncode}\n")
        if proc.returncode != 0:
            lines = (stderr or stdout).decode(errors="replace").strip().splitlines()
            raise StepFailure(lines[-1] if lines else "no output", exit_code=proc.returncode)

    @staticmethod
    def _write_streams(out, stdout: bytes, stderr: bytes) -> None:
        out.write("--- stdout\n" + stdout.decode(errors="replace"))
        out.write("\n--- stderr\n" + stderr.decode(errors="replace") + "\n")

    def _do_WebDownload(self, inputs: Any, out, timeout_s: int | None) -> None:  # noqa: N802
        for item in self._list(inputs):
            source = str(item.get("source", ""))
            dest = self._path(item.get("destination"))
            if str(item.get("destination")).endswith("/") or dest.is_dir():
                dest = dest / source.rstrip("/").rsplit("/", 1)[-1]
            algorithm = str(item.get("algorithm", "SHA256"))
            expected = item.get("checksum")
            if expected and algorithm.upper() != "SHA256":
                raise StepFailure(f"WebDownload algorithm {algorithm} is not supported: use SHA256")
            if dest.exists() and not item.get("overwrite", True):
                raise StepFailure(f"{item.get('destination')} exists and overwrite is false")
            out.write(f"download: {source} -> {item.get('destination')}\n")
            out.flush()
            digest = download(source, dest, expected, timeout_s)
            out.write(f"sha256: {digest}\n")

    def _do_S3Download(self, inputs: Any, out, _timeout: int | None) -> None:  # noqa: N802
        """AWSTOE S3Download of single objects (``s3://bucket/key``; the key-prefix ``/*`` form
        is not supported here), fetched on the host with ``s3_client`` into the rootfs. As in
        AWSTOE the destination folder must exist and there is no checksum input (bake's
        documents check the SHA-256 right after the downloads). The bytes go to a ``.part``
        file that is renamed into place only when complete."""
        for item in self._list(inputs):
            source = str(item.get("source", ""))
            bucket, _, key = source.removeprefix("s3://").partition("/")
            if not source.startswith("s3://") or not bucket or not key or key.endswith("*"):
                raise StepFailure(f"S3Download source {source!r} must be s3://bucket/key")
            if self.s3_client is None:
                raise StepFailure(
                    f"cannot fetch {source}: this local build has no S3 client", artifact=True
                )
            dest = self._path(item.get("destination"))
            if str(item.get("destination")).endswith("/"):
                dest = dest / key.rsplit("/", 1)[-1]
            if not dest.parent.is_dir():
                raise StepFailure(f"S3Download destination folder of {dest.name} does not exist")
            if dest.exists() and not item.get("overwrite", True):
                raise StepFailure(f"{item.get('destination')} exists and overwrite is false")
            owner = item.get("expectedBucketOwner")
            out.write(f"s3download: {source} -> {item.get('destination')}\n")
            out.flush()
            try:
                sha256 = s3.download(self.s3_client, bucket, key, dest, str(owner or "") or None)
            except AwsError as exc:
                raise StepFailure(
                    f"cannot fetch {source}: {exc.code or exc.format_message()}", artifact=True
                ) from exc
            except OSError as exc:
                raise StepFailure(f"cannot fetch {source}: {exc}", artifact=True) from exc
            out.write(f"sha256: {sha256}\n")

    def _do_CreateFile(self, inputs: Any, out, _timeout: int | None) -> None:  # noqa: N802
        for item in self._list(inputs):
            path = self._path(item.get("path"))
            if path.exists() and not item.get("overwrite", True):
                raise StepFailure(f"{item.get('path')} exists and overwrite is false")
            path.parent.mkdir(parents=True, exist_ok=True)
            content = item.get("content", "")
            if item.get("encoding") == "base64":
                import base64

                path.write_bytes(base64.b64decode(content))
            else:
                path.write_text(str(content), encoding="utf-8")
            out.write(f"created file {item.get('path')} ({path.stat().st_size} bytes)\n")
            self._owner_mode(path, item, out)

    def _do_CreateFolder(self, inputs: Any, out, _timeout: int | None) -> None:  # noqa: N802
        for item in self._list(inputs):
            path = self._path(item.get("path"))
            path.mkdir(parents=True, exist_ok=True)
            out.write(f"created folder {item.get('path')}\n")
            self._owner_mode(path, item, out)

    def _do_SetFilePermissions(self, inputs: Any, out, _timeout: int | None) -> None:  # noqa: N802
        for item in self._list(inputs):
            path = self._path(item.get("path"))
            if not path.exists():
                raise StepFailure(f"{item.get('path')} does not exist")
            path.chmod(_mode(item["permissions"]))
            out.write(f"chmod {item['permissions']} {item.get('path')}\n")

    def _do_DeleteFile(self, inputs: Any, out, _timeout: int | None) -> None:  # noqa: N802
        for item in self._list(inputs):
            path = self._path(item.get("path"))
            if not (path.exists() or path.is_symlink()):
                raise StepFailure(f"{item.get('path')} does not exist")
            path.unlink()
            out.write(f"deleted {item.get('path')}\n")

    def _do_MoveFile(self, inputs: Any, out, _timeout: int | None) -> None:  # noqa: N802
        for item in self._list(inputs):
            src = self._path(item.get("source"))
            dest = self._path(item.get("destination"))
            if not src.exists():
                raise StepFailure(f"{item.get('source')} does not exist")
            if dest.is_dir():
                dest = dest / src.name
            if dest.exists() and not item.get("overwrite", True):
                raise StepFailure(f"{item.get('destination')} exists and overwrite is false")
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dest)
            out.write(f"moved {item.get('source')} -> {item.get('destination')}\n")

    def _owner_mode(self, path: Path, item: Mapping[str, Any], out) -> None:
        if item.get("permissions") is not None:
            path.chmod(_mode(item["permissions"]))
        owner, group = item.get("owner"), item.get("group")
        if owner or group:
            spec = f"{owner or ''}{':' + group if group else ''}"
            target = "/" + str(path.relative_to(self.rootfs))
            argv = (["chroot", str(self.rootfs), "chown", spec, target] if self.chroot
                    else ["chown", spec, str(path)])
            proc = subprocess.run(argv, capture_output=True)
            if proc.returncode != 0:
                raise StepFailure(f"chown {spec} failed: {proc.stderr.decode().strip()}")
        out.write(f"owner={owner} group={group} permissions={item.get('permissions')}\n")


def download(url: str, dest: Path, sha256: str | None, timeout_s: int | None = None) -> str:
    """Download ``url`` to ``dest``, verifying SHA-256 first (``bake.fetch.fetch_verified``:
    through a part file, renamed into place only when the digest matches).

    Args:
        timeout_s: the step's timeout in seconds; the socket timeout is at most 60 s.
    Returns:
        the SHA-256 hex of the downloaded bytes.
    Raises:
        StepFailure (``artifact=True``): not http(s), unreachable URL, HTTP error, or checksum
            mismatch.
    """
    from bake.fetch import DigestMismatch, FetchFailed, fetch_verified

    try:
        return fetch_verified(
            url, dest, sha256, timeout_s=min(timeout_s or 60, 60), schemes=("http", "https")
        )
    except FetchFailed as exc:
        raise StepFailure(
            f"cannot download {url}: {exc.reason}; check the URL or pass --mirror URL pointing "
            "at a mirror that has it",
            artifact=True,
        ) from None
    except DigestMismatch as exc:
        raise StepFailure(
            f"checksum mismatch for {url}: expected sha256 {exc.expected}, got {exc.actual}; "
            "the file was not installed (tampered or wrong mirror?)",
            artifact=True,
        ) from None
