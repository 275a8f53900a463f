"""Render the EC2 Image Builder documents of one release: components, image recipe, configurations.

The same byte-exact documents feed both builders: the AWS driver uploads them to EC2 Image
Builder, the local builder's runner executes them in a chroot. Every value comes from the
``Release`` (``bake.catalog``); this module builds each template's context in Python and parses
each rendered document straight away (``bake.templates.render_yaml``), so templates hold no logic
beyond loops over prepared lists.

Components (AWSTOE documents, schemaVersion 1.0, phases build/validate/test), in recipe order:
``bake-os-prep``, ``bake-container-runtime``, ``bake-kubernetes``, ``bake-images``,
``bake-image-manifest``, ``bake-hygiene``; with ``RenderOptions.agent`` the node agent's
``bake-node`` component runs right before ``bake-hygiene``. Every download is an AWSTOE
``WebDownload`` with the catalog's SHA-256 as ``checksum`` and ``algorithm: SHA256`` (AWSTOE
verifies the file before the step succeeds; AWSTOE "Action modules", WebDownload).

With ``RenderOptions.artifacts_s3`` (builds without internet, artifacts staged by ``bake stage``)
every download is instead an AWSTOE ``S3Download`` from ``bake.stage.s3_source`` /
``s3_image_source`` (inputs ``source``, ``destination``, ``overwrite``; S3Download has no
checksum input: AWSTOE "Action modules", S3Download). The step right after a component's
downloads, ``VerifyDownloads`` (ExecuteBash), checks every file with ``sha256sum`` against the
catalog and fails the build (deleting the bad files, naming their S3 objects) before any later
step uses them. One check step per component, not per file, keeps ``bake-images`` under the
16,000-character limit of a component document (CreateComponent ``data``). A release whose
runtime comes from OS packages (``apt-get``) cannot be rendered this way.

Placeholders (``${...}``) left in the request bodies for the AWS driver to fill in with
account-specific values (none of them is a secret):

- ``${component:<name>}``: ARN of the component created from ``components/<name>.yaml``
  (image recipe ``components[].componentArn``).
- ``${kms_key_id}``: KMS key for the encrypted gp3 root volume (image recipe
  ``blockDeviceMappings[].ebs.kmsKeyId``; drop the key to use the account's default EBS key).
- ``${instance_profile}``, ``${subnet_id}``, ``${security_group_id}``, ``${log_bucket}``:
  infrastructure configuration ``instanceProfileName``, ``subnetId``, ``securityGroupIds``,
  ``logging.s3Logs.s3BucketName``.
- ``${region}``: distribution configuration ``distributions[].region``.

``{{imagebuilder:buildDate}}`` in the AMI name is Image Builder's own variable, left literal.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bake.aws import s3, ssm
from bake.catalog import Artifact, Release
from bake.errors import RenderError, UsageError
from bake.imagebuilder_requests import FIRST_VERSION
from bake.plan import (
    DOWNLOADS_DIR,
    IMAGES_DIR,
    OS_PACKAGES_DIR,
    DownloadPlan,
    PlannedFile,
    download_plan,
)
from bake.tags import CONTENT_TAG, release_tags
from bake.templates import read_text, render_text, render_yaml

COMPONENTS: tuple[str, ...] = (
    "bake-os-prep",
    "bake-container-runtime",
    "bake-kubernetes",
    "bake-images",
    "bake-image-manifest",
    "bake-hygiene",
)
# The node agent's component, rendered only with RenderOptions.agent, right before bake-hygiene.
AGENT_COMPONENT = "bake-node"
AGENT_DOWNLOADS_DIR = "/var/tmp/bake-node-downloads"
PLACEHOLDERS: tuple[str, ...] = (
    "${component:<name>}",
    "${kms_key_id}",
    "${instance_profile}",
    "${subnet_id}",
    "${security_group_id}",
    "${log_bucket}",
    "${region}",
)
# Image Builder's own variable (Image Builder user guide, "Manage AMI distribution settings").
IMAGEBUILDER_BUILD_DATE = "{{imagebuilder:buildDate}}"
# Debian's public SSM parameters for its official AMIs (wiki.debian.org/Cloud/AmazonEC2Image).
DEFAULT_PARENT_IMAGE = "ssm:/aws/service/debian/release/12/latest/{arch}"
ROOT_DEVICE = "/dev/xvda"  # root device name of Debian's official AMIs
WORKING_DIRECTORY = "/var/tmp"
MANIFEST_DIR = "/etc/bake"
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
# Build instance types (Image Builder needs Nitro instances for IMDSv2-only; 2 vCPU, 8 GiB).
INSTANCE_TYPES = {"amd64": ("m7i.large", "m6i.large"), "arm64": ("m7g.large", "m6g.large")}
# IMDSv2 hop limit for the build instance: 1 (no containers run there that need IMDS).
IMDS_HOP_LIMIT = 1
#: S3 key prefix of the build logs; Image Builder adds ``<image name>/<version>/<build>/``
#: itself (Image Builder user guide, "Logging"), so one prefix serves every release
LOG_PREFIX = "bake/imagebuilder"
# Debian 12 ships containerd 1.6 and runc 1.1 (packages.debian.org, bookworm).
OS_PACKAGE_CONTAINERD_MAJOR = 1
# Files each artifact installs (what the image manifest hashes). The CNI plugins are globbed.
ARTIFACT_FILES: dict[str, tuple[str, ...]] = {
    "kubeadm": ("/usr/bin/kubeadm",),
    "kubelet": ("/usr/bin/kubelet",),
    "kubectl": ("/usr/bin/kubectl",),
    "crictl": ("/usr/bin/crictl",),
    "containerd": ("/usr/bin/containerd", "/usr/bin/ctr", "/usr/bin/containerd-shim-runc-v2"),
    "runc": ("/usr/sbin/runc",),
    "cni-plugins": ("/opt/cni/bin/*",),
    "etcd": ("/usr/bin/etcdctl",),
}
_SAFE = re.compile(r"^[A-Za-z0-9._:/+~@=*-]+$")


@dataclass(frozen=True)
class AgentSource:
    """Where the build fetches the node agent's bundle (``bake.agent_bundle``).

    Attributes:
        url: ``http(s)://.../bake-node-<version>.tar.gz`` (AWSTOE ``WebDownload`` with the
            SHA-256 as ``checksum``) or ``s3://bucket/key`` (``S3Download``, then a
            ``VerifyDownloads`` step checks the SHA-256 before the bundle is unpacked).
        sha256: SHA-256 hex of the tarball.
        version: the agent's version (bake's version), recorded in the image manifest.
    """

    url: str
    sha256: str
    version: str


@dataclass(frozen=True)
class RenderOptions:
    """How to render a release's documents.

    Attributes:
        mirror: artifact base URL laid out as ``<mirror>/<upstream host>/<path>`` (``None``:
            upstream URLs). Image archives always come from a mirror.
        ssm_prefix: SSM hierarchy; the parameter is
            ``f"{ssm_prefix}/{minor}/{os}/{arch}/image_id"``.
        parent_image: Image Builder parent image (AMI ID, image ARN or ``ssm:<parameter>``);
            default ``ssm:/aws/service/debian/release/12/latest/<amd64|arm64>``.
        volume_size_gib: root volume size in GiB.
        artifacts_s3: ``s3://bucket/prefix`` staged by ``bake stage``; when set, every binary,
            tarball and image archive is fetched with AWSTOE ``S3Download`` from there (the
            mirror layout, ``bake.stage.s3_source``) and checked against the catalog's SHA-256
            by the step right after the downloads (``VerifyDownloads``), so the build needs no
            internet. ``None``: ``WebDownload``.
        agent: the node agent's bundle; when set, the ``bake-node`` component is rendered
            right before ``bake-hygiene`` and the image manifest lists the agent under
            ``"agent"``. ``None``: no agent in the image (``component_names(False)``).
    """

    mirror: str | None = None
    ssm_prefix: str = "/bake/k8s"
    parent_image: str | None = None
    volume_size_gib: int = 20
    artifacts_s3: str | None = None
    agent: AgentSource | None = None


def component_names(with_agent: bool) -> tuple[str, ...]:
    """The components in recipe order: ``COMPONENTS``, plus ``bake-node`` right before
    ``bake-hygiene`` when the node agent is baked in (hygiene stays last)."""
    if not with_agent:
        return COMPONENTS
    return (*COMPONENTS[:-1], AGENT_COMPONENT, COMPONENTS[-1])


@dataclass(frozen=True)
class Document:
    """One rendered document.

    Attributes:
        kind: ``component``, ``image-recipe``, ``infrastructure-configuration`` or
            ``distribution-configuration``.
        name: e.g. ``bake-container-runtime``.
        path: relative output path, e.g. ``components/bake-container-runtime.yaml``.
        text: the rendered text, byte-exact (uploaded to AWS, run by the local runner).
        data: the parsed YAML.
    """

    kind: str
    name: str
    path: str
    text: str
    data: Any


@dataclass(frozen=True)
class ImageDocuments:
    """Everything Image Builder needs for one release.

    Attributes:
        release: the release rendered.
        components: the component documents, in recipe order.
        recipe: the CreateImageRecipe request body.
        infrastructure: the CreateInfrastructureConfiguration request body.
        distribution: the CreateDistributionConfiguration request body.
        ssm_parameter: the SSM parameter the image id is published to
            (``<ssm_prefix>/<minor>/<os>/<arch>/image_id``, ``bake.aws.ssm.parameter_name``);
            bake publishes it after the build, the CloudFormation form through Image Builder.
    """

    release: Release
    components: tuple[Document, ...]
    recipe: Document
    infrastructure: Document
    distribution: Document
    ssm_parameter: str | None = None

    @property
    def documents(self) -> tuple[Document, ...]:
        """All documents: components in recipe order, then recipe, infrastructure, distribution."""
        return (*self.components, self.recipe, self.infrastructure, self.distribution)

    def files(self) -> dict[str, str]:
        """``{relative path: text}`` of every document, in ``documents`` order."""
        return {doc.path: doc.text for doc in self.documents}

    def write(self, out_dir: Path, option: str = "-o") -> list[Path]:
        """Write every document under ``out_dir`` at its ``path``, all or nothing
        (``bake.userfiles.write_files``).

        Returns:
            the paths written, in ``documents`` order.
        Raises:
            UsageError: the directory cannot be written (nothing is left behind).
        """
        from bake.userfiles import write_files

        return write_files(out_dir, self.files(), option)

    @property
    def content_hash(self) -> str:
        """SHA-256 hex over the component and recipe texts (with their paths), in order.

        Two renders with the same hash build the same image contents.
        """
        h = hashlib.sha256()
        for doc in (*self.components, self.recipe):
            h.update(doc.path.encode() + b"\0" + doc.text.encode() + b"\0")
        return h.hexdigest()


# ---------------------------------------------------------------- helpers


def _safe(value: str) -> str:
    """Return ``value`` if it can be pasted into shell and YAML unquoted; else ``RenderError``."""
    if not _SAFE.match(value):
        raise RenderError(f"refusing to render unsafe value {value!r} into a component")
    return value


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", name) if part)


def _download(
    planned: PlannedFile, mirror: str | None, artifacts_s3: str | None, step: str
) -> dict[str, Any]:
    """Download step input of one ``bake.plan.PlannedFile``.

    Returns:
        ``{"step", "source", "destination", "sha256", "install", "s3"}``; ``s3`` is true when
        ``source`` is an ``s3://`` URI (an S3Download step; the component's ``VerifyDownloads``
        step checks the SHA-256), false for a ``WebDownload`` URL (checksum input).
    """
    return {
        "step": step,
        "source": _safe(planned.s3_uri(artifacts_s3)) if artifacts_s3 else planned.url(mirror),
        "destination": _safe(planned.destination),
        "sha256": _safe(planned.sha256),
        "install": _safe(planned.install) if planned.install else None,
        "s3": bool(artifacts_s3),
    }


def _artifact_download(
    planned: PlannedFile, mirror: str | None, artifacts_s3: str | None
) -> dict[str, Any]:
    """Download step input of a release artifact (step ``Download<Name>``)."""
    return _download(planned, mirror, artifacts_s3, f"Download{_camel(planned.name)}")


def check_artifacts_s3(release: Release, artifacts_s3: str) -> str:
    """Check that ``release`` can be built from ``artifacts_s3`` alone, without internet.

    Args:
        release: the resolved release.
        artifacts_s3: ``s3://bucket/prefix`` as given to ``--artifacts``.
    Returns:
        ``artifacts_s3`` without a trailing slash.
    Raises:
        UsageError: not an ``s3://bucket[/prefix]`` URI, or an artifact comes from an OS
            package: ``apt-get`` needs the Debian archive, which a build in a private subnet
            without internet cannot reach (and ``bake stage`` does not stage packages).
    """
    uri = s3.check_prefix_url(artifacts_s3, "--artifacts")
    packaged = [a.name for a in release.artifacts if a.source == "os-package"]
    if packaged:
        raise UsageError(
            f"--artifacts {uri}: {', '.join(packaged)} for Kubernetes "
            f"{release.kubernetes_version} come from Debian packages (apt-get), which a build "
            "without internet cannot install; use the release files (source: release in a "
            "catalog overlay) or drop --artifacts"
        )
    return uri


def _install_commands(artifact: Artifact, planned: PlannedFile) -> list[str]:
    """Shell lines that install a downloaded, already verified release artifact."""
    src = _safe(planned.destination)
    dest = _safe(artifact.install)
    if artifact.kind == "binary":
        return [f"install -D -m 0755 -o root -g root {src} {dest}"]
    if artifact.name == "crictl":
        return [f"tar -xzf {src} -C {dest} --no-same-owner crictl", f"chmod 0755 {dest}/crictl"]
    if artifact.name == "etcd":  # the client only: etcd itself runs from the kubeadm image set
        top = _safe(f"etcd-v{artifact.version}-linux-{artifact.arch}")
        return [
            f"tar -xzf {src} -C {dest} --no-same-owner --strip-components=1 {top}/etcdctl",
            f"chmod 0755 {dest}/etcdctl",
        ]
    return [f"mkdir -p {dest}", f"tar -xzf {src} -C {dest} --no-same-owner"]


def _containerd_major(artifact: Artifact) -> int:
    if artifact.source == "os-package":
        return OS_PACKAGE_CONTAINERD_MAJOR
    return int(artifact.version.split(".")[0])


def _component(name: str, context: dict[str, Any]) -> Document:
    text, data = render_yaml("components", f"{name}.yaml.j2", context)
    if not isinstance(data, dict) or data.get("name") != name:
        raise RenderError(f"component template {name} did not render a component named {name}")
    return Document("component", name, f"components/{name}.yaml", text, data)


def _request(kind: str, name: str, context: dict[str, Any]) -> Document:
    text, data = render_yaml("image-recipes", f"{kind}.yaml.j2", context)
    return Document(kind, name, f"image-recipes/{kind}.yaml", text, data)


# ---------------------------------------------------------------- contexts


def _os_prep(base: dict[str, Any], plan: DownloadPlan, artifacts_s3: str | None) -> dict[str, Any]:
    """Context of bake-os-prep. Builds with internet install missing tools with apt-get; builds
    without (``artifacts_s3``) never do: they install the .debs ``bake stage --os-packages``
    staged (S3Download, then a SHA-256 check against the catalog), or fail naming the tools."""
    from bake.catalog import OS_PREP_PACKAGES

    downloads = [
        _download(p, None, artifacts_s3, f"Download{_camel(p.name)}Deb")
        for p in (plan.os_packages if artifacts_s3 else ())
    ]
    # kubernetes.io "Container Runtimes", "Install and configure prerequisites".
    return {
        **base,
        "offline": bool(artifacts_s3),
        "downloads": downloads,
        "verify_downloads": bool(downloads),
        "os_packages_dir": OS_PACKAGES_DIR,
        "modules": ["overlay", "br_netfilter"],
        "sysctls": [
            ("net.bridge.bridge-nf-call-iptables", "1"),
            ("net.bridge.bridge-nf-call-ip6tables", "1"),
            ("net.ipv4.ip_forward", "1"),
        ],
        # kubeadm preflight checks (kubeadm "Installing kubeadm": conntrack, iptables)
        "packages": list(OS_PREP_PACKAGES),
        "tools": list(OS_PREP_PACKAGES),
    }


def _runtime(
    base: dict[str, Any],
    release: Release,
    plan: DownloadPlan,
    mirror: str | None,
    artifacts_s3: str | None,
) -> dict[str, Any]:
    names = ("containerd", "runc", "cni-plugins", "crictl")
    arts = [release.artifact(n) for n in names]
    releases = [a for a in arts if a.source == "release"]
    planned = {a.name: plan.artifact(a.name) for a in releases}
    containerd, runc = release.artifact("containerd"), release.artifact("runc")
    major = _containerd_major(containerd)
    config_version = 3 if major >= 2 else 2
    pause_ref = _safe(release.image("pause").ref)
    from_package = containerd.source == "os-package"
    executables = [
        *ARTIFACT_FILES["containerd"],
        *ARTIFACT_FILES["runc"],
        *ARTIFACT_FILES["crictl"],
    ]
    return {
        **base,
        "containerd_version": containerd.version,
        "runc_version": runc.version,
        "downloads": [_artifact_download(planned[a.name], mirror, artifacts_s3) for a in releases],
        "verify_downloads": bool(artifacts_s3 and releases),
        "install_commands": [
            line for a in releases for line in _install_commands(a, planned[a.name])
        ],
        "os_packages": [_safe(a.package or a.name) for a in arts if a.source == "os-package"],
        "containerd_config": render_text(
            "components",
            f"files/containerd-config-v{config_version}.toml.j2",
            {"pause_ref": pause_ref},
        ),
        "config_version": config_version,
        "pause_ref": pause_ref,
        "containerd_socket": f"unix://{CONTAINERD_SOCKET}",
        # Debian's package ships and enables its own unit in /lib/systemd/system.
        "containerd_unit": None
        if from_package
        else read_text("components", "files/containerd.service"),
        "containerd_unit_path": "/lib/systemd/system/containerd.service"
        if from_package
        else "/etc/systemd/system/containerd.service",
        "executables": executables,
        "sha_checks": [
            {"path": a.install, "sha256": a.sha256} for a in releases if a.kind == "binary"
        ],
    }


def _kubernetes(
    base: dict[str, Any],
    release: Release,
    plan: DownloadPlan,
    mirror: str | None,
    artifacts_s3: str | None,
) -> dict[str, Any]:
    arts = [release.artifact(n) for n in ("kubeadm", "kubelet", "kubectl")]
    etcd = release.artifact("etcd")
    planned = {a.name: plan.artifact(a.name) for a in (*arts, etcd)}
    return {
        **base,
        "downloads": [_artifact_download(p, mirror, artifacts_s3) for p in planned.values()],
        "verify_downloads": bool(artifacts_s3 and arts),
        "install_commands": [
            line for a in (*arts, etcd) for line in _install_commands(a, planned[a.name])
        ],
        "sha_checks": [{"path": _safe(a.install), "sha256": a.sha256} for a in arts],
        "etcd_version": _safe(etcd.version),
        "kubelet_unit": read_text("components", "files/kubelet.service"),
        "kubelet_unit_path": "/lib/systemd/system/kubelet.service",
        "kubeadm_dropin": read_text("components", "files/10-kubeadm.conf"),
        "kubelet_dropin_dir": "/etc/systemd/system/kubelet.service.d",
    }


def staged_images(plan: DownloadPlan) -> list[dict[str, str]]:
    """The images the image stages: those whose archive SHA-256 the catalog knows.

    Args:
        plan: the release's ``bake.plan.DownloadPlan``.
    Returns:
        ``[{"name", "ref", "archive", "sha256", "path"}]`` where ``archive`` is the path on the
        image (``/var/lib/bake/images/<name>_<tag>.tar``) and ``path`` the mirror path.
    """
    return [
        {
            "name": _safe(i.name),
            "ref": _safe(i.ref or ""),
            "archive": _safe(i.destination),
            "sha256": _safe(i.sha256),
            "path": i.path,
        }
        for i in plan.images
    ]


def _images(
    base: dict[str, Any], plan: DownloadPlan, mirror: str | None, artifacts_s3: str | None
) -> dict[str, Any]:
    images = staged_images(plan)
    downloads = [
        _download(i, mirror, artifacts_s3, f"Download{_camel(i.name)}Image") for i in plan.images
    ]
    ctx = {
        "images": images,
        "images_dir": IMAGES_DIR,
        "containerd_address": CONTAINERD_SOCKET,
        "import_script": "/usr/local/sbin/bake-images-import",
    }
    return {
        **base,
        **ctx,
        "downloads": downloads,
        "verify_downloads": bool(artifacts_s3 and downloads),
        "offline": bool(artifacts_s3),
        "import_script_text": render_text("components", "files/bake-images-import.sh.j2", ctx),
        "import_unit": render_text("components", "files/bake-images-import.service.j2", ctx),
        "import_unit_path": "/etc/systemd/system/bake-images-import.service",
    }


def _agent(base: dict[str, Any], agent: AgentSource) -> dict[str, Any]:
    """Context of components/bake-node.yaml.j2 (download, verify, unpack, units)."""
    bundle = f"{AGENT_DOWNLOADS_DIR}/bake-node-{_safe(agent.version)}.tar.gz"
    return {
        **base,
        "downloads_dir": AGENT_DOWNLOADS_DIR,
        "agent_version": _safe(agent.version),
        "agent_source": _safe(agent.url),
        "agent_sha256": _safe(agent.sha256),
        "agent_s3": agent.url.startswith("s3://"),
        "agent_bundle": _safe(bundle),
    }


def _manifest(
    base: dict[str, Any], release: Release, plan: DownloadPlan, agent: AgentSource | None = None
) -> dict[str, Any]:
    artifacts = []
    for a in release.artifacts:
        if a.source == "os-package":
            # the installed dpkg version, recorded on the target at build time
            version_shell = f'"$(dpkg-query -W -f="\\${{Version}}" {_safe(a.package or a.name)})"'
        else:
            version_shell = _safe(a.version)
        artifacts.append(
            {
                "name": _safe(a.name),
                "source": _safe(a.source),
                "version_shell": version_shell,
                "url_json": json.dumps(_safe(a.url)) if a.url else "null",
                "sha256_json": json.dumps(_safe(a.sha256)) if a.sha256 else "null",
                "files": list(ARTIFACT_FILES[a.name]),
            }
        )
    header = [
        ("schema", "bake.image-manifest/v1"),
        ("kubernetes_version", release.kubernetes_version),
        ("minor", release.minor),
        ("arch", release.arch),
        ("os", release.os),
    ]
    return {
        **base,
        "manifest_dir": MANIFEST_DIR,
        "manifest_path": f"{MANIFEST_DIR}/image-manifest.json",
        "header": [(k, json.dumps(_safe(v))) for k, v in header],
        "artifacts": artifacts,
        "images": staged_images(plan),
        # pasted inside single quotes in shell: a quote in a path is escaped JSON-style
        "catalog_sources_json": json.dumps(list(release.catalog_sources)).replace("'", "\\u0027"),
        # the agent bundle baked by the bake-node component (None: no agent in the image)
        "agent_json": json.dumps(
            {
                "name": AGENT_COMPONENT,
                "version": _safe(agent.version),
                "url": _safe(agent.url),
                "sha256": _safe(agent.sha256),
            }
        )
        if agent
        else None,
    }


def render_image_documents(release: Release, options: RenderOptions) -> ImageDocuments:
    """Render and parse every Image Builder document for ``release``.

    Args:
        release: the resolved release (``bake.catalog.resolve``).
        options: mirror, SSM prefix, parent image, volume size, S3 artifacts.
    Returns:
        the ``ImageDocuments`` (components in recipe order, recipe, infrastructure,
        distribution); nothing is written.
    Raises:
        RenderError: a template failed (undefined value, invalid YAML) or a catalog value is not
            safe to paste into shell.
        CatalogError: an image archive SHA-256 is known but neither a mirror nor
            ``artifacts_s3`` was given.
        UsageError: ``artifacts_s3`` is malformed, or set for a release with an OS-package
            runtime (see ``check_artifacts_s3``).
    """
    artifacts_s3 = (
        check_artifacts_s3(release, options.artifacts_s3) if options.artifacts_s3 else None
    )
    base = {
        "kubernetes_version": _safe(release.kubernetes_version),
        "minor": release.minor,
        "arch": _safe(release.arch),
        "os": release.os,
        "downloads_dir": DOWNLOADS_DIR,
    }
    plan = download_plan(release)
    mirror = options.mirror
    contexts = {
        "bake-os-prep": _os_prep(base, plan, artifacts_s3),
        "bake-container-runtime": _runtime(base, release, plan, mirror, artifacts_s3),
        "bake-kubernetes": _kubernetes(base, release, plan, mirror, artifacts_s3),
        "bake-images": _images(base, plan, mirror, artifacts_s3),
        "bake-image-manifest": _manifest(base, release, plan, options.agent),
        "bake-hygiene": base,
    }
    if options.agent:
        contexts[AGENT_COMPONENT] = _agent(base, options.agent)
    names = component_names(options.agent is not None)
    components = tuple(_component(name, contexts[name]) for name in names)

    target = f"{release.os}, {release.arch}"
    ami_description = f"Kubernetes {release.kubernetes_version} node image ({target}) by bake"
    dashed = f"{release.kubernetes_version.replace('.', '-')}-{release.os}-{release.arch}"
    tags = list(release_tags(release.kubernetes_version, release.arch, release.os).items())
    recipe = _request(
        "image-recipe",
        f"bake-k8s-{dashed}",
        {
            "name": f"bake-k8s-{dashed}",
            "description": ami_description,
            "semantic_version": FIRST_VERSION,
            "parent_image": options.parent_image or DEFAULT_PARENT_IMAGE.format(arch=release.arch),
            "components": names,
            "root_device": ROOT_DEVICE,
            "volume_size_gib": int(options.volume_size_gib),
            "working_directory": WORKING_DIRECTORY,
            "tags": tags,
        },
    )
    infrastructure = _request(
        "infrastructure-configuration",
        f"bake-k8s-{release.arch}",
        {
            "name": f"bake-k8s-{release.arch}",
            "description": f"bake build instances for {release.arch}: IMDSv2 only, "
            "terminated on failure",
            "instance_types": INSTANCE_TYPES[release.arch],
            "hop_limit": IMDS_HOP_LIMIT,
            "log_prefix": LOG_PREFIX,
            "tags": tags,
        },
    )
    content_hash = ImageDocuments(
        release, components, recipe, infrastructure, infrastructure
    ).content_hash
    minor_dashed = f"{release.minor.replace('.', '-')}-{release.os}-{release.arch}"
    distribution = _request(
        "distribution-configuration",
        f"bake-k8s-{minor_dashed}",
        {
            "name": f"bake-k8s-{minor_dashed}",
            "description": f"bake AMIs for Kubernetes {release.minor} ({target}), published to SSM",
            "ami_name": f"bake-k8s-{release.kubernetes_version}-{release.os}-{release.arch}-"
            + IMAGEBUILDER_BUILD_DATE,
            "ami_description": ami_description,
            "ami_tags": [*tags, (CONTENT_TAG, content_hash)],
            "tags": tags,
        },
    )
    return ImageDocuments(
        release,
        components,
        recipe,
        infrastructure,
        distribution,
        ssm_parameter=ssm.parameter_name(
            options.ssm_prefix, release.minor, release.os, release.arch
        ),
    )
