"""``bake ami``: bake a node image for one Kubernetes release, then publish it.

The service behind the command. ``bake_local(options, target, progress)`` runs the local
builder (Debian 12 rootfs, the rendered component documents, testinfra as the test phase) and,
only after every test passed, registers the image as an AMI in the embedded AWS and publishes
its id to SSM. ``bake_aws`` drives EC2 Image Builder with the very same documents.

Order of work and what a failure leaves behind:
1. catalog + resolve (no side effects) -> 2. render (no side effects) -> 3. preflight: root,
host arch, mirror reachable, free disk -> 4. embedded AWS started -> 5. build into a staging
directory -> 6. test phase (components' test phases, then testinfra) -> 7. register + publish
(rolled back together by ``bake.publish``) -> 8. staging renamed into place. A failure at any
step removes the staging directory; nothing is registered or published before step 7.
"""

from __future__ import annotations

import hashlib
import json
import platform
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bake.catalog import Release, load_catalog, resolve
from bake.errors import ArtifactError, BuildError, CatalogError, EnvironmentProblem
from bake.render import (
    LOG_PREFIX,
    AgentSource,
    ImageDocuments,
    RenderOptions,
    render_image_documents,
)

Progress = Callable[[str], None]

# uname -m -> the Debian/Kubernetes arch name
_HOST_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


@dataclass(frozen=True)
class AmiOptions:
    """What ``bake ami`` was asked to do.

    Attributes:
        k8s: ``--k8s`` value (``1.30`` or ``1.30.4``).
        arch: target arch (``amd64``/``arm64``).
        os_name: image OS (``debian-12``).
        catalogs: catalog overlays, applied in order.
        mirror: artifact mirror base URL (``<mirror>/<host>/<path>`` layout) or ``None``.
        ssm_prefix: SSM hierarchy root for publication.
        data_dir: bake's data dir (rootfs cache, local images, sandbox state).
        keep_failed: keep a failed build's staging directory for inspection.
        debian_mirror: Debian archive URL for the local parent image (``None``: the host's apt
            configuration).
        artifacts_s3: ``s3://bucket/prefix`` staged by ``bake stage``: the components fetch
            every artifact from there with S3Download (``RenderOptions.artifacts_s3``), or
            ``None`` for WebDownload from ``mirror``/upstream.
    """

    k8s: str
    arch: str = "amd64"
    os_name: str = "debian-12"
    catalogs: tuple[Path, ...] = ()
    mirror: str | None = None
    ssm_prefix: str = "/bake/k8s"
    data_dir: Path = Path(".bake")
    keep_failed: bool = False
    debian_mirror: str | None = None
    artifacts_s3: str | None = None


@dataclass(frozen=True)
class AmiResult:
    """A baked and published image (``--output json`` prints ``to_json()``).

    Attributes:
        image_id: AMI id.
        ssm_parameter: parameter that now points at it.
        label: SSM parameter label (``v<version>``).
        kubernetes_version, arch, os, build_id: what was baked.
        artifacts: manifest entries ``[{"name", "version", "source", "sha256", ...}]``.
        images: manifest image entries.
        local: for local images, paths ``{"directory", "rootfs_archive", "disk", "kernel",
            "initrd", "manifest"}``.
        duration_s: wall time of the whole bake, seconds.
    """

    image_id: str
    ssm_parameter: str
    label: str
    kubernetes_version: str
    arch: str
    os: str
    build_id: str
    artifacts: list[dict[str, Any]]
    images: list[dict[str, Any]]
    local: dict[str, str] = field(default_factory=dict)
    duration_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The summary as a JSON-ready dict."""
        return {
            "image_id": self.image_id,
            "ssm_parameter": self.ssm_parameter,
            "label": self.label,
            "kubernetes_version": self.kubernetes_version,
            "arch": self.arch,
            "os": self.os,
            "build_id": self.build_id,
            "artifacts": self.artifacts,
            "images": self.images,
            "local": self.local,
            "duration_s": round(self.duration_s, 1),
        }


def resolve_release(options: AmiOptions) -> Release:
    """Load the catalog (shipped + overlays) and resolve the requested release.

    Raises:
        CatalogError: unknown/malformed version or arch, bad overlay.
    """
    return resolve(load_catalog(options.catalogs), options.k8s, options.arch, options.os_name)


def render_for(
    release: Release, options: AmiOptions, agent: AgentSource | None = None
) -> ImageDocuments:
    """Render the Image Builder documents for ``release`` (same call for local and AWS).

    ``agent``: where the build fetches the node agent's bundle (``bake.agent_bundle``);
    ``None`` leaves the ``bake-node`` component out.
    """
    return render_image_documents(
        release,
        RenderOptions(
            mirror=options.mirror,
            ssm_prefix=options.ssm_prefix,
            artifacts_s3=options.artifacts_s3,
            agent=agent,
        ),
    )


def new_build_id(release: Release, now: datetime | None = None) -> str:
    """``<kubernetes_version>-<arch>-<YYYYmmddTHHMMSSZ>`` (UTC)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{release.kubernetes_version}-{release.arch}-{stamp}"


