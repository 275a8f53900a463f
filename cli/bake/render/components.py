"""The components' template contexts, built in Python from a ``Release`` and its download plan
(``bake.plan``): one function per component document, and the shell-safe helpers they share."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from bake.aws import s3
from bake.catalog import Artifact, Release
from bake.errors import RenderError, UsageError
from bake.oses import OsInfo
from bake.plan import (
    ADDON_FILES_DIR,
    IMAGES_DIR,
    OS_PACKAGES_DIR,
    DownloadPlan,
    PlannedFile,
)
from bake.render.model import (
    AGENT_COMPONENT,
    AGENT_DOWNLOADS_DIR,
    ARTIFACT_FILES,
    CONTAINERD_SOCKET,
    MANIFEST_DIR,
    OS_PACKAGE_CONTAINERD_MAJOR,
    AgentSource,
    Document,
    artifact_files,
    etcd_client_tools,
)
from bake.templates import check_shell, read_text, render_text, render_yaml

_SAFE = re.compile(r"^[A-Za-z0-9._:/+~@=*-]+$")


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
        ``{"step", "source", "destination", "sha256", "install", "s3", "staged", "path"}``;
        ``s3`` is true when ``source`` is an ``s3://`` URI (an S3Download step; the component's
        ``VerifyDownloads`` step checks the SHA-256), false for a ``WebDownload`` URL (checksum
        input). ``source`` is ``<staged>/<path>`` for S3 (``staged``: the ``--artifacts``
        prefix), written once in the check step to keep components under 16,000 characters.
    """
    return {
        "step": step,
        "source": _safe(planned.s3_uri(artifacts_s3)) if artifacts_s3 else planned.url(mirror),
        "destination": _safe(planned.destination),
        "sha256": _safe(planned.sha256),
        "install": _safe(planned.install) if planned.install else None,
        "s3": bool(artifacts_s3),
        "staged": _safe(artifacts_s3.rstrip("/")) if artifacts_s3 else None,
        "path": _safe(planned.path),
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
        tools = etcd_client_tools(artifact.version)
        members = " ".join(f"{top}/{t}" for t in tools)
        return [
            f"tar -xzf {src} -C {dest} --no-same-owner --strip-components=1 {members}",
            f"chmod 0755 {' '.join(f'{dest}/{t}' for t in tools)}",
        ]
    return [f"mkdir -p {dest}", f"tar -xzf {src} -C {dest} --no-same-owner"]


def _containerd_major(artifact: Artifact) -> int:
    if artifact.source == "os-package":
        return OS_PACKAGE_CONTAINERD_MAJOR
    return int(artifact.version.split(".")[0])


def _component(name: str, context: dict[str, Any]) -> Document:
    # every add-on's component comes from one template (components/bake-addon.yaml.j2)
    template = "bake-addon" if name.startswith("bake-addon-") else name
    text, data = render_yaml("components", f"{template}.yaml.j2", context)
    if not isinstance(data, dict) or data.get("name") != name:
        raise RenderError(f"component template {name} did not render a component named {name}")
    scripts = {}
    for phase in data.get("phases", []):
        for step in phase.get("steps", []):
            if step.get("action") != "ExecuteBash":
                continue
            label = f"component {name}, phase {phase['name']}, step {step['name']}"
            for n, command in enumerate(step["inputs"]["commands"], 1):
                scripts[label if n == 1 else f"{label} (command {n})"] = command
    check_shell(scripts)  # every ExecuteBash script, one bash -n
    return Document("component", name, f"components/{name}.yaml", text, data)


# ---------------------------------------------------------------- contexts


def _pm(info: OsInfo) -> dict[str, Any]:
    """The package manager's shell, as the templates paste it (``bake.oses.PackageManager``)."""
    return dataclasses.asdict(info.package_manager)


def _os_prep(base: dict[str, Any], plan: DownloadPlan, artifacts_s3: str | None,
             info: OsInfo) -> dict[str, Any]:
    """Context of bake-os-prep. Builds with internet install what the parent image lacks with
    the OS's package manager (``info``); builds without (``artifacts_s3``) never reach a
    repository: they install the package files ``bake stage --os-packages`` staged (S3Download,
    then a SHA-256 check against the catalog), or fail naming the packages."""
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
        "pm": _pm(info),
        # kubeadm preflight checks (kubeadm "Installing kubeadm": conntrack, iptables)
        "tools": [(_safe(c), _safe(p)) for c, p in info.tools.items()],
        "tool_names": [_safe(c) for c in info.tools],
        "python": [(_safe(m), _safe(p)) for m, p in info.python.items()],
    }


