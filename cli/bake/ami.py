"""``bake ami``: bake a node image for one Kubernetes release, then publish it.

The service behind the command, one short pipeline for both builders:
resolve -> validate (one pass, ``bake.validation``) -> render -> build -> publish.
``bake_local(options, progress)`` builds with ``bake.builders.local.OnThisMachine`` (Debian 12
rootfs, the rendered component documents, testinfra as the test phase) and publishes to the
embedded AWS; ``bake_aws`` builds with ``bake.builders.imagebuilder.InImageBuilder`` from the
very same documents. Both hand the builder to ``bake.publish.build_and_publish`` and return its
``AmiResult``.

Order of work and what a failure leaves behind (local):
1. resolve + validate: host arch, catalog, image archive checksums, mirror reachable, root,
tools, free disk, all reported at once (no side effects) -> 2. render (no side effects) -> 3.
embedded AWS started -> 4. build into a staging directory -> 5. test phase (components' test
phases, then testinfra) -> 6. register + publish (rolled back together by ``bake.publish``) ->
7. staging renamed into place. A failure at any step removes the staging directory; nothing is
registered or published before step 6.
"""

from __future__ import annotations

import platform
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bake.builders.contract import Builder
from bake.catalog import Release, load_catalog, resolve
from bake.errors import ArtifactError, BuildError, CatalogError, EnvironmentProblem
from bake.publish import AmiResult, build_and_publish
from bake.render import (
    LOG_PREFIX,
    AgentSource,
    ImageDocuments,
    RenderOptions,
    render_image_documents,
)
from bake.validation import Findings

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
        addons: the add-ons to bake (``--addons``): ``None`` every one the catalog pins for the
            minor, else those names (``bake.catalog.resolve``).
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
    addons: tuple[str, ...] | None = None


def resolve_release(options: AmiOptions) -> Release:
    """Load the catalog (shipped + overlays) and resolve the requested release.

    Raises:
        CatalogError: unknown/malformed version or arch, bad overlay.
    """
    return resolve(load_catalog(options.catalogs), options.k8s, options.arch, options.os_name,
                   addons=options.addons)


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


def validate_local(options: AmiOptions, builder: Builder, progress: Progress) -> Release:
    """Every check of a local bake in one pass, before any work (``bake.validation``).

    Checks: the host's arch (a chroot runs the target's binaries), the release in the catalog,
    a SHA-256 for every image archive, the artifact mirror answering, and the builder's
    preflight (root, tools, free disk). An OS the local builder cannot bootstrap (its data file
    has no ``local`` section: Ubuntu, AL2023) is refused first, alone: nothing else matters then.

    Returns:
        the resolved ``Release``.
    Raises:
        UsageError: the OS cannot be baked locally (one line, why).
        BakeError: the one failure, or ``CheckFailures`` naming every one (exit 2 when any is
            bad input).
    """
    from bake.oses import load_os, os_names

    if options.os_name in os_names():  # an unknown OS is the catalog's to name
        load_os(options.os_name).local_parent(options.arch)
    findings = Findings()
    if options.arch in _HOST_ARCH.values():  # an unknown arch is the catalog's to name
        findings.check("host", check_host_arch, options.arch)
    release = findings.check("catalog", resolve_release, options)
    if release is not None:
        findings.check("image-archives", check_image_archives, release)
        findings.check("mirror", check_mirror, release, options.mirror)
    findings.check("builder", builder.preflight)
    findings.raise_errors(progress)
    assert release is not None  # raise_errors raised otherwise
    return release