def check_image_archives(release: Release) -> None:
    """Every image archive needs a SHA-256 (from a catalog overlay) before a build starts.

    Raises:
        CatalogError: listing the images without one and how to add them.
    """
    from bake.plan import download_plan

    missing = download_plan(release).images_without_sha256
    if missing:
        raise CatalogError(
            f"no SHA-256 for the image archives of {', '.join(missing[:3])}"
            f"{f' and {len(missing) - 3} more' if len(missing) > 3 else ''}: add an "
            "image_archives section for them with --catalog FILE (see README, Air-gapped mirrors)"
        )


def check_mirror(release: Release, mirror: str | None, timeout_s: float = 10.0) -> None:
    """Fail fast when the artifact source does not answer, before minutes of building.

    Probes the first downloadable file of the release's download plan (``bake.plan``) with
    an HTTP HEAD request.

    Raises:
        ArtifactError: connection refused/timeout or an HTTP error, naming the URL.
    """
    from bake.plan import download_plan

    for planned in download_plan(release).artifacts[:1]:
        url = planned.url(mirror)
        if not url.startswith(("http://", "https://")):
            return
        request = urllib.request.Request(url, method="HEAD")
        try:
            with urllib.request.urlopen(request, timeout=timeout_s):
                return
        except urllib.error.HTTPError as exc:
            raise ArtifactError(
                f"artifact source answered HTTP {exc.code} for {url}: check that --mirror holds "
                f"Kubernetes {release.kubernetes_version} ({release.arch})"
            ) from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            hint = "check --mirror" if mirror else "pass --mirror URL (air-gapped hosts)"
            raise ArtifactError(
                f"cannot reach the artifact source {url} ({reason}): {hint}"
            ) from exc


def check_host_arch(arch: str) -> None:
    """Local builds run the target's binaries in a chroot: the host must have that arch.

    Raises:
        EnvironmentProblem: host arch differs (no binfmt emulation is set up by bake).
    """
    host = _HOST_ARCH.get(platform.machine(), platform.machine())
    if host != arch:
        raise EnvironmentProblem(
            f"a local build for {arch} needs an {arch} host (this one is {host}); bake {arch} "
            "images in EC2 Image Builder instead (bake ami without --local)"
        )