def _runtime(
    base: dict[str, Any],
    release: Release,
    plan: DownloadPlan,
    mirror: str | None,
    artifacts_s3: str | None,
    info: OsInfo,
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
        "pm": _pm(info),
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
    # the kubelet's binaries, with the ECR credential provider when the catalog pins it
    arts = [release.artifact(n) for n in ("kubeadm", "kubelet", "kubectl",
                                          "ecr-credential-provider")
            if release.has_artifact(n)]
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


def staged_images(plan: DownloadPlan, group: str | None = None) -> list[dict[str, str]]:
    """The images the image stages: those whose archive SHA-256 the catalog knows.

    Args:
        plan: the release's ``bake.plan.DownloadPlan``.
        group: only this set's (``kubeadm`` or an add-on's name); ``None``: every image.
    Returns:
        ``[{"name", "ref", "archive", "sha256", "path", "group"}]`` where ``archive`` is the
        path on the image (``/var/lib/bake/images/<name>_<tag>.tar``) and ``path`` the mirror
        path.
    """
    return [
        {
            "name": _safe(i.name),
            "ref": _safe(i.ref or ""),
            "archive": _safe(i.destination),
            "sha256": _safe(i.sha256),
            "path": i.path,
            "group": _safe(i.group or "kubeadm"),
        }
        for i in plan.images
        if group is None or i.group == group
    ]


IMPORT_SCRIPT = "/usr/local/sbin/bake-images-import"


def _image_set(plan: DownloadPlan, group: str, mirror: str | None,
               artifacts_s3: str | None) -> dict[str, Any]:
    """What bake-images (``group`` kubeadm) and bake-addon-<name> share: the set's images and
    their download steps."""
    planned = [i for i in plan.images if i.group == group]
    downloads = [
        _download(i, mirror, artifacts_s3, f"Download{_camel(i.name)}Image") for i in planned
    ]
    return {
        "images": staged_images(plan, group),
        "images_dir": IMAGES_DIR,
        "containerd_address": CONTAINERD_SOCKET,
        "import_script": IMPORT_SCRIPT,
        "downloads": downloads,
        "verify_downloads": bool(artifacts_s3 and downloads),
        "offline": bool(artifacts_s3),
    }


def _images(
    base: dict[str, Any], plan: DownloadPlan, mirror: str | None, artifacts_s3: str | None
) -> dict[str, Any]:
    """Context of bake-images: kubeadm's image set, the import script and its first-boot unit."""
    ctx = _image_set(plan, "kubeadm", mirror, artifacts_s3)
    return {
        **base,
        **ctx,
        # what `kubeadm config images list` must print (the add-ons' images are baked beside it)
        "kubeadm_refs": [_safe(i.ref or "") for i in plan.images if i.group == "kubeadm"],
        "import_script_text": render_text("components", "files/bake-images-import.sh.j2", ctx),
        "import_unit": render_text("components", "files/bake-images-import.service.j2",
                                   {**ctx, "import_script": IMPORT_SCRIPT}),
        "import_unit_path": "/etc/systemd/system/bake-images-import.service",
    }


def addon_component(addon: str) -> str:
    """The component that bakes ``addon``'s images: ``bake-addon-<addon>``."""
    return f"bake-addon-{_safe(addon)}"


def _addon(
    base: dict[str, Any], plan: DownloadPlan, addon: str, version: str, mirror: str | None,
    artifacts_s3: str | None,
) -> dict[str, Any]:
    """Context of ``bake-addon-<addon>`` (components/bake-addon.yaml.j2): one add-on's images,
    downloaded, checked, imported and pinned, and its upstream files (Calico's CRDs) downloaded
    and checked into ``ADDON_FILES_DIR/<addon>/``. One component per add-on keeps each under
    Image Builder's 16,000 characters however many add-ons an image bakes."""
    images = _image_set(plan, addon, mirror, artifacts_s3)
    files = [_download(f, mirror, artifacts_s3, f"Download{_camel(f.name)}File")
             for f in plan.addon_files if f.group == addon]
    downloads = [*files, *images["downloads"]]
    return {
        **base,
        **images,
        "downloads": downloads,
        "verify_downloads": bool(artifacts_s3 and downloads),
        "files": files,
        "files_dir": _safe(f"{ADDON_FILES_DIR}/{addon}"),
        "component_name": addon_component(addon),
        "addon": _safe(addon),
        "addon_version": _safe(version),
    }


def _agent(base: dict[str, Any], agent: AgentSource, info: OsInfo) -> dict[str, Any]:
    """Context of components/bake-node.yaml.j2 (download, verify, unpack, units); ``info``
    says where the agent's package goes and which OS packages bring its modules."""
    bundle = f"{AGENT_DOWNLOADS_DIR}/bake-node-{_safe(agent.version)}.tar.gz"
    return {
        **base,
        "downloads_dir": AGENT_DOWNLOADS_DIR,
        "agent_version": _safe(agent.version),
        "agent_source": _safe(agent.url),
        "agent_sha256": _safe(agent.sha256),
        "agent_s3": agent.url.startswith("s3://"),
        "agent_bundle": _safe(bundle),
        "python_site": _safe(info.python_site),
        "python_modules": [_safe(m) for m in info.python],
        "python_packages": [_safe(p) for p in info.python.values()],
    }


def _manifest(
    base: dict[str, Any], release: Release, plan: DownloadPlan, info: OsInfo,
    agent: AgentSource | None = None,
) -> dict[str, Any]:
    """The image manifest component's context.

    ``manifest_json`` is the whole manifest (schema ``bake.image-manifest/v1``) as
    ``json.dumps`` makes it, with what only the target knows left open: each artifact's
    ``files`` (``{path: SHA-256}``, hashed there), the ``version`` of OS packages (``null``:
    the installed version, read there with the OS's package manager), and each image's
    ``archive``, ``sha256`` and ``pinned``, read there from the list and sums its set's
    component wrote (``<images_dir>/<set>.images``, ``<set>.SHA256SUMS``), so the component
    stays under Image Builder's 16,000 characters however many add-ons are baked. The step
    fills those in with ``python3`` (present wherever cloud-init is) and writes the result.
    """
    artifacts, entries = [], []
    for a in release.artifacts:
        version_shell = None
        if a.source == "os-package":
            # the installed version, recorded on the target at build time
            version_shell = f'"$(pkg={_safe(a.package or a.name)}; {info.package_manager.version})"'
        artifacts.append({"files": list(artifact_files(a.name, a.version)),
                          "version_shell": version_shell})
        entries.append(
            {
                "name": _safe(a.name),
                "version": None if version_shell else _safe(a.version),
                "source": _safe(a.source),
                "url": _safe(a.url) if a.url else None,
                "sha256": _safe(a.sha256) if a.sha256 else None,
                "files": {},
            }
        )
    images = staged_images(plan)
    manifest: dict[str, Any] = {
        "schema": "bake.image-manifest/v1",
        "kubernetes_version": release.kubernetes_version,
        "minor": release.minor,
        "arch": release.arch,
        "os": release.os,
        "artifacts": entries,
        "images": [{"name": i["name"], "ref": i["ref"], "group": i["group"]} for i in images],
        "addons": {name: version for name, version in release.addons},
        "addon_files": [{"name": _safe(f.name), "group": _safe(f.group or ""),
                         "path": _safe(f.destination), "sha256": _safe(f.sha256),
                         "url": _safe(f.upstream or "")} for f in plan.addon_files],
    }
    if agent:  # the agent bundle baked by the bake-node component
        manifest["agent"] = {
            "name": AGENT_COMPONENT,
            "version": _safe(agent.version),
            "url": _safe(agent.url),
            "sha256": _safe(agent.sha256),
        }
    manifest["catalog_sources"] = list(release.catalog_sources)
    return {
        **base,
        "manifest_dir": MANIFEST_DIR,
        "manifest_path": f"{MANIFEST_DIR}/image-manifest.json",
        "artifacts": artifacts,
        "images": images,
        "image_sets": list(dict.fromkeys(i["group"] for i in images)),
        "images_dir": IMAGES_DIR,
        # pasted inside single quotes in shell: a quote is escaped JSON-style
        "manifest_json": json.dumps(manifest, separators=(",", ":")).replace("'", "\\u0027"),
    }
