"""Container images from a registry, copied by digest into OCI archives for air-gapped bakes.

``bake stage --images-from REGISTRY`` uses this module: every image of a release is copied with
skopeo (the Debian package; ``skopeo copy``, containers/skopeo docs) from
``<REGISTRY>/<repository>@<digest>`` into an OCI image-layout archive (``oci-archive:``
transport), for one architecture (``--override-arch``). The digest is the one the catalog pins
(``image_digests``, the manifest-list digest registry.k8s.io serves for the tag), so skopeo
refuses any other content ("manifest digest ... does not match"). The archive is then named for
containerd (the ``io.containerd.image.name`` annotation ``ctr images import`` uses; containerd
``images/archive`` importer) and its SHA-256 is what the overlay pins for ``bake ami``.

A registry is given as ``host[:port][/path]`` (TLS) or ``http://host:port[/path]`` (plain HTTP,
for a local registry), e.g. ``registry.k8s.io`` or a pull-through cache
``123456789012.dkr.ecr.us-east-1.amazonaws.com/k8s``. The image's repository path below its
upstream registry is kept: ``registry.k8s.io/coredns/coredns`` comes from
``<REGISTRY>/coredns/coredns``.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bake.errors import ArtifactError, EnvironmentProblem, UsageError

#: the annotation containerd's importer names an image by (containerd images/annotations.go)
CONTAINERD_NAME = "io.containerd.image.name"
#: seconds one skopeo copy may take
COPY_TIMEOUT_S = 900
_HOST_RE = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


@dataclass(frozen=True)
class Registry:
    """A registry images are copied from.

    Attributes:
        base: ``host[:port][/path]`` without scheme or trailing slash.
        tls: False for a plain-HTTP registry (``http://`` given).
        authfile: a containers-auth.json file for skopeo (``--authfile``), or ``None``.
    """

    base: str
    tls: bool = True
    authfile: Path | None = None

    def reference(self, upstream_ref: str, digest: str) -> str:
        """``docker://<base>/<repository>@<digest>`` for an upstream ``host/repo:tag`` ref."""
        repository = upstream_ref.split("/", 1)[1].rsplit(":", 1)[0]
        return f"docker://{self.base}/{repository}@{digest}"


def parse_registry(value: str, authfile: Path | None = None) -> Registry:
    """Check ``--images-from``.

    Raises:
        UsageError: not ``host[:port][/path]`` or ``http(s)://host[:port][/path]``.
    """
    raw = value.strip().rstrip("/")
    tls = True
    if "://" in raw:
        try:
            parts = urlsplit(raw)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError as exc:
            raise UsageError(f"--images-from {value!r} is not a valid URL ({exc})") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(
                f"--images-from {value!r}: use host[:port][/path] (TLS) or http://host:port "
                "(a plain-HTTP registry)"
            )
        tls = parts.scheme == "https"
        raw = parts.netloc + parts.path.rstrip("/")
    host = raw.split("/", 1)[0]
    if not _HOST_RE.match(host):
        raise UsageError(f"--images-from {value!r}: {host!r} is not a registry host[:port]")
    if authfile is not None and not Path(authfile).is_file():
        raise UsageError(f"--registry-auth {authfile}: no such file")
    return Registry(raw, tls, Path(authfile) if authfile else None)


def skopeo() -> str:
    """The skopeo executable.

    Raises:
        EnvironmentProblem: skopeo is not installed.
    """
    path = shutil.which("skopeo")
    if not path:
        raise EnvironmentProblem("copying images needs skopeo: apt-get install skopeo")
    return path


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    line = lines[-1] if lines else "no output"
    return re.sub(r"^time=\"[^\"]*\" level=\w+ msg=", "", line).strip('"')[:400]


def copy_image(registry: Registry, ref: str, digest: str, arch: str, dest: Path) -> str:
    """Copy one image by digest into an OCI archive named for containerd.

    Args:
        registry: where to copy from.
        ref: the upstream reference, e.g. ``registry.k8s.io/pause:3.9`` (the archive's name).
        digest: ``sha256:<hex>`` the catalog pins (a manifest list or a manifest).
        arch: ``amd64`` or ``arm64`` (the platform picked from a manifest list).
        dest: the archive to write (replaced).

    Returns:
        the archive's SHA-256 (hex).

    Raises:
        ArtifactError: the registry refused, the image is missing, or its digest differs from
            the pin (one line with skopeo's reason; nothing is left at ``dest``).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.unlink(missing_ok=True)
    tag = ref.rsplit(":", 1)[1]
    argv = [
        skopeo(),
        "--override-os",
        "linux",
        "--override-arch",
        arch,
        "copy",
        "--retry-times",
        "3",
        f"--src-tls-verify={'true' if registry.tls else 'false'}",
    ]
    if registry.authfile:
        argv += ["--src-authfile", str(registry.authfile)]
    source = registry.reference(ref, digest)
    argv += [source, f"oci-archive:{dest}:{tag}"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=COPY_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        dest.unlink(missing_ok=True)
        raise ArtifactError(f"copying {source} took over {COPY_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        dest.unlink(missing_ok=True)
        reason = _last_line(proc.stderr or proc.stdout)
        hint = ""
        if "does not match" in reason or "manifest unknown" in reason:
            hint = (
                f" (the catalog pins {digest} for {ref}: check the registry, or the pin with "
                "--catalog FILE)"
            )
        raise ArtifactError(f"cannot copy {ref} from {source}: {reason}{hint}")
    name_archive(dest, ref)
    return hashlib.sha256(dest.read_bytes()).hexdigest()


def resolve_digest(registry: Registry, ref: str) -> str:
    """The digest the registry serves for ``ref``'s tag now (``skopeo inspect --raw``: the
    SHA-256 of the manifest or manifest list bytes, which is the digest by definition; OCI
    distribution spec, "Pulling manifests"). Trust on first use: only for images the catalog
    does not pin, and only when the user asks (``--resolve-digests``).

    Raises:
        ArtifactError: the registry does not answer or lacks the tag.
    """
    repository = ref.split("/", 1)[1].rsplit(":", 1)[0]
    tag = ref.rsplit(":", 1)[1]
    argv = [skopeo(), "inspect", "--raw", "--retry-times", "3",
            f"--tls-verify={'true' if registry.tls else 'false'}"]
    if registry.authfile:
        argv += ["--authfile", str(registry.authfile)]
    source = f"docker://{registry.base}/{repository}:{tag}"
    proc = subprocess.run([*argv, source], capture_output=True, timeout=COPY_TIMEOUT_S)
    if proc.returncode != 0:
        reason = _last_line(proc.stderr.decode(errors="replace"))
        raise ArtifactError(f"cannot look up {source}: {reason}")
    return "sha256:" + hashlib.sha256(proc.stdout).hexdigest()


def name_archive(path: Path, ref: str) -> None:
    """Annotate every manifest in the archive's ``index.json`` with ``io.containerd.image.name``
    = ``ref``, so ``ctr images import`` names the image (skopeo writes only
    ``org.opencontainers.image.ref.name``, the tag). The blobs are unchanged, so the image's
    digest is too; only the tar is rewritten.
    """
    buffer = io.BytesIO()
    with tarfile.open(path) as src, tarfile.open(fileobj=buffer, mode="w") as out:
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isfile() else None
            if member.name.lstrip("./") == "index.json" and data is not None:
                index = json.loads(data)
                for manifest in index.get("manifests", []):
                    manifest.setdefault("annotations", {})[CONTAINERD_NAME] = ref
                data = json.dumps(index, separators=(",", ":"), sort_keys=True).encode()
                member.size = len(data)
            out.addfile(member, io.BytesIO(data) if data is not None else None)
    path.write_bytes(buffer.getvalue())
