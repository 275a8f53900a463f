"""The testinfra suite that proves a baked bake node image (shipped in the wheel).

Run it through ``bake verify`` (or ``bake.verify.run_suite``), or directly::

    pytest test_image.py --hosts=/abs/rootfs --connection=chroot     # an image's root filesystem
    pytest test_image.py --hosts=ssh://admin@10.0.0.5                # a live node

It reads ``/etc/bake/image-manifest.json`` from the host at collection time and parametrizes
one check per manifest entry (ids like ``kubelet:/usr/bin/kubelet``), then checks what the
image layout contract promises: binaries present, executable, at the manifest's version and
SHA-256; containerd's config (``SystemdCgroup = true``, the manifest's pause image as sandbox
image); kubelet unit, kubeadm drop-in and containerd enabled; kernel modules and sysctls;
no swap in ``/etc/fstab``; the image set staged for first boot (archives with their SHA-256 and
``bake-images-import.service`` enabled) or, on a live node, present in containerd's ``k8s.io``
namespace and pinned (``io.cri-containerd.pinned=pinned``); the node agent when the manifest
lists it (``bake_node`` importable by the image's python3, ``bake-node --help``, its units
enabled, its CNI manifests present); and image hygiene (no SSH host
keys, empty machine-id, no cloud-init state, no package caches), the checks of
amazon-eks-ami's ``validate.sh`` ported to testinfra. What differs between OSes (the package
manager's queries and caches, where the agent's package lives) comes from the OS data file the
manifest's ``os`` names (``bake.oses``). Only commands a minimal root filesystem has are used
(sh, uname, cat, stat, sha256sum, cut, ls), so the chroot backend works anywhere.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib

import pytest

MANIFEST = "/etc/bake/image-manifest.json"
MANIFEST_SCHEMA = "bake.image-manifest/v1"
IMAGES_DIR = "/var/lib/bake/images"
WANTS = "/etc/systemd/system/multi-user.target.wants"
UNIT_DIRS = ("/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system")
CONTAINERD_SOCK = "/run/containerd/containerd.sock"
# kubernetes.io, "Container Runtimes": forward IPv4 and let iptables see bridged traffic
SYSCTLS = {
    "net.bridge.bridge-nf-call-iptables": "1",
    "net.bridge.bridge-nf-call-ip6tables": "1",
    "net.ipv4.ip_forward": "1",
}
MODULES = ("overlay", "br_netfilter")
_manifest_cache: dict[str, dict | None] = {}


# ---------------------------------------------------------------- collection: read the manifest


def _collection_host(config):
    """The first ``--hosts`` host, built like testinfra's plugin does (same backend options)."""
    import testinfra

    spec = (config.option.hosts or "local://").split(",")[0]
    kwargs = {k: getattr(config.option, k) for k in ("connection", "ssh_config",
                                                     "ssh_identity_file", "sudo", "sudo_user")
              if getattr(config.option, k, None)}
    return spec, testinfra.get_host(spec, **kwargs)


def _read_manifest(config) -> dict | None:
    spec, host = _collection_host(config)
    if spec not in _manifest_cache:
        try:
            f = host.file(MANIFEST)
            _manifest_cache[spec] = json.loads(f.content_string) if f.exists else None
        except Exception:  # noqa: BLE001 - reported by test_image_manifest with the reason
            _manifest_cache[spec] = None
    return _manifest_cache[spec]


