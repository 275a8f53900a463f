"""What rendering takes and gives: the render options, the agent's source, the rendered
documents (``Document``, ``ImageDocuments``) and the facts the templates encode (paths, build
instance types, Debian's parent image), with their sources."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bake.catalog import Release

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
    "ecr-credential-provider": (
        "/usr/libexec/kubernetes/image-credential-provider/ecr-credential-provider",),
}


def etcd_client_tools(version: str) -> tuple[str, ...]:
    """The etcd client programs baked from the etcd release archive at ``version``:
    ``etcdctl``, and ``etcdutl`` from 3.5 on (etcd v3.5 CHANGELOG: etcdutl is new in 3.5 and
    does the offline snapshot status/restore the node agent's restore uses; 3.4 has none)."""
    major_minor = tuple(int(p) for p in version.split(".")[:2])
    return ("etcdctl", "etcdutl") if major_minor >= (3, 5) else ("etcdctl",)


def artifact_files(name: str, version: str) -> tuple[str, ...]:
    """The files artifact ``name`` at ``version`` installs (what the image manifest hashes):
    ``ARTIFACT_FILES``, with the etcd client tools of that etcd version."""
    if name == "etcd":
        return tuple(f"/usr/bin/{tool}" for tool in etcd_client_tools(version))
    return ARTIFACT_FILES[name]


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


def component_names(with_agent: bool, addons: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The components in recipe order: ``COMPONENTS``, with one ``bake-addon-<name>`` per baked
    add-on right after ``bake-images`` (whose import script they use), and ``bake-node`` right
    before ``bake-hygiene`` when the node agent is baked in (hygiene stays last). Image Builder
    takes at most 20 components per recipe (API reference, ImageRecipe.components).

    Args:
        with_agent: the node agent is baked in.
        addons: the baked add-ons' names (``Release.addons``), in name order.
    """
    at = COMPONENTS.index("bake-images") + 1
    names = (*COMPONENTS[:at], *(f"bake-addon-{a}" for a in addons), *COMPONENTS[at:])
    if not with_agent:
        return names
    return (*names[:-1], AGENT_COMPONENT, names[-1])


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
