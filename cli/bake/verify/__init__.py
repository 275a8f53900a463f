"""Verify a baked image or a live node with bake's testinfra suite (``test_image.py`` here).

``run_suite(host_spec, log_dir)`` runs the suite shipped in this package in a separate
``python -m pytest`` process (so the caller's cwd, ``conftest.py`` and pytest config never
interfere), writes the JUnit XML and the full log into ``log_dir`` and returns a
``VerifyResult`` with counts and one line per failed check. ``verify(VerifyOptions)`` is the
service behind ``bake verify``: it resolves ``--image`` (a build id, an AMI id of a local image,
or a path) to a root filesystem, unpacking ``rootfs.tar.zst`` into a temporary directory when
needed, and checks it through testinfra's chroot backend; ``--host ssh://user@host`` checks a
live node over SSH. The local builder calls ``run_suite("chroot:///abs/rootfs", ...)`` as its
test phase.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from bake.errors import BakeError, EnvironmentProblem, UsageError

SUITE = "test_image.py"
Progress = Callable[[str], None]


class VerifyFailed(BakeError):
    """The testinfra suite ran and some image checks failed (exit code 1)."""


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of one suite run.

    Attributes:
        host_spec: what was checked (``chroot:///abs/path`` or ``ssh://user@host``).
        passed, failed, skipped, errors: test counts from the JUnit report (errors: setup or
            collection errors, counted apart from failed checks).
        junit_path: the JUnit XML report.
        log_path: pytest's full output.
        failures: ``(test id, one-line reason)`` for every failed or errored check, in order.
    """

    host_spec: str
    passed: int
    failed: int
    skipped: int
    errors: int
    junit_path: Path
    log_path: Path
    failures: tuple[tuple[str, str], ...]

    @property
    def ok(self) -> bool:
        """True when checks ran and none failed or errored."""
        return self.failed == 0 and self.errors == 0 and self.passed > 0

    def summary(self) -> str:
        """One line: ``12 passed, 0 failed, 1 skipped``."""
        text = f"{self.passed} passed, {self.failed} failed, {self.skipped} skipped"
        return text + (f", {self.errors} errors" if self.errors else "")


@dataclass(frozen=True)
class VerifyOptions:
    """Options of ``bake verify``.

    Attributes:
        image: build id, AMI id of a local image, or a path (image dir, rootfs dir or
            ``rootfs.tar.zst``); exclusive with ``host``.
        host: testinfra host spec of a live node, e.g. ``ssh://admin@10.0.0.5``.
        data_dir: bake's data dir (local images under ``<data_dir>/images/``).
        log_dir: where to write the report (default ``<data_dir>/verify/<name>-<UTC time>``).
    """

    data_dir: Path
    image: str | None = None
    host: str | None = None
    log_dir: Path | None = None


def suite_path() -> Path:
    """Filesystem path of the shipped testinfra suite (``bake/verify/test_image.py``)."""
    return Path(str(resources.files("bake.verify").joinpath(SUITE)))


def testinfra_args(host_spec: str) -> list[str]:
    """pytest arguments selecting the host: testinfra's ``chroot`` backend takes the directory
    as host name, so ``chroot:///abs/path`` (or a bare absolute path) becomes
    ``--hosts=/abs/path --connection=chroot``; other specs (``ssh://``, ``paramiko://``,
    ``local://``) pass through as ``--hosts``.

    Raises:
        UsageError: a chroot directory that does not exist.
    """
    if host_spec.startswith("chroot://") or host_spec.startswith("/"):
        root = host_spec.removeprefix("chroot://")
        if not root.startswith("/") or not Path(root).is_dir():
            raise UsageError(f"chroot host {host_spec!r}: {root!r} is not an existing "
                             "absolute directory (use chroot:///abs/path)")
        return [f"--hosts={root}", "--connection=chroot"]
    return [f"--hosts={host_spec}"]


def _reason(element: ET.Element) -> str:
    message = element.get("message") or (element.text or "").strip() or element.tag
    line = message.strip().splitlines()[0] if message.strip() else element.tag
    match = re.match(r'failed on (?:setup|teardown) with "(.*?)"?$', line)
    if match:
        line = match.group(1)
    for prefix in ("AssertionError: ", "Failed: "):
        line = line.removeprefix(prefix)
    return line[:300]


def _strip_host(name: str, host_id: str | None) -> str:
    """``test_x[kubelet:/usr/bin/kubelet-chroot:///r]`` -> ``test_x[kubelet:/usr/bin/kubelet]``
    (testinfra adds the host to every id; one host per run makes it noise)."""
    if not host_id:
        return name
    for old, new in ((f"[{host_id}]", ""), (f"-{host_id}]", "]"), (f"[{host_id}-", "[")):
        name = name.replace(old, new)
    return name