def pytest_generate_tests(metafunc):
    """Parametrize the per-entry checks over the host's image manifest."""
    wanted = {"artifact_file", "artifact", "image"} & set(metafunc.fixturenames)
    if not wanted:
        return
    manifest = _read_manifest(metafunc.config) or {}
    artifacts = [a for a in manifest.get("artifacts", []) if isinstance(a, dict)]
    if "artifact_file" in wanted:
        rows = [(a.get("name"), path, sha) for a in artifacts
                for path, sha in sorted((a.get("files") or {}).items())]
        metafunc.parametrize("artifact_file", rows, ids=[f"{n}:{p}" for n, p, _ in rows])
    if "artifact" in wanted:
        metafunc.parametrize("artifact", artifacts, ids=[str(a.get("name")) for a in artifacts])
    if "image" in wanted:
        images = [i for i in manifest.get("images", []) if isinstance(i, dict)]
        metafunc.parametrize("image", images, ids=[str(i.get("ref")) for i in images])


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def manifest(host) -> dict:
    """The parsed image manifest of the host (fails the test if absent or invalid)."""
    f = host.file(MANIFEST)
    assert f.exists, f"{MANIFEST} is missing: not a bake image"
    try:
        return json.loads(f.content_string)
    except ValueError as exc:
        pytest.fail(f"{MANIFEST} is not valid JSON: {exc}")


@pytest.fixture(scope="module")
def os_info(manifest):
    """The image OS's data (``bake.oses.OsInfo`` of the manifest's ``os``): package manager,
    where the agent's package lives. The checks adapt to the OS from it, not by copy."""
    from bake.oses import load_os

    if not manifest.get("os"):
        pytest.fail(f"{MANIFEST} names no os")
    return load_os(str(manifest["os"]))


@pytest.fixture(scope="module")
def live(host) -> bool:
    """True on a booted node (systemd running, the sd_booted(3) test), False for an image."""
    return host.file("/run/systemd/system").is_directory


def _text(host, path: str) -> str:
    f = host.file(path)
    assert f.exists, f"{path} is missing"
    return f.content_string


def _unit_file(host, unit: str) -> str | None:
    for d in UNIT_DIRS:
        if host.file(f"{d}/{unit}").exists:
            return f"{d}/{unit}"
    return None


def _walk(value, key: str):
    """Every value stored under ``key`` anywhere in a parsed TOML document."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k == key:
                yield v
            yield from _walk(v, key)


def _containerd_config(host) -> dict:
    text = _text(host, "/etc/containerd/config.toml")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        pytest.fail(f"/etc/containerd/config.toml is not valid TOML: {exc}")


def _pause_ref(manifest: dict) -> str:
    for image in manifest.get("images", []):
        if image.get("name") == "pause":
            return image["ref"]
    pytest.fail(f"{MANIFEST} lists no pause image")


# ---------------------------------------------------------------- manifest and artifacts


def test_image_manifest(host, manifest):
    assert manifest.get("schema") == MANIFEST_SCHEMA, (
        f"{MANIFEST} schema is {manifest.get('schema')!r}, expected {MANIFEST_SCHEMA!r}")
    for key in ("kubernetes_version", "minor", "arch", "os", "artifacts", "images"):
        assert manifest.get(key), f"{MANIFEST} lacks {key!r}"
    names = {a.get("name") for a in manifest["artifacts"]}
    missing = {"kubeadm", "kubelet", "kubectl", "crictl", "containerd", "runc",
               "cni-plugins", "etcd"} - names
    assert not missing, f"{MANIFEST} lacks artifacts: {', '.join(sorted(missing))}"


def test_artifact_file_present(host, artifact_file):
    name, path, _ = artifact_file
    f = host.file(path)
    assert f.exists, f"{path} ({name}) is missing"
    assert f.is_file, f"{path} ({name}) is not a regular file"
    if "/bin/" in path or "/sbin/" in path or "/libexec/" in path:
        assert f.mode & 0o111, f"{path} ({name}) is not executable (mode {f.mode:o})"


def test_artifact_file_sha256(host, artifact_file):
    name, path, expected = artifact_file
    f = host.file(path)
    assert f.exists, f"{path} ({name}) is missing"
    actual = f.sha256sum
    assert actual == expected, (
        f"{path} ({name}) SHA-256 {actual} differs from the manifest's {expected}")


def _version_output(host, cmd: str) -> str:
    """What ``cmd`` printed: stdout, or stderr for tools that print their version there (CNI
    plugins). Not both: over ssh, stderr also carries ssh's own warnings."""
    out = host.run(cmd)
    return out.stdout.strip() or out.stderr.strip()


