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

The package's runner: ``awstoe`` (the document model: phases, step properties, parameters),
``chroot`` (paths into the root filesystem, mounts), ``actions`` (the action implementations,
mixed into ``LocalRunner``) and this module (the engine: phases, steps, attempts, logs).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from bake.builders.local.actions import Actions
from bake.builders.local.awstoe import (
    ACTIONS,
    DEFAULT_TIMEOUT_S,
    ON_FAILURE,
    PHASES,
    ComponentDoc,
    RunReport,
    StepFailure,
    StepResult,
    _params,
    _safe,
    _substitute,
    as_component,
)
from bake.builders.local.chroot import active_mounts, chroot_mounts, rootfs_path

# ``active_mounts`` and ``rootfs_path`` are the chroot's (``bake.builders.local.chroot``);
# importable from here as before the split
__all__ = ["ComponentDoc", "LocalRunner", "RunReport", "StepResult", "active_mounts", "rootfs_path"]
from bake.errors import ArtifactError, BuildError

Progress = Callable[[str], None]


class LocalRunner(Actions):
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
        ctx = chroot_mounts(self.rootfs) if self.chroot else nullcontext(self.rootfs)
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