def parse_junit(
    path: Path, host_id: str | None = None
) -> tuple[int, int, int, int, tuple[tuple[str, str], ...]]:
    """Read pytest's JUnit XML: ``(passed, failed, skipped, errors, failures)``.

    Args:
        path: the report.
        host_id: testinfra's id of the host (``chroot:///abs/path``), removed from test ids.
    """
    root = ET.parse(path).getroot()
    passed = failed = skipped = errors = 0
    failures: list[tuple[str, str]] = []
    for case in root.iter("testcase"):
        name = _strip_host(case.get("name", "?"), host_id)
        failure, error, skip = case.find("failure"), case.find("error"), case.find("skipped")
        if failure is not None:
            failed += 1
            failures.append((name, _reason(failure)))
        elif error is not None:
            errors += 1
            failures.append((name, _reason(error)))
        elif skip is not None:
            skipped += 1
        else:
            passed += 1
    for suite in root.iter("testsuite"):  # collection errors have no testcase of their own
        extra = int(suite.get("errors", "0")) - errors
        if extra > 0 and not failures:
            errors += extra
            failures.append(("collection", "the suite could not be collected (see the log)"))
    return passed, failed, skipped, errors, tuple(failures)


def _host_id(args: list[str]) -> str | None:
    """testinfra's pytest id of the host selected by ``args`` (``connection://name``)."""
    try:
        from testinfra.backend import get_backend

        hosts = args[0].removeprefix("--hosts=")
        kwargs = {"connection": "chroot"} if "--connection=chroot" in args else {}
        return get_backend(hosts, **kwargs).get_pytest_id()
    except Exception:  # noqa: BLE001 - ids then keep the host suffix, nothing worse
        return None


def run_suite(
    host_spec: str | Path, log_dir: Path, progress: Progress | None = None
) -> VerifyResult:
    """Run the testinfra suite against one host in a separate pytest process.

    Args:
        host_spec: ``chroot:///abs/rootfs`` (needs root), an absolute rootfs path (``str`` or
            ``Path``), or a testinfra spec such as ``ssh://user@host`` (``?sudo=true`` to run
            the checks through sudo).
        log_dir: created if needed; receives ``junit.xml`` and ``pytest.log``.
        progress: called with one human line at start, per failed check, and at the end.
    Returns:
        ``VerifyResult`` (check ``.ok``; failures do not raise here).
    Raises:
        UsageError: bad host spec; EnvironmentProblem: chroot without root;
        VerifyFailed: pytest produced no report (the log file is named).
    """
    say = progress or (lambda _line: None)
    host_spec = str(host_spec)
    args = testinfra_args(host_spec)
    if "--connection=chroot" in args and os.geteuid() != 0:
        raise EnvironmentProblem("verifying an image root filesystem uses chroot and needs "
                                 "root: rerun with sudo")
    from bake.userfiles import prepare_dir

    log_dir = prepare_dir(Path(log_dir).resolve(), "--log-dir")
    junit, log = log_dir / "junit.xml", log_dir / "pytest.log"
    junit.unlink(missing_ok=True)
    ini = log_dir / "pytest.ini"
    ini.write_text("[pytest]\n# written by bake verify: isolates the suite from any other config\n")
    suite = suite_path()
    cmd = [sys.executable, "-m", "pytest", str(suite), *args, f"--junitxml={junit}",
           "-c", str(ini), f"--rootdir={log_dir}", f"--confcutdir={suite.parent}",
           "--import-mode=importlib", "-p", "no:cacheprovider", "-rfE", "-v", "--color=no"]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    say(f"verify: running the testinfra suite against {host_spec}")
    with log.open("w") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=log_dir, env=env,
                              check=False)
    if not junit.exists():
        raise VerifyFailed(f"the testinfra suite did not run (pytest exit {proc.returncode}); "
                           f"see {log}")
    passed, failed, skipped, errors, failures = parse_junit(junit, _host_id(args))
    result = VerifyResult(host_spec, passed, failed, skipped, errors, junit, log, failures)
    for test_id, reason in failures:
        say(f"verify: FAILED {test_id}: {reason}")
    say(f"verify: {result.summary()} (report: {junit})")
    return result


#: seconds the reachability check waits for a live node's first connection
CONNECT_TIMEOUT_S = 20


def check_reachable(host_spec: str, timeout_s: int = CONNECT_TIMEOUT_S) -> None:
    """Open one connection to a live node before the suite runs (every check would otherwise
    fail on its own with the same connection error).

    Uses testinfra's own backend for ``host_spec`` (so ``?ssh_config=``, ports and users mean
    what they mean to the suite) and runs ``true`` there once.

    Args:
        host_spec: a testinfra host spec such as ``ssh://admin@10.0.0.5``.
        timeout_s: seconds to wait for the connection (ssh ``ConnectTimeout``).

    Raises:
        VerifyFailed: the node cannot be reached or refuses the login (one line with the
            transport's own reason, e.g. ``Connection refused``).
    """
    import testinfra

    kwargs = {"timeout": timeout_s} if host_spec.startswith(("ssh://", "paramiko://")) else {}
    try:
        host = testinfra.get_host(host_spec, **kwargs)
        result = host.run("true")
        ok, detail = result.rc == 0, (result.stderr or result.stdout or "").strip()
    except Exception as exc:  # noqa: BLE001 - every backend fails its own way; one line each
        ok, detail = False, str(getattr(exc, "args", [exc])[0] if exc.args else exc)
        match = re.search(r"_stderr=b'([^']*)'", detail)
        if match:
            detail = match.group(1).encode().decode("unicode_escape")
    if not ok:
        reason = " ".join(detail.split()) or "no answer"
        raise VerifyFailed(
            f"cannot reach {host_spec}: {reason[:300]} (check the address, port, user and key; "
            "nothing was checked)"
        )