def test_artifact_version(host, artifact, os_info):
    """Each artifact answers its version query with the manifest's version."""
    name, version = artifact.get("name"), str(artifact.get("version"))
    if artifact.get("source") == "os-package":
        package = artifact.get("package") or name
        query = f"pkg={shlex.quote(package)}; {os_info.package_manager.version}"
        out = host.run(f"sh -c {shlex.quote(query)}")
        assert out.rc == 0, f"{name}: {os_info.name} package {package} is not installed"
        assert out.stdout.strip() == version, (
            f"{name}: installed package {package} is {out.stdout.strip()}, manifest says {version}")
        return
    if name == "kubeadm":
        got = _version_output(host, "/usr/bin/kubeadm version -o short")
        assert got == f"v{version}", (
            f"kubeadm version -o short printed {got!r}, expected v{version}")
    elif name == "kubelet":
        got = _version_output(host, "/usr/bin/kubelet --version")
        assert got == f"Kubernetes v{version}", f"kubelet --version printed {got!r}"
    elif name == "kubectl":
        out = host.run("/usr/bin/kubectl version --client -o json")
        try:
            got = json.loads(out.stdout)["clientVersion"]["gitVersion"]
        except (ValueError, KeyError, TypeError):
            pytest.fail(f"kubectl version --client -o json printed no clientVersion: "
                        f"{out.stdout[:80]!r}")
        assert got == f"v{version}", f"kubectl client is {got}, expected v{version}"
    elif name == "crictl":
        got = _version_output(host, "/usr/bin/crictl --version")
        assert f"v{version}" in got.split(), f"crictl --version printed {got!r}"
    elif name == "containerd":
        got = _version_output(host, "/usr/bin/containerd --version")
        assert f"v{version}" in got.split(), f"containerd --version printed {got!r}"
    elif name == "runc":
        got = _version_output(host, "/usr/sbin/runc --version")
        assert got.splitlines()[:1] == [f"runc version {version}"], (
            f"runc --version printed {got.splitlines()[:1]}")
    elif name == "cni-plugins":
        got = _version_output(host, "/opt/cni/bin/bridge")  # no CNI_COMMAND: prints its version
        assert f"v{version}" in got, f"/opt/cni/bin/bridge reported {got.splitlines()[:1]}"
    elif name == "etcd":
        got = _version_output(host, "/usr/bin/etcdctl version")
        assert got.splitlines()[:1] == [f"etcdctl version: {version}"], (
            f"etcdctl version printed {got.splitlines()[:1]}")
        if tuple(int(p) for p in version.split(".")[:2]) >= (3, 5):  # etcdutl: etcd >= 3.5
            got = _version_output(host, "/usr/bin/etcdutl version")
            assert got.splitlines()[:1] == [f"etcdutl version: {version}"], (
                f"etcdutl version printed {got.splitlines()[:1]}")
    elif name == "ecr-credential-provider":
        # it speaks only the kubelet's exec plugin protocol (a CredentialProviderRequest on
        # stdin) and has no version query: present, executable and at the manifest's SHA-256
        # (test_artifact_file_*) is what can be checked without a kubelet
        path = "/usr/libexec/kubernetes/image-credential-provider/ecr-credential-provider"
        assert host.file(path).mode & 0o111, f"{path} is not executable"
    else:
        pytest.skip(f"no version query known for {name}")


# ---------------------------------------------------------------- container runtime


def test_containerd_systemd_cgroup(host):
    values = list(_walk(_containerd_config(host), "SystemdCgroup"))
    assert values and all(v is True for v in values), (
        "/etc/containerd/config.toml does not set SystemdCgroup = true")


def test_containerd_sandbox_image(host, manifest):
    cfg = _containerd_config(host)
    pause = _pause_ref(manifest)
    # config version 2 (containerd 1.x): sandbox_image; version 3 (2.x): pinned_images.sandbox
    found = [*_walk(cfg, "sandbox_image"), *_walk(cfg, "sandbox")]
    assert pause in found, (
        f"/etc/containerd/config.toml sandbox image is {found or 'unset'}, expected {pause}")