def manifest_sha256(path: Path) -> str:
    """SHA-256 hex of the image manifest file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def bake_local(options: AmiOptions, progress: Progress) -> AmiResult:
    """Bake an image on this machine and publish it to the embedded AWS.

    Args:
        options: the request.
        progress: called with one human-readable line per step.
    Returns:
        the ``AmiResult``.
    Raises:
        CatalogError, ArtifactError, EnvironmentProblem, BuildError, SandboxError, AwsError: one
        line each; staging removed, nothing registered or published.
    """
    import time

    from bake.agent_bundle import build_agent_bundle, serve_directory
    from bake.builders.local.builder import LocalBuilder, LocalBuildOptions

    started = time.monotonic()
    # every check that needs no building comes first: bad input fails in a second; the host
    # first of all, since no catalog fixes a foreign arch
    if options.arch in _HOST_ARCH.values():  # an unknown arch is the catalog's to name
        check_host_arch(options.arch)
    release = resolve_release(options)
    progress(
        f"release: Kubernetes {release.kubernetes_version} {release.arch} {release.os} "
        f"(catalog: {' + '.join(release.catalog_sources)})"
    )
    check_image_archives(release)
    check_mirror(release, options.mirror)
    build_id = new_build_id(release)
    builder = LocalBuilder(
        LocalBuildOptions(
            data_dir=options.data_dir,
            debian_mirror=options.debian_mirror,
            keep_failed=options.keep_failed,
            after_test=_testinfra_phase(progress),
        ),
        progress,
    )
    builder.preflight()  # root, tools, free disk space
    # the node agent's bundle, served on 127.0.0.1 for the bake-node component's WebDownload
    bundle = build_agent_bundle(Path(options.data_dir) / "cache" / "agent")
    with serve_directory(bundle.path.parent) as base_url:
        agent = AgentSource(
            url=f"{base_url}/{bundle.filename}", sha256=bundle.sha256, version=bundle.version
        )
        progress(f"node agent: {bundle.filename} (sha256 {bundle.sha256[:12]}) at {agent.url}")
        documents = render_for(release, options, agent)
        progress(
            f"rendered {len(documents.components)} components "
            f"(content {documents.content_hash[:12]})"
        )
        return _build_and_publish(options, progress, release, documents, builder, build_id, started)


def _testinfra_phase(progress: Progress) -> Callable[[Path, Path], None]:
    """The local build's last test step: the testinfra suite against the rootfs (chroot)."""

    def run(rootfs: Path, log_dir: Path) -> None:
        from bake.verify import run_suite

        progress("test phase: testinfra suite against the image (chroot)")
        result = run_suite(f"chroot://{rootfs}", log_dir, progress)
        if not result.ok:
            first = result.failures[0] if result.failures else ("?", "?")
            raise BuildError(
                f"testinfra: {result.failed + result.errors} check(s) failed, first: "
                f"{first[0]}: {first[1]}; report: {result.junit_path}"
            )
        progress(f"testinfra: {result.passed} passed, {result.skipped} skipped")

    return run


def _build_and_publish(
    options: AmiOptions,
    progress: Progress,
    release: Release,
    documents: ImageDocuments,
    builder: Any,
    build_id: str,
    started: float,
) -> AmiResult:
    """Build in staging, test, publish, then move the image into place (see module docstring)."""
    import time

    from bake.publish import BuiltImage, publish, unpublish
    from bake.sandbox.server import ensure_running, sandbox_target

    builder.preflight()
    sandbox = ensure_running(options.data_dir, progress)
    image = builder.build(documents, build_id)
    try:
        from bake.aws.session import AwsClients

        clients = AwsClients(sandbox_target(sandbox))
        final_dir = builder.final_directory(build_id)
        digest = manifest_sha256(image.manifest_path)
        progress(f"registering the image in the embedded AWS ({sandbox.endpoint})")
        publications = publish(
            clients,
            BuiltImage.of(
                release,
                build_id,
                manifest_sha256=digest,
                local_path=str(final_dir),
                logs=str(final_dir / image.logs_dir.relative_to(image.directory)),
            ),
            options.ssm_prefix,
        )
        (publication,) = publications
    except BaseException:
        builder.discard(image)
        raise
    build_info = {
        "build_id": build_id,
        "kubernetes_version": release.kubernetes_version,
        "minor": release.minor,
        "arch": release.arch,
        "os": release.os,
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "content_hash": documents.content_hash,
        "manifest_sha256": digest,
        "image_id": publication.image_id,
        "ssm_parameter": publication.ssm_parameter,
    }
    try:
        image = builder.commit(image, build_info)
    except BaseException:
        unpublish(clients, publications)
        builder.discard(image)
        raise
    progress(
        f"published {publication.image_id} to {publication.ssm_parameter} ({publication.label})"
    )
    manifest = json.loads(Path(image.manifest_path).read_text())
    return AmiResult(
        image_id=publication.image_id,
        ssm_parameter=publication.ssm_parameter,
        label=publication.label,
        kubernetes_version=release.kubernetes_version,
        arch=release.arch,
        os=release.os,
        build_id=build_id,
        artifacts=manifest.get("artifacts", []),
        images=manifest.get("images", []),
        local={
            "directory": str(image.directory),
            "rootfs_archive": str(image.rootfs_archive),
            "disk": str(image.disk),
            "kernel": str(image.kernel),
            "initrd": str(image.initrd),
            "manifest": str(image.manifest_path),
        },
        duration_s=time.monotonic() - started,
    )


