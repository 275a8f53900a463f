"""A local runner for AWSTOE component documents: runs their phases inside a chroot.

EC2 Image Builder runs component documents with AWSTOE on a build instance; the local builder
runs the very same documents (byte-exact ``bake.render.Document`` texts) against a root
filesystem directory. Implemented actions (AWSTOE user guide, "Action modules supported by
AWSTOE"): ``ExecuteBash`` (inside ``chroot <rootfs> /bin/bash -e -c``), ``WebDownload`` (on the
host, SHA-256 verified before the file lands), ``S3Download`` (single objects, on the host with
an injected S3 client), ``CreateFile``, ``CreateFolder``, ``SetFilePermissions``,
``DeleteFile``, ``MoveFile`` (paths mapped into the rootfs). Step
properties as the AWSTOE document schema defines them: ``onFailure`` ``Abort`` (default: stop
the document), ``Continue`` (run the next steps, the document still fails) or ``Ignore`` (the
failure is ignored); ``maxAttempts`` (default 1); ``timeoutSeconds`` (default 7200, ``-1`` for
none). Each step writes ``logs/<component>/<phase>/<NN>-<step>.log``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from bake.aws import s3
from bake.errors import ArtifactError, AwsError, BuildError

Progress = Callable[[str], None]

ACTIONS = (
    "ExecuteBash", "WebDownload", "CreateFile", "CreateFolder", "SetFilePermissions",
    "DeleteFile", "MoveFile", "S3Download",
)
PHASES = ("build", "validate", "test")
DEFAULT_TIMEOUT_S = 7200  # AWSTOE step default timeoutSeconds
ON_FAILURE = ("Abort", "Continue", "Ignore")
CHROOT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
    "TERM": "dumb",
}
#: ``policy-rc.d`` (invoke-rc.d(8)): exit 101 = "action forbidden", so apt never starts services.
POLICY_RC_D = "#!/bin/sh\n# bake: no service starts while building the image\nexit 101\n"
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


# ---------------------------------------------------------------------------------------------
# Paths and mounts


def rootfs_path(root: Path, path: str) -> Path:
    """Map an absolute path on the target to the host path inside ``root``.

    Symbolic links met on the way (e.g. bookworm's ``/lib -> usr/lib``) are followed *inside*
    the rootfs: an absolute link target is re-rooted, ``..`` never climbs above ``root``. The
    last component is not resolved when it is a symlink (so DeleteFile removes the link).
    """
    root = Path(root)
    parts = [p for p in PurePosixPath("/", path).parts[1:]]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        if parts and candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise StepFailure(f"too many symbolic links resolving {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in PurePosixPath(target).parts if p != "/"] + parts
            continue
        resolved.append(part)
    return root.joinpath(*resolved)


def _umount(target: Path) -> None:
    if subprocess.run(["umount", str(target)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def active_mounts(root: Path) -> list[str]:
    """Mount points at or below ``root`` (from ``/proc/self/mountinfo``)."""
    prefix = str(Path(root).resolve())
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return found


@contextmanager
def chroot_mounts(root: Path) -> Iterator[Path]:
    """Mount ``/proc``, ``/sys``, ``/dev`` and ``/dev/pts`` into ``root``, install a
    ``policy-rc.d`` that stops services from starting and the host's ``resolv.conf`` for apt;
    undo all of it on exit, whatever happened (``umount``, ``umount -l`` as fallback).

    Yields:
        ``root``.
    """
    root = Path(root).resolve()
    mounted: list[Path] = []
    created: list[Path] = []
    resolv_backup: tuple[Path, bytes | None, str | None] | None = None
    try:
        for src, rel, args in (
            ("proc", "proc", ["-t", "proc"]),
            ("sysfs", "sys", ["-t", "sysfs", "-o", "ro"]),
            ("/dev", "dev", ["--bind"]),
            ("devpts", "dev/pts", ["-t", "devpts", "-o", "newinstance,ptmxmode=0666"]),
        ):
            target = root / rel
            target.mkdir(parents=True, exist_ok=True)
            proc = subprocess.run(["mount", *args, src, str(target)], capture_output=True)
            if proc.returncode != 0:
                raise BuildError(
                    f"cannot mount {rel} into {root}: {proc.stderr.decode().strip()}"
                )
            mounted.append(target)
        policy = root / "usr/sbin/policy-rc.d"
        if policy.parent.is_dir() and not policy.exists():
            policy.write_text(POLICY_RC_D, encoding="utf-8")
            policy.chmod(0o755)
            created.append(policy)
        resolv = root / "etc/resolv.conf"
        host_resolv = Path("/etc/resolv.conf")
        if resolv.parent.is_dir() and host_resolv.is_file():
            link = os.readlink(resolv) if resolv.is_symlink() else None
            old = resolv.read_bytes() if resolv.is_file() and not link else None
            resolv_backup = (resolv, old, link)
            if resolv.is_symlink() or resolv.exists():
                resolv.unlink()
            shutil.copyfile(host_resolv, resolv)
        yield root
    finally:
        if resolv_backup:
            path, old, link = resolv_backup
            path.unlink(missing_ok=True)
            if link is not None:
                os.symlink(link, path)
            elif old is not None:
                path.write_bytes(old)
        for path in created:
            path.unlink(missing_ok=True)
        for target in reversed(mounted):
            _umount(target)


# ---------------------------------------------------------------------------------------------
# The runner


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


def _mode(value: Any) -> int:
    return int(str(value), 8)


class LocalRunner:
    """Runs phases of AWSTOE component documents against a root filesystem directory.

    Args:
        rootfs: the root filesystem directory (the target's ``/``).
        logs_dir: where per-step logs go (``<logs_dir>/<component>/<phase>/<NN>-<step>.log``).
        progress: callback taking one-line progress messages.
        parameters: per component name, values for its document ``parameters``.
        chroot: run ``ExecuteBash`` in ``chroot`` with mounts (needs root). Tests of the
            file actions may pass False to run bash on the host with ``cwd=rootfs``.
        s3_client: boto3 S3 client for ``S3Download`` steps (``None``: such steps fail).
    """

    def __init__(
        self,
        rootfs: Path,
        logs_dir: Path,
        progress: Progress = lambda _m: None,
        parameters: Mapping[str, Mapping[str, str]] | None = None,
        chroot: bool = True,
        s3_client: Any = None,
    ) -> None:
        self.rootfs = Path(rootfs).resolve()
        self.logs_dir = Path(logs_dir)
        self.progress = progress
        self.parameters = parameters or {}
        self.chroot = chroot
        self.s3_client = s3_client
        self.report = RunReport()

    # -- public --------------------------------------------------------------------------

    def run_phases(self, documents: Iterable[Any], phases: Sequence[str]) -> RunReport:
        """Run ``phases`` (in the given order) for each document, document by document.

        AWSTOE runs the phases of each document in order (build then validate); bake's builder
        calls this once with ``("build", "validate")`` and once with ``("test",)``.

        Raises:
            BuildError: a step failed with ``onFailure: Abort`` (or ``Continue``; raised at the
                end of that component's phase). Message: component, phase, step, exit code,
                last stderr line and log path.
            ArtifactError: a WebDownload could not fetch its URL or the SHA-256 differed.
        """
        docs = [as_component(d) for d in documents]
        for phase in phases:
            if phase not in PHASES:
                raise BuildError(f"unknown AWSTOE phase {phase!r}: use one of {', '.join(PHASES)}")
        ctx = chroot_mounts(self.rootfs) if self.chroot else _nullcontext(self.rootfs)
        with ctx:
            for doc in docs:
                for phase in phases:
                    self._run_phase(doc, phase)
        return self.report

    # -- phases and steps ----------------------------------------------------------------

    def _run_phase(self, doc: ComponentDoc, phase: str) -> None:
        steps = []
        for entry in doc.data.get("phases") or []:
            if entry.get("name") == phase:
                steps = entry.get("steps") or []
        if not steps:
            return
        params = _params(doc.data, self.parameters.get(doc.name, {}))
        self.progress(f"{doc.name}: {phase} ({len(steps)} steps)")
        continued: StepResult | None = None
        for index, step in enumerate(steps, start=1):
            result = self._run_step(doc.name, phase, index, _substitute(step, params))
            self.report.steps.append(result)
            if result.status == "failed":
                on_failure = step.get("onFailure", "Abort")
                if on_failure == "Continue":
                    continued = continued or result
                    continue
                raise self._error(result)
        if continued:
            raise self._error(continued)

    @staticmethod
    def _error(result: StepResult) -> Exception:
        if result.message.startswith("artifact:"):
            return ArtifactError(f"{result.message[len('artifact:'):]} (log: {result.log})")
        code = f"exit {result.exit_code}" if result.exit_code is not None else "error"
        return BuildError(
            f"component {result.component}, phase {result.phase}, step {result.step} failed "
            f"({code}): {result.message}; log: {result.log}"
        )

    def _run_step(self, component: str, phase: str, index: int, step: Mapping[str, Any]):
        name = str(step.get("name") or f"step{index}")
        action = step.get("action")
        log = self.logs_dir / _safe(component) / phase / f"{index:02d}-{_safe(name)}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        on_failure = step.get("onFailure", "Abort")
        attempts = int(step.get("maxAttempts", 1))
        timeout = int(step.get("timeoutSeconds", DEFAULT_TIMEOUT_S))
        timeout_s = None if timeout == -1 else timeout
        start = time.monotonic()
        with open(log, "w", encoding="utf-8") as out:
            out.write(f"component: {component}\nphase: {phase}\nstep: {name}\naction: {action}\n")
            out.write(f"onFailure: {on_failure}\nmaxAttempts: {attempts}\n")
            out.write(f"timeoutSeconds: {timeout}\n")
            failure: StepFailure | None = None
            if on_failure not in ON_FAILURE or action not in ACTIONS or "loop" in step:
                what = (
                    f"onFailure {on_failure!r}" if on_failure not in ON_FAILURE
                    else "loop" if "loop" in step else f"action {action!r}"
                )
                failure = StepFailure(f"unsupported {what} in the local runner")
                attempts = 0
            for attempt in range(1, attempts + 1):
                out.write(f"--- attempt {attempt}/{attempts}\n")
                out.flush()
                try:
                    handler = getattr(self, f"_do_{action}")
                    handler(step.get("inputs"), out, timeout_s)
                    failure = None
                    break
                except StepFailure as exc:
                    failure = exc
                    out.write(f"attempt {attempt} failed: {exc}\n")
            seconds = time.monotonic() - start
            if failure is None:
                out.write(f"exit code: 0\nstatus: success\nduration: {seconds:.3f} s\n")
                return StepResult(component, phase, name, "success", 0, seconds, log)
            status = "ignored" if on_failure == "Ignore" else "failed"
            out.write(f"exit code: {failure.exit_code}\nstatus: {status}\n")
            out.write(f"duration: {seconds:.3f} s\nerror: {failure}\n")
        message = ("artifact:" if failure.artifact else "") + str(failure)
        if status == "ignored":
            self.progress(f"{component}: {phase}: step {name} failed, ignored (onFailure Ignore)")
        return StepResult(component, phase, name, status, failure.exit_code, seconds, log, message)

    # -- actions -------------------------------------------------------------------------

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


@contextmanager
def _nullcontext(value):
    yield value


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