def test_containerd_reads_registry_mirrors(host):
    """bake-node writes registry mirrors as /etc/containerd/certs.d/<registry>/hosts.toml; the
    CRI plugin reads them only with config_path set there (containerd docs/hosts.md)."""
    paths = list(_walk(_containerd_config(host), "config_path"))
    assert paths == ["/etc/containerd/certs.d"], (
        f"/etc/containerd/config.toml registry config_path is {paths or 'unset'}, expected "
        "/etc/containerd/certs.d")


def test_crictl_config(host):
    text = _text(host, "/etc/crictl.yaml")
    assert re.search(r"^runtime-endpoint:\s*unix:///run/containerd/containerd\.sock\s*$", text,
                     re.M), "/etc/crictl.yaml does not point at unix:///run/containerd/containerd.sock"


# ---------------------------------------------------------------- systemd units


@pytest.mark.parametrize("unit", ["kubelet.service", "containerd.service"])
def test_unit_enabled(host, unit):
    assert _unit_file(host, unit), f"{unit} unit file is missing from {', '.join(UNIT_DIRS)}"
    link = host.file(f"{WANTS}/{unit}")
    assert link.is_symlink, f"{unit} is not enabled (no symlink {WANTS}/{unit})"


def test_kubelet_kubeadm_dropin(host):
    paths = [f"{d}/kubelet.service.d/10-kubeadm.conf" for d in UNIT_DIRS]
    found = [p for p in paths if host.file(p).exists]
    assert found, "kubelet's kubeadm drop-in 10-kubeadm.conf is missing"
    assert "ExecStart=" in _text(host, found[0]), f"{found[0]} sets no ExecStart"


# ---------------------------------------------------------------- kernel and swap


def test_kernel_modules(host):
    lines = {ln.strip() for ln in _text(host, "/etc/modules-load.d/k8s.conf").splitlines()}
    missing = [m for m in MODULES if m not in lines]
    assert not missing, f"/etc/modules-load.d/k8s.conf does not load {', '.join(missing)}"


def test_sysctls(host):
    values = {}
    for line in _text(host, "/etc/sysctl.d/99-kubernetes.conf").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";")) and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    wrong = [f"{k} = {values.get(k, 'unset')}" for k, v in SYSCTLS.items() if values.get(k) != v]
    assert not wrong, f"/etc/sysctl.d/99-kubernetes.conf: {', '.join(wrong)} (want 1)"


def test_swap_off_in_fstab(host):
    f = host.file("/etc/fstab")
    if not f.exists:
        return
    swaps = [ln.strip() for ln in f.content_string.splitlines()
             if ln.strip() and not ln.lstrip().startswith("#")
             and len(ln.split()) >= 3 and ln.split()[2] == "swap"]
    assert not swaps, f"/etc/fstab has an active swap line: {swaps[0]}"


# ---------------------------------------------------------------- container images


def test_image_staged_or_pinned(host, live, image):
    ref = image.get("ref")
    assert image.get("pinned") is True, f"{MANIFEST} does not mark {ref} as pinned"
    if live and host.file(CONTAINERD_SOCK).is_socket:
        out = host.run("ctr -n k8s.io images ls")
        assert out.rc == 0, f"ctr -n k8s.io images ls failed: {out.stderr.strip()[:120]}"
        rows = [ln for ln in out.stdout.splitlines() if ln.split()[:1] == [ref]]
        assert rows, f"{ref} is not in containerd's k8s.io namespace"
        assert "io.cri-containerd.pinned=pinned" in rows[0], f"{ref} is not pinned"
        return
    archive = image.get("archive") or ""
    assert archive.startswith(IMAGES_DIR + "/"), (
        f"{ref}: archive {archive!r} not under {IMAGES_DIR}")
    f = host.file(archive)
    assert f.exists, f"{ref}: archive {archive} is missing"
    assert f.sha256sum == image.get("sha256"), (
        f"{ref}: archive {archive} SHA-256 differs from the manifest's {image.get('sha256')}")
    # the first-boot import reads its set's list (kubeadm's, or the add-on's component's)
    listing = host.file(f"{IMAGES_DIR}/{image.get('group') or 'kubeadm'}.images")
    assert listing.exists, f"{ref}: {listing.path} is missing"
    assert f"{archive} {ref}" in listing.content_string.splitlines(), (
        f"{ref}: not in {listing.path}, so bake-images-import would not import it")