@dataclass(frozen=True)
class AwsBakeOptions:
    """Account-specific settings of an EC2 Image Builder bake (``bake ami`` without ``--local``).

    Attributes:
        arches: one image per arch, e.g. ``("amd64", "arm64")``.
        regions: regions the AMI is copied to (``()``: the build region only).
        instance_types: build instance types (``()``: the recipe's defaults).
        subnet_id, security_group_ids: where the build instance runs (private subnet).
        instance_profile: the build instance's profile (needs the Image Builder and SSM policies).
        log_bucket, log_prefix: S3 location of the build logs (default prefix: the rendered
            one, ``bake.render.LOG_PREFIX``).
        target_accounts: accounts the AMI is shared with / copied to.
        kms_key_id: KMS key for the AMI's EBS snapshots.
        artifacts_s3: ``s3://bucket/prefix`` staged by ``bake stage`` (air-gapped builds).
        wait: wait for the build (``False``: print the ARN and return).
    """

    arches: tuple[str, ...] = ("amd64",)
    regions: tuple[str, ...] = ()
    instance_types: tuple[str, ...] = ()
    subnet_id: str | None = None
    security_group_ids: tuple[str, ...] = ()
    instance_profile: str = ""
    log_bucket: str | None = None
    log_prefix: str = LOG_PREFIX
    target_accounts: tuple[str, ...] = ()
    kms_key_id: str | None = None
    artifacts_s3: str | None = None
    wait: bool = True


def agent_source_s3(artifacts_s3: str) -> AgentSource:
    """Where an Image Builder build fetches the node agent's bundle when artifacts are in S3.

    Builds the bundle (``bake.agent_bundle``, deterministic) in a temporary directory only to
    learn its SHA-256; nothing is kept or uploaded.

    Returns:
        ``AgentSource`` with url ``<artifacts_s3>/bake-node/bake-node-<version>.tar.gz``.
    """
    import tempfile

    from bake.agent_bundle import build_agent_bundle

    with tempfile.TemporaryDirectory(prefix="bake-agent-") as tmp:
        bundle = build_agent_bundle(Path(tmp))
    url = f"{artifacts_s3.rstrip('/')}/bake-node/{bundle.filename}"
    return AgentSource(url=url, sha256=bundle.sha256, version=bundle.version)


def upload_agent_bundle(clients: Any, agent: AgentSource, progress: Progress) -> None:
    """Put the agent bundle at ``agent.url`` unless an object with its SHA-256 is there.

    The object is KMS-encrypted with its SHA-256 as metadata (``bake.aws.s3.put_file``), like
    the artifacts ``bake stage`` uploads.

    Raises:
        BuildError: the rebuilt bundle's SHA-256 differs from ``agent.sha256`` (the installed
            bake changed in between).
        AwsError: ``s3:GetObject``/``s3:PutObject`` denied or failed (e.g. no such bucket).
    """
    import tempfile

    from bake.agent_bundle import build_agent_bundle
    from bake.aws import s3

    bucket, key = s3.parse_s3_url(agent.url)
    client = clients.client("s3")
    if s3.object_sha256(client, bucket, key) == agent.sha256:
        progress(f"node agent: already staged {agent.url}")
        return
    with tempfile.TemporaryDirectory(prefix="bake-agent-") as tmp:
        bundle = build_agent_bundle(Path(tmp))
        if bundle.sha256 != agent.sha256:
            raise BuildError(
                f"the node agent bundle changed while baking ({bundle.sha256[:12]} != "
                f"{agent.sha256[:12]}): was bake reinstalled? run bake ami again"
            )
        s3.put_file(client, bucket, key, bundle.path, bundle.sha256)
    progress(f"node agent: uploaded {agent.url}")