# ---------------------------------------------------------------- local image resolution


def _images_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "images"


def _known_ids(data_dir: Path) -> list[str]:
    d = _images_dir(data_dir)
    return sorted(p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if d.is_dir() else []


def resolve_image(ref: str, data_dir: Path) -> Path:
    """Find a local image: a path, a build id under ``<data_dir>/images/``, or the AMI id
    recorded in a local image's ``build.json`` (``image_id``).

    Returns:
        the image directory, a root filesystem directory, or a ``rootfs.tar.zst`` file.
    Raises:
        UsageError: nothing matches (the message lists the known build ids).
    """
    path = Path(ref).expanduser()
    if path.exists() and (path.is_dir() or path.name.endswith(".tar.zst")):
        return path.resolve()
    images = _images_dir(data_dir)
    if ref.startswith("ami-"):
        for build in sorted(images.glob("*/build.json")) if images.is_dir() else []:
            try:
                if json.loads(build.read_text()).get("image_id") == ref:
                    return build.parent
            except (OSError, ValueError):
                continue
        raise UsageError(f"no local image has AMI id {ref} (searched {images}); for an AMI "
                         "in AWS, launch it and use --host ssh://user@address")
    if "/" not in ref and (images / ref).is_dir() and not ref.startswith("."):
        return images / ref
    known = ", ".join(_known_ids(data_dir)) or "none"
    raise UsageError(f"no local image {ref!r} in {images} (known build ids: {known}); pass a "
                     "build id, an AMI id from `bake images list`, or a path")


def _rootfs_of(target: Path, scratch: Path) -> Path:
    """The root filesystem directory of ``target``, unpacking ``rootfs.tar.zst`` into
    ``scratch`` when the image has no unpacked ``rootfs/``."""
    if target.is_dir() and (target / "etc").is_dir() and not (target / "build.json").exists():
        return target
    if target.is_dir() and (target / "rootfs").is_dir():
        return target / "rootfs"
    archive = target if target.is_file() else target / "rootfs.tar.zst"
    if not archive.is_file():
        raise UsageError(f"{target} is not a bake image: no rootfs/ directory or rootfs.tar.zst")
    if shutil.which("zstd") is None:
        raise EnvironmentProblem("unpacking rootfs.tar.zst needs zstd: apt-get install zstd")
    proc = subprocess.run(["tar", "--zstd", "-xpf", str(archive), "--numeric-owner", "-C",
                           str(scratch)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise VerifyFailed(f"cannot unpack {archive}: {last}")
    return scratch


def verify(options: VerifyOptions, progress: Progress | None = None) -> VerifyResult:
    """The ``bake verify`` service: check a local image (chroot) or a live node (ssh).

    Args:
        options: ``VerifyOptions`` with exactly one of ``image`` and ``host``.
        progress: callback for human progress lines.
    Returns:
        the ``VerifyResult`` (failures do not raise; the command decides the exit code).
    Raises:
        UsageError: neither or both of image/host, unknown image; EnvironmentProblem: no root
        for chroot; VerifyFailed: the suite could not run.
    """
    from bake.userfiles import prepare_dir

    if bool(options.image) == bool(options.host):
        raise UsageError("pass exactly one of --image ID|BUILD_ID|PATH and --host ssh://user@host")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    if options.host:
        name = re.sub(r"[^A-Za-z0-9.]+", "_", options.host.split("://", 1)[-1]).strip("_")
        name = name or options.host.split("://", 1)[0] or "host"
        log_dir = options.log_dir or Path(options.data_dir) / "verify" / f"{name}-{stamp}"
        prepare_dir(log_dir, "--log-dir" if options.log_dir else "--data-dir")
        if not options.host.startswith(("local://", "chroot://", "/")):
            check_reachable(options.host)
        return run_suite(options.host, log_dir, progress)
    target = resolve_image(options.image, Path(options.data_dir))
    if os.geteuid() != 0:
        raise EnvironmentProblem("verifying a local image uses chroot and needs root: rerun "
                                 "with sudo")
    log_dir = options.log_dir or Path(options.data_dir) / "verify" / f"{target.name}-{stamp}"
    prepare_dir(log_dir, "--log-dir" if options.log_dir else "--data-dir")
    scratch_parent = Path(options.data_dir)
    scratch_parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".verify-rootfs-", dir=scratch_parent))
    try:
        rootfs = _rootfs_of(target, scratch)
        if rootfs == scratch and progress:
            progress(f"verify: unpacked {target} into {scratch}")
        return run_suite(f"chroot://{rootfs.resolve()}", log_dir, progress)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