def test_images_import_enabled(host, live):
    if live and host.file(CONTAINERD_SOCK).is_socket:
        pytest.skip("live node: images are checked in containerd itself")
    unit = "bake-images-import.service"
    assert _unit_file(host, unit), f"{unit} unit file is missing"
    assert host.file(f"{WANTS}/{unit}").is_symlink, f"{unit} is not enabled ({WANTS}/{unit})"


# ---------------------------------------------------------------- the node agent (bake-node)
# The manifest lists the agent ("agent": {"name", "version", "url", "sha256"}, written by
# bake.render) when the bake-node component baked it in; then the agent must work. Without
# that entry the image must not carry a stray agent either (manifest and image agree), and the
# other checks have nothing to look at, so they pass without skipping.

AGENT_COMMAND = "/usr/sbin/bake-node"
AGENT_MANIFESTS = "/usr/share/bake-node/manifests"
TIMERS_WANTS = "/etc/systemd/system/timers.target.wants"


@pytest.fixture
def agent(manifest) -> dict | None:
    """The manifest's agent entry, or ``None`` for an image baked without the agent."""
    entry = manifest.get("agent")
    return entry if isinstance(entry, dict) else None


def _agent_site(os_info) -> str:
    """Where the image's OS keeps the agent's package (``python_site`` of its data file)."""
    return f"{os_info.python_site}/bake_node"


def test_agent_manifest_entry(host, agent, os_info):
    if agent is None:
        stray = [p for p in (AGENT_COMMAND, _agent_site(os_info)) if host.file(p).exists]
        assert not stray, f"{stray[0]} is in the image but {MANIFEST} lists no agent"
        return
    assert agent.get("name") == "bake-node", f"{MANIFEST} agent entry is {agent!r}"
    assert agent.get("version"), f"{MANIFEST} agent entry has no version"
    assert re.fullmatch(r"[0-9a-f]{64}", str(agent.get("sha256"))), (
        f"{MANIFEST} agent entry has no SHA-256 of its bundle")


def test_agent_importable(host, agent, os_info):
    if agent is None:
        return
    site = _agent_site(os_info)
    # -B: do not write __pycache__ into the image under test
    out = host.run(
        "python3 -B -c 'import bake_node.main, bake_node.agent; print(bake_node.__file__)'")
    assert out.rc == 0, (
        f"bake_node does not import with the image's python3: {out.stderr.strip()[-200:]}")
    assert out.stdout.strip() == f"{site}/__init__.py", (
        f"bake_node imported from {out.stdout.strip()}, expected {site}")


def test_agent_command(host, agent):
    if agent is None:
        return
    f = host.file(AGENT_COMMAND)
    assert f.exists, f"{AGENT_COMMAND} is missing"
    assert f.mode & 0o111, f"{AGENT_COMMAND} is not executable"
    out = host.run(f"python3 -B {AGENT_COMMAND} --help")
    assert out.rc == 0, f"bake-node --help failed: {out.stderr.strip()[-200:]}"


@pytest.mark.parametrize("unit,wants", [("bake-node.service", WANTS),
                                        ("bake-node-rotate.timer", TIMERS_WANTS),
                                        ("bake-node-snapshot.timer", TIMERS_WANTS),
                                        ("bake-node-certs.timer", TIMERS_WANTS)])