def bake_aws(
    options: AmiOptions,
    aws: AwsBakeOptions,
    clients: Any,
    progress: Progress,
    confirm: Callable[[str], bool] | None = None,
) -> list[dict[str, Any]]:
    """Bake in EC2 Image Builder, one image per arch, with the same documents as ``--local``.

    Args:
        options: release request (``options.arch`` is ignored; ``aws.arches`` is used).
        aws: account-specific settings.
        clients: ``bake.aws.session.AwsClients`` for the target account and region.
        progress: one line per step.
        confirm: asked on Ctrl-C whether to cancel the build.
    Returns:
        one ``Outcome.to_json()`` dict per arch, with ``kubernetes_version`` and ``arch`` added.
    Raises:
        CatalogError before anything is created; AwsError, BuildError per
        ``bake.builders.imagebuilder.bake_with_image_builder`` (nothing published on failure).
    """
    from dataclasses import replace

    from bake.builders.imagebuilder import (
        ImageBuilderDriver,
        ImageBuilderOptions,
        bake_with_image_builder,
    )

    # the documents fetch from --artifacts (S3Download) exactly as the driver checks
    if aws.artifacts_s3:
        options = replace(options, artifacts_s3=aws.artifacts_s3)
    # the node agent is baked only when its bundle can be staged next to the artifacts
    agent = agent_source_s3(aws.artifacts_s3) if aws.artifacts_s3 else None
    if agent is None:
        progress(
            "node agent: left out of this image (no --artifacts s3://... to stage "
            "its bundle in); bake-node will not be installed"
        )
    # resolve and render every arch first: a bad version fails before any AWS call
    plans = []
    for arch in aws.arches:
        release = resolve_release(replace(options, arch=arch))
        check_image_archives(release)  # a node that must pull images at boot is not air-gapped
        if aws.artifacts_s3 and not release.os_packages:
            from bake.catalog import OS_PREP_PACKAGES

            progress(
                f"no OS packages staged for {release.os} {release.arch}: the parent image must "
                f"already have {', '.join(OS_PREP_PACKAGES)} (a build without internet never "
                "runs apt-get; stage them with `bake stage --os-packages`)"
            )
        plans.append((release, render_for(release, options, agent)))
    if agent is not None:
        upload_agent_bundle(clients, agent, progress)
    driver = ImageBuilderDriver(
        clients,
        ImageBuilderOptions(
            instance_types=aws.instance_types,
            subnet_id=aws.subnet_id,
            security_group_ids=aws.security_group_ids,
            instance_profile=aws.instance_profile,
            log_bucket=aws.log_bucket,
            log_prefix=aws.log_prefix,
            regions=aws.regions,
            target_accounts=aws.target_accounts,
            kms_key_id=aws.kms_key_id,
            artifacts_s3=aws.artifacts_s3,
            wait=aws.wait,
        ),
        progress,
    )
    results = []
    for release, documents in plans:
        progress(f"EC2 Image Builder: Kubernetes {release.kubernetes_version} {release.arch}")
        outcome = bake_with_image_builder(driver, documents, options.ssm_prefix, confirm)
        results.append(
            {
                "kubernetes_version": release.kubernetes_version,
                "arch": release.arch,
                "os": release.os,
                **outcome.to_json(),
            }
        )
    return results
