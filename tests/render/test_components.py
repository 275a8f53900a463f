"""The component documents: real AWSTOE documents with verified downloads and clean shell.

The action table below encodes the AWSTOE reference ("Action modules supported by AWSTOE
component manager", docs.aws.amazon.com/imagebuilder/latest/userguide/toe-action-modules.html):
which inputs each action takes, which are required, and whether ``inputs`` is a list of
mappings (file actions, WebDownload) or one mapping (ExecuteBash). Step keys and the
``schemaVersion``/``phases`` layout follow "Use documents in AWSTOE"
(toe-use-documents.html).
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from bake.catalog import load_catalog, resolve
from bake.render import COMPONENTS, RenderOptions, render_image_documents

MIRROR = "http://127.0.0.1:8999"  # never contacted: rendering makes no requests

# action -> (inputs shape, required inputs, optional inputs)
AWSTOE_ACTIONS: dict[str, tuple[str, set[str], set[str]]] = {
    "ExecuteBash": ("mapping", {"commands"}, set()),
    "WebDownload": (
        "list",
        {"source", "destination"},
        {"expectedBucketOwner", "overwrite", "checksum", "algorithm", "ignoreCertificateErrors"},
    ),
    # S3Download: source and destination required; expectedBucketOwner and overwrite optional;
    # no checksum input (toe-action-modules.html, "S3Download").
    "S3Download": ("list", {"source", "destination"}, {"expectedBucketOwner", "overwrite"}),
    "CreateFile": (
        "list",
        {"path"},
        {"content", "encoding", "owner", "group", "permissions", "overwrite"},
    ),
    "CreateFolder": ("list", {"path"}, {"owner", "group", "permissions", "overwrite"}),
    "SetFilePermissions": ("list", {"path", "permissions"}, set()),
    "DeleteFile": ("list", {"path"}, set()),
    "MoveFile": ("list", {"source", "destination"}, {"overwrite"}),
}
STEP_KEYS = {"name", "action", "inputs", "onFailure", "timeoutSeconds", "maxAttempts", "if", "loop"}
PHASES = ("build", "validate", "test")
TOP_KEYS = {"name", "description", "schemaVersion", "phases", "parameters", "constants"}
SHA256 = re.compile(r"^[0-9a-f]{64}$")


def awstoe_errors(doc: dict) -> list[str]:
    """Every way ``doc`` departs from the AWSTOE document rules bake relies on."""
    errors = []
    if doc.get("schemaVersion") != 1.0:
        errors.append(f"schemaVersion is {doc.get('schemaVersion')!r}, want 1.0")
    if set(doc) - TOP_KEYS:
        errors.append(f"unknown top-level keys {sorted(set(doc) - TOP_KEYS)}")
    names = [p.get("name") for p in doc.get("phases", [])]
    if names != list(PHASES):
        errors.append(f"phases {names}, want {list(PHASES)}")
    for phase in doc.get("phases", []):
        seen = set()
        if not phase.get("steps"):
            errors.append(f"phase {phase.get('name')} has no steps")
        for step in phase.get("steps", []):
            where = f"{phase['name']}/{step.get('name')}"
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", str(step.get("name"))):
                errors.append(f"{where}: step name must be alphanumeric")
            if step.get("name") in seen:
                errors.append(f"{where}: duplicate step name")
            seen.add(step.get("name"))
            if set(step) - STEP_KEYS:
                errors.append(f"{where}: unknown step keys {sorted(set(step) - STEP_KEYS)}")
            action = step.get("action")
            if action not in AWSTOE_ACTIONS:
                errors.append(f"{where}: action {action!r} is not one bake may use")
                continue
            shape, required, optional = AWSTOE_ACTIONS[action]
            inputs = step.get("inputs")
            items = [inputs] if shape == "mapping" else inputs
            if (
                not isinstance(items, list)
                or not items
                or not all(isinstance(i, dict) for i in items)
            ):
                errors.append(f"{where}: {action} inputs must be a {shape}")
                continue
            for item in items:
                if required - set(item):
                    errors.append(f"{where}: {action} lacks {sorted(required - set(item))}")
                unknown = set(item) - required - optional
                if unknown:
                    errors.append(f"{where}: {action} unknown inputs {sorted(unknown)}")
            if action == "ExecuteBash" and not all(
                isinstance(c, str) for c in inputs.get("commands", [])
            ):
                errors.append(f"{where}: commands must be strings")
    return errors


def test_the_validator_catches_bad_documents():
    bad = {
        "schemaVersion": 1.0,
        "phases": [
            {
                "name": "build",
                "steps": [
                    {"name": "A", "action": "ExecutePowerShell", "inputs": {"commands": ["x"]}},
                    {"name": "B", "action": "WebDownload", "inputs": [{"source": "s"}]},
                    {
                        "name": "C",
                        "action": "CreateFile",
                        "inputs": [{"path": "/x", "mode": "0644"}],
                    },
                ],
            },
        ],
    }
    errors = "\n".join(awstoe_errors(bad))
    assert "ExecutePowerShell" in errors
    assert "lacks ['destination']" in errors
    assert "unknown inputs ['mode']" in errors
    assert "phases ['build']" in errors


def _releases(images_overlay, os_package_overlay):
    plain = load_catalog([images_overlay])
    os_pkg = load_catalog([images_overlay, os_package_overlay])
    return {
        "1.30.12-amd64": resolve(plain, "1.30.12", "amd64"),
        "1.30.12-arm64": resolve(plain, "1.30.12", "arm64"),
        "1.34-amd64": resolve(plain, "1.34", "amd64"),
        "1.34-arm64": resolve(plain, "1.34", "arm64"),
        "1.30.12-amd64-os-packages": resolve(os_pkg, "1.30.12", "amd64"),
        # the other OSes (issue 13): the same documents with their package managers' shell
        "1.30.12-amd64-ubuntu-22.04": resolve(plain, "1.30.12", "amd64", "ubuntu-22.04"),
        "1.30.12-arm64-ubuntu-24.04": resolve(plain, "1.30.12", "arm64", "ubuntu-24.04"),
        "1.30.12-amd64-al2023": resolve(plain, "1.30.12", "amd64", "al2023"),
        "1.30.12-arm64-al2023-os-packages": resolve(os_pkg, "1.30.12", "arm64", "al2023"),
    }


@pytest.fixture(scope="module")
def rendered(images_overlay, os_package_overlay):
    """Rendered documents for 1.30 and 1.34 on both arches, 1.30 with the OS's runtime
    packages, and 1.30 on Ubuntu 22.04/24.04 and AL2023."""
    return {
        key: render_image_documents(release, RenderOptions(mirror=MIRROR))
        for key, release in _releases(images_overlay, os_package_overlay).items()
    }


def _steps(doc, action=None):
    for phase in doc.data["phases"]:
        for step in phase["steps"]:
            if action is None or step["action"] == action:
                yield phase["name"], step


def test_components_are_valid_awstoe_documents_in_recipe_order(rendered):
    for key, docs in rendered.items():
        addons = [f"bake-addon-{a}" for a, _ in docs.release.addons]
        assert [c.name for c in docs.components] == [
            *COMPONENTS[:4], *addons, *COMPONENTS[4:]], key
        assert addons, "a default bake carries every add-on the catalog pins (--addons all)"
        for component in docs.components:
            assert component.path == f"components/{component.name}.yaml"
            assert component.data["name"] == component.name
            assert awstoe_errors(component.data) == [], (key, component.name)
            assert "{{" not in component.text, f"{component.name} must not use AWSTOE variables"


def test_every_download_is_pinned_to_the_catalog_sha256(rendered):
    for key, docs in rendered.items():
        release = docs.release
        # the mirror layout (README, "Air-gapped mirrors"): <mirror>/<upstream host>/<path>
        expected = {f"{MIRROR}/{a.url.split('://', 1)[1]}": a.sha256
                    for a in release.artifacts if a.sha256}
        expected.update({f"{MIRROR}/{i.archive_path}": i.archive_sha256 for i in release.images})
        # the add-ons' upstream files (Calico's CRDs), at their upstream path like the artifacts
        expected.update({f"{MIRROR}/{f.url.split('://', 1)[1]}": f.sha256
                         for f in release.addon_files})
        assert release.addon_files, "a default bake carries Calico's CRDs"
        seen = {}
        for component in docs.components:
            for _, step in _steps(component, "WebDownload"):
                for item in step["inputs"]:
                    assert item["algorithm"] == "SHA256"
                    assert SHA256.match(item["checksum"]), item
                    seen[item["source"]] = item["checksum"]
        assert seen == expected, key  # every artifact, image archive and add-on file


def test_os_package_runtime_installs_debian_packages(rendered):
    docs = rendered["1.30.12-amd64-os-packages"]
    runtime = docs.components[1]
    sources = [i["source"] for _, s in _steps(runtime, "WebDownload") for i in s["inputs"]]
    assert not any("containerd-" in s or "runc." in s for s in sources)
    assert "apt-get install -y --no-install-recommends containerd runc" in runtime.text
    manifest = next(c for c in docs.components if c.name == "bake-image-manifest").text
    assert "pkg=containerd; dpkg-query -W -f='${Version}' \"$pkg\"" in manifest
    assert "/lib/systemd/system/containerd.service" in runtime.text


@pytest.mark.parametrize(
    "key, version, sandbox",
    [
        ("1.30.12-amd64", 2, 'sandbox_image = "registry.k8s.io/pause:3.9"'),
        ("1.34-arm64", 3, 'sandbox = "registry.k8s.io/pause:3.10.1"'),
    ],
)
def test_containerd_config_matches_the_containerd_major(rendered, key, version, sandbox):
    import tomllib

    runtime = rendered[key].components[1]
    (config,) = [
        i
        for _, s in _steps(runtime, "CreateFile")
        for i in s["inputs"]
        if i["path"] == "/etc/containerd/config.toml"
    ]
    parsed = tomllib.loads(config["content"])
    assert parsed["version"] == version
    assert sandbox in config["content"]
    assert "SystemdCgroup = true" in config["content"]


def test_arm64_downloads_arm64_files(rendered):
    docs = rendered["1.30.12-arm64"]
    sources = [
        i["source"]
        for c in docs.components
        for _, s in _steps(c, "WebDownload")
        for i in s["inputs"]
    ]
    # every per-arch file is arm64's; an add-on's upstream file (Calico's CRDs, YAML) has no arch
    noarch = {f"{MIRROR}/{f.url.split('://', 1)[1]}" for f in docs.release.addon_files}
    assert noarch and noarch <= set(sources)
    assert all("arm64" in s for s in sources if s not in noarch)


def _bash_scripts(docs):
    for component in docs.components:
        for phase, step in _steps(component, "ExecuteBash"):
            yield f"{component.name}/{phase}/{step['name']}", "\n".join(step["inputs"]["commands"])
        for _, step in _steps(component, "CreateFile"):
            for item in step["inputs"]:
                if item.get("content", "").startswith("#!/bin/bash"):
                    yield f"{component.name}:{item['path']}", item["content"]


@pytest.mark.skipif(
    shutil.which("shellcheck") is None, reason="shellcheck not installed (Makefile DEB_PACKAGES)"
)
def test_every_bash_step_passes_shellcheck(rendered, tmp_path):
    failures = []
    for key in ("1.30.12-amd64", "1.34-arm64", "1.30.12-amd64-os-packages"):
        for where, script in _bash_scripts(rendered[key]):
            path = tmp_path / "step.sh"
            path.write_text("#!/bin/bash\n" + script if not script.startswith("#!") else script)
            result = subprocess.run(
                ["shellcheck", "-s", "bash", str(path)], capture_output=True, text=True
            )
            if result.returncode != 0:
                failures.append(f"{key} {where}:\n{result.stdout}")
    assert not failures, "\n".join(failures)


def _step(doc, phase: str, name: str) -> str:
    for p in doc.data["phases"]:
        if p["name"] == phase:
            for s in p["steps"]:
                if s["name"] == name:
                    return s["inputs"]["commands"][0]
    raise KeyError(name)


def _fake_kubeadm(tmp_path, lines: list[str]):
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    script = bindir / "kubeadm"
    body = "\n".join(f"echo '{line}'" for line in lines)
    script.write_text(f'#!/bin/sh\n[ "$1 $2 $3" = "config images list" ] || exit 3\n{body}\n')
    script.chmod(0o755)
    return bindir


@pytest.mark.parametrize(
    ("version", "kubeadm_says", "fails_with"),
    [
        ("1.31.0", None, None),  # the catalog's set is what kubeadm 1.31.0 pulls: passes
        (
            "1.31.0",
            {"coredns": "registry.k8s.io/coredns/coredns:v1.11.3"},
            "pulls registry.k8s.io/coredns/coredns:v1.11.3 but the catalog bakes "
            "registry.k8s.io/coredns/coredns:v1.11.1",
        ),
        (
            "1.36.0",
            {"etcd": "registry.k8s.io/etcd:3.6.9-0"},
            "pulls registry.k8s.io/etcd:3.6.9-0 but the catalog bakes registry.k8s.io/etcd:3.6.8-0",
        ),
    ],
    ids=["matches", "coredns-differs", "etcd-differs"],
)
def test_the_validate_phase_fails_when_kubeadm_pulls_another_image_set(
    tmp_path, version, kubeadm_says, fails_with
):
    """The build proves the catalog's image tags: the baked kubeadm's own `config images list`
    must equal the baked set, or the image would pull at boot (fails air-gapped)."""
    import yaml

    plain = resolve(load_catalog(), version, "amd64")
    overlay = tmp_path / "archives.yaml"  # every archive staged, as `bake ami` requires
    overlay.write_text(yaml.safe_dump({"schema": "bake.catalog/v1", "image_archives": {
        "amd64": {i.ref: "a" * 64 for i in plain.images}}}))
    release = resolve(load_catalog([overlay]), version, "amd64")
    # a real kubeadm lists its own set; the add-ons' images (flannel) are baked beside it
    images = {i.name: i.ref for i in release.images if i.group == "kubeadm"}
    assert {i.group for i in release.images} == {"kubeadm", *(a for a, _ in release.addons)}
    images.update(kubeadm_says or {})
    docs = render_image_documents(release, RenderOptions(mirror=MIRROR))
    doc = next(d for d in docs.components if d.name == "bake-images")
    script = _step(doc, "validate", "CheckKubeadmImageSet")
    # the baked set is what the build phase's import script imports: write it where the check
    # reads it (a chroot would see it at its install path)
    (write,) = [s for s in doc.data["phases"][0]["steps"] if s["name"] == "WriteImportScript"]
    installed = write["inputs"][0]["path"]
    import_script = tmp_path / "bake-images-import"
    import_script.write_text(write["inputs"][0]["content"])
    script = script.replace(installed, str(import_script))
    bindir = _fake_kubeadm(tmp_path, sorted(images.values(), reverse=True))
    run = subprocess.run(
        ["bash", "-e", "-c", script], capture_output=True, text=True,
        env={"PATH": f"{bindir}:/usr/bin:/bin"},
    )
    if fails_with is None:
        assert run.returncode == 0, run.stderr
    else:
        assert run.returncode != 0
        assert fails_with in run.stderr, run.stderr
        assert "--catalog FILE" in run.stderr


@pytest.mark.parametrize(
    ("version", "etcd", "coredns", "pause"),
    [
        ("1.30.4", "3.5.12-0", "v1.11.1", "3.9"),
        ("1.30.5", "3.5.15-0", "v1.11.3", "3.9"),
        ("1.31.0", "3.5.15-0", "v1.11.1", "3.10"),
        ("1.31.1", "3.5.15-0", "v1.11.3", "3.10"),
        ("1.32.0", "3.5.16-0", "v1.11.3", "3.10"),
        ("1.33.0", "3.5.21-0", "v1.12.0", "3.10"),
        ("1.33.6", "3.5.24-0", "v1.12.0", "3.10"),
        ("1.36.0", "3.6.8-0", "v1.13.1", "3.10.1"),
    ],
)
def test_image_tags_are_per_patch(version, etcd, coredns, pause):
    """kubeadm bumps etcd and CoreDNS within a minor (sources in tools/derive_catalog.py)."""
    release = resolve(load_catalog(), version, "amd64")
    assert release.image("etcd").tag == etcd
    assert release.image("coredns").tag == coredns
    assert release.image("pause").tag == pause