def test_agent_unit_enabled(host, agent, unit, wants):
    if agent is None:
        assert not host.file(f"{wants}/{unit}").exists, (
            f"{unit} is enabled but {MANIFEST} lists no agent")
        return
    assert _unit_file(host, unit), f"{unit} unit file is missing"
    assert host.file(f"{wants}/{unit}").is_symlink, f"{unit} is not enabled ({wants}/{unit})"


def test_agent_manifests_present(host, agent):
    if agent is None:
        return
    cni = f"{AGENT_MANIFESTS}/cni"
    assert host.file(cni).is_directory, f"{cni} is missing: the agent has no CNI manifests"
    found = [f"{cni}/{d}/{n}" for d in _listdir(host, cni) for n in _listdir(host, f"{cni}/{d}")
             if n.endswith((".yaml", ".yaml.j2"))]
    assert found, f"no CNI manifest (*.yaml, or a *.yaml.j2 template) under {cni}"


def test_every_baked_addon_has_its_manifests(host, agent, manifest):
    """Each add-on the manifest lists as baked (``addons``) can be applied: the agent carries
    its templates (``manifests/cni/<name>/`` for a CNI, ``manifests/addons/<name>/``)."""
    if agent is None:
        return
    for name in sorted(manifest.get("addons") or {}):
        folders = [f"{AGENT_MANIFESTS}/{kind}/{name}" for kind in ("cni", "addons")]
        found = [f"{d}/{n}" for d in folders if host.file(d).is_directory
                 for n in _listdir(host, d) if n.endswith((".yaml", ".yaml.j2"))]
        assert found, (f"{MANIFEST} lists add-on {name} as baked, but the agent has no "
                       f"manifests for it in {' or '.join(folders)}")


def test_addon_files_match_the_manifest(host, manifest):
    """Each upstream file a baked add-on applies first (``addon_files``: Calico's CRDs) is on
    the image with the SHA-256 the manifest records, which is the catalog's."""
    for entry in manifest.get("addon_files") or []:
        path = entry.get("path", "")
        f = host.file(path)
        assert f.exists and f.is_file, (
            f"{path} ({entry.get('group')} {entry.get('name')}) is missing")
        assert f.sha256sum == entry.get("sha256"), (
            f"{path} ({entry.get('group')} {entry.get('name')}) SHA-256 {f.sha256sum} differs "
            f"from the manifest's {entry.get('sha256')}")


# ---------------------------------------------------------------- hygiene (images only)


@pytest.fixture
def image_only(live):
    if live:
        pytest.skip("live node: hygiene applies to the image, not to a booted node")


def _listdir(host, path: str) -> list[str]:
    f = host.file(path)
    return f.listdir() if f.is_directory else []


def test_no_ssh_host_keys(host, image_only):
    keys = [n for n in _listdir(host, "/etc/ssh") if n.startswith("ssh_host_")]
    assert not keys, f"SSH host keys baked into the image: /etc/ssh/{keys[0]}"


def test_machine_id_empty(host, image_only):
    f = host.file("/etc/machine-id")
    assert f.exists, "/etc/machine-id is missing (systemd wants it present and empty)"
    assert f.size == 0, "/etc/machine-id is not empty: every node would share one machine ID"


def test_no_cloud_init_state(host, image_only):
    assert not host.file("/var/lib/cloud/instance").exists, "/var/lib/cloud/instance exists"
    left = _listdir(host, "/var/lib/cloud/instances")
    assert not left, f"cloud-init instance state left: /var/lib/cloud/instances/{left[0]}"


def test_no_package_caches(host, image_only, os_info):
    """Nothing under the package manager's caches (its data in package-managers.yaml), lock
    files and apt's ``partial/`` aside."""
    pm = os_info.package_manager
    for pattern in (*pm.caches, pm.package_files):
        out = host.run(f"sh -c 'for f in {pattern}; do [ -e \"$f\" ] && echo \"$f\"; done; true'")
        left = [f for f in out.stdout.split() if f.rsplit("/", 1)[-1] not in ("partial", "lock")]
        assert not left, f"{pm.name} cache not cleaned: {left[0]}"