def bake_local(options: AmiOptions, progress: Progress) -> AmiResult:
    """Bake an image on this machine and publish it to the embedded AWS.

    resolve and validate (one pass) -> render -> build -> publish, the last two through
    ``bake.publish.build_and_publish`` as for Image Builder.

    Args:
        options: the request.
        progress: called with one human-readable line per step.
    Returns:
        the ``bake.publish.AmiResult`` (``details["local"]``: the image's paths).
    Raises:
        CatalogError, ArtifactError, EnvironmentProblem, CheckFailures, BuildError,
        SandboxError, AwsError: one line each; staging removed, nothing registered or published.
    """
    import time

    from bake.agent_bundle import build_agent_bundle, serve_directory
    from bake.aws.session import AwsClients
    from bake.builders.local.builder import LocalBuilder, LocalBuildOptions
    from bake.builders.local.machine import OnThisMachine
    from bake.sandbox.server import ensure_running, sandbox_target

    started = time.monotonic()
    builder = OnThisMachine(
        LocalBuilder(
            LocalBuildOptions(
                data_dir=options.data_dir,
                debian_mirror=options.debian_mirror,
                keep_failed=options.keep_failed,
                after_test=_testinfra_phase(progress),
            ),
            progress,
        )
    )
    release = validate_local(options, builder, progress)
    progress(
        f"release: Kubernetes {release.kubernetes_version} {release.arch} {release.os} "
        f"(catalog: {' + '.join(release.catalog_sources)})"
    )
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
        sandbox = ensure_running(options.data_dir, progress)
        clients = AwsClients(sandbox_target(sandbox))
        result = build_and_publish(builder, documents, clients, options.ssm_prefix, progress)
    progress(f"published {result.image_id} to {result.ssm_parameter} ({result.label})")
    return replace(result, duration_s=time.monotonic() - started)


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


def validate_aws(options: AmiOptions, aws: AwsBakeOptions, builder: Builder) -> list[Release]:
    """Every check of an Image Builder bake in one pass, before any AWS call.

    Per arch: the release in the catalog and a SHA-256 for every image archive (a node that
    must pull images at boot is not air-gapped); with ``--artifacts``, a warning when no OS
    packages are staged; then the driver's option checks.

    Returns:
        the resolved releases, in ``aws.arches`` order.
    Raises:
        BakeError: the one failure, or ``CheckFailures`` naming every one.
    """
    from bake.oses import load_os

    findings = Findings()
    releases = []
    for arch in aws.arches:
        release = findings.check("catalog", resolve_release, replace(options, arch=arch))
        if release is None:
            continue
        releases.append(release)
        findings.check("image-archives", check_image_archives, release)
        if aws.artifacts_s3 and not release.os_packages:
            findings.warn(
                "os-packages",
                f"no OS packages staged for {release.os} {release.arch}: the parent image must "
                f"already have {', '.join(load_os(release.os).packages)} (a build without "
                "internet never reaches a package repository; stage them with `bake stage "
                "--os-packages`)",
            )
    findings.check("builder", builder.preflight)
    findings.raise_errors(builder.driver.progress)
    return releases


def bake_aws(
    options: AmiOptions,
    aws: AwsBakeOptions,
    clients: Any,
    progress: Progress,
    confirm: Callable[[str], bool] | None = None,
) -> list[dict[str, Any]]:
    """Bake in EC2 Image Builder, one image per arch, with the same documents as ``--local``.

    resolve and validate (one pass, every arch) -> render -> build -> publish, the last two
    through ``bake.publish.build_and_publish`` as for the local builder.

    Args:
        options: release request (``options.arch`` is ignored; ``aws.arches`` is used).
        aws: account-specific settings.
        clients: ``bake.aws.session.AwsClients`` for the target account and region.
        progress: one line per step.
        confirm: asked on Ctrl-C whether to cancel the build.
    Returns:
        one ``bake.publish.AmiResult.to_json()`` per arch.
    Raises:
        CatalogError, CheckFailures before anything is created; AwsError, BuildError per
        ``bake.builders.imagebuilder.InImageBuilder`` (nothing published on failure).
    """
    from bake.builders.imagebuilder import ImageBuilderDriver, ImageBuilderOptions, InImageBuilder

    # the documents fetch from --artifacts (S3Download) exactly as the driver checks
    if aws.artifacts_s3:
        options = replace(options, artifacts_s3=aws.artifacts_s3)
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
    builder = InImageBuilder(driver, confirm)
    releases = validate_aws(options, aws, builder)
    # the node agent is baked only when its bundle can be staged next to the artifacts
    agent = agent_source_s3(aws.artifacts_s3) if aws.artifacts_s3 else None
    if agent is None:
        progress(
            "node agent: left out of this image (no --artifacts s3://... to stage "
            "its bundle in); bake-node will not be installed"
        )
    # render every arch first: a template problem fails before any AWS call
    plans = [render_for(release, options, agent) for release in releases]
    if agent is not None:
        upload_agent_bundle(clients, agent, progress)
    results = []
    for documents in plans:
        release = documents.release
        progress(f"EC2 Image Builder: Kubernetes {release.kubernetes_version} {release.arch}")
        result = build_and_publish(builder, documents, clients, options.ssm_prefix, progress)
        results.append(result.to_json())
    return results
