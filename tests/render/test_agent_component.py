"""The node agent in the rendered documents (``RenderOptions.agent``) and its bundle.

With an agent the ``bake-node`` component is rendered right before ``bake-hygiene``, is a valid
AWSTOE document (the validator of test_components.py), fetches the bundle with a SHA-256-checked
``WebDownload`` (or ``S3Download`` + ``VerifyDownloads`` for ``s3://``), passes shellcheck, and
the image manifest lists the agent. The bundle (``bake.agent_bundle``) is built for real and
its install step is run on a scratch tree standing in for the image root.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile

import pytest
from tests.render.test_components import awstoe_errors
from tests.render.test_manifest_script import _reroot, _write_image_lists, _write_manifest_step

from bake.agent_bundle import build_agent_bundle, bundle_filename
from bake.catalog import load_catalog, resolve
from bake.render import (
    AGENT_COMPONENT,
    COMPONENTS,
    AgentSource,
    RenderOptions,
    component_names,
    render_image_documents,
)

MIRROR = "http://127.0.0.1:8999"  # never contacted: rendering makes no requests
AGENT = AgentSource(
    url="http://127.0.0.1:8998/bake-node-0.1.0.tar.gz", sha256="b" * 64, version="0.1.0"
)
AGENT_S3 = AgentSource(
    url="s3://bake-artifacts/k8s/bake-node/bake-node-0.1.0.tar.gz", sha256="c" * 64, version="0.1.0"
)


@pytest.fixture(scope="module")
def release(images_overlay):
    return resolve(load_catalog([images_overlay]), "1.30.12", "amd64")


def _agent_doc(docs):
    return next(c for c in docs.components if c.name == AGENT_COMPONENT)


def _steps(doc):
    return [s for phase in doc.data["phases"] for s in phase["steps"]]


def test_agent_component_comes_right_before_hygiene(release):
    docs = render_image_documents(release, RenderOptions(mirror=MIRROR, agent=AGENT))
    names = [c.name for c in docs.components]
    assert names == list(component_names(True, tuple(a for a, _ in release.addons)))
    assert names[-2:] == ["bake-node", "bake-hygiene"]
    assert [c["componentArn"] for c in docs.recipe.data["components"]][-2:] == [
        "${component:bake-node}",
        "${component:bake-hygiene}",
    ]
    for component in docs.components:
        assert awstoe_errors(component.data) == [], component.name


def test_without_agent_nothing_changes(release):
    plain = render_image_documents(release, RenderOptions(mirror=MIRROR))
    names = [c.name for c in plain.components]
    assert names == list(component_names(False, tuple(a for a, _ in release.addons)))
    assert [n for n in names if not n.startswith("bake-addon-")] == list(COMPONENTS)
    assert "agent" not in plain.components[names.index("bake-image-manifest")].text
    with_agent = render_image_documents(release, RenderOptions(mirror=MIRROR, agent=AGENT))
    assert with_agent.content_hash != plain.content_hash


def test_web_download_is_pinned_to_the_bundle_sha256(release):
    docs = render_image_documents(release, RenderOptions(mirror=MIRROR, agent=AGENT))
    downloads = [s for s in _steps(_agent_doc(docs)) if s["action"] == "WebDownload"]
    assert len(downloads) == 1
    (item,) = downloads[0]["inputs"]
    assert item["source"] == AGENT.url
    assert (item["checksum"], item["algorithm"]) == (AGENT.sha256, "SHA256")


def test_s3_bundle_is_verified_before_use(release):
    docs = render_image_documents(release, RenderOptions(mirror=MIRROR, agent=AGENT_S3))
    doc = _agent_doc(docs)
    assert awstoe_errors(doc.data) == []
    build = [s["name"] for s in doc.data["phases"][0]["steps"]]
    assert build.index("DownloadAgentBundle") < build.index("VerifyDownloads")
    assert build.index("VerifyDownloads") < build.index("InstallAgent")
    (s3,) = [s for s in _steps(doc) if s["action"] == "S3Download"]
    assert s3["inputs"][0]["source"] == AGENT_S3.url
    verify = next(s for s in _steps(doc) if s["name"] == "VerifyDownloads")
    assert AGENT_S3.sha256 in verify["inputs"]["commands"][0]


@pytest.mark.skipif(
    shutil.which("shellcheck") is None, reason="shellcheck not installed (Makefile DEB_PACKAGES)"
)
@pytest.mark.parametrize("agent", [AGENT, AGENT_S3], ids=["web", "s3"])
def test_agent_bash_steps_pass_shellcheck(release, agent, tmp_path):
    docs = render_image_documents(release, RenderOptions(mirror=MIRROR, agent=agent))
    failures = []
    for step in _steps(_agent_doc(docs)):
        if step["action"] != "ExecuteBash":
            continue
        path = tmp_path / f"{step['name']}.sh"
        path.write_text("#!/bin/bash\n" + "\n".join(step["inputs"]["commands"]) + "\n")
        result = subprocess.run(
            ["shellcheck", "-s", "bash", str(path)], capture_output=True, text=True
        )
        if result.returncode:
            failures.append(f"{step['name']}:\n{result.stdout}")
    assert not failures, "\n".join(failures)


def test_unsafe_agent_url_is_refused(release):
    from bake.errors import RenderError

    bad = AgentSource(url="http://x/$(reboot)", sha256="b" * 64, version="0.1.0")
    with pytest.raises(RenderError, match="unsafe value"):
        render_image_documents(release, RenderOptions(mirror=MIRROR, agent=bad))


def test_manifest_lists_the_agent(release, tmp_path):
    docs = render_image_documents(release, RenderOptions(mirror=MIRROR, agent=AGENT))
    root = tmp_path / "root"
    for path in [
        "/usr/bin/kubeadm",
        "/usr/bin/kubelet",
        "/usr/bin/kubectl",
        "/usr/bin/crictl",
        "/usr/bin/containerd",
        "/usr/bin/ctr",
        "/usr/bin/containerd-shim-runc-v2",
        "/usr/sbin/runc",
        "/opt/cni/bin/bridge",
        "/usr/bin/etcdctl",
        "/usr/bin/etcdutl",  # etcd >= 3.5 (the catalog's): the restore's offline tool
    ]:
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / path.lstrip("/")).write_text(f"stand-in {path}\n")
    (root / "etc/bake").mkdir(parents=True)
    _write_image_lists(docs, root)
    script = _reroot(_write_manifest_step(docs), root)
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((root / "etc/bake/image-manifest.json").read_text())
    assert manifest["agent"] == {
        "name": "bake-node",
        "version": AGENT.version,
        "url": AGENT.url,
        "sha256": AGENT.sha256,
    }
    assert manifest["catalog_sources"] == list(release.catalog_sources)


# ---------------------------------------------------------------- the bundle


def test_bundle_is_deterministic(tmp_path):
    first = build_agent_bundle(tmp_path / "a")
    second = build_agent_bundle(tmp_path / "b")
    assert first.filename == bundle_filename(first.version) == f"bake-node-{first.version}.tar.gz"
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.sha256 == second.sha256 == hashlib.sha256(first.path.read_bytes()).hexdigest()


def test_bundle_holds_the_agent_and_its_manifests(tmp_path):
    bundle = build_agent_bundle(tmp_path)
    with tarfile.open(bundle.path) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert "bake_node/main.py" in names
    assert "bake_node/schema/node-config.schema.json" in names
    assert "manifests/cni/flannel/kube-flannel.yaml.j2" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert {(m.uid, m.gid, m.mtime) for m in members} == {(0, 0, 0)}


@pytest.mark.parametrize("os_name", ["debian-12", "al2023"])
def test_install_step_unpacks_a_working_agent(release, tmp_path, os_name):
    """The InstallAgent step run for real on a scratch root, with the real bundle, for an OS
    whose python3 reads /usr/lib/python3/dist-packages and for AL2023's python3.9
    site-packages (the OS data file's python_site)."""
    if os.geteuid() != 0:
        pytest.skip("the install step chowns to root: run as root (CI does)")
    from dataclasses import replace

    from bake.oses import load_os

    python_site = load_os(os_name).python_site
    bundle = build_agent_bundle(tmp_path / "out")
    docs = render_image_documents(
        replace(release, os=os_name),
        RenderOptions(
            mirror=MIRROR,
            agent=AgentSource(url=f"http://127.0.0.1:8998/{bundle.filename}",
                              sha256=bundle.sha256, version=bundle.version),
        ),
    )
    step = next(s for s in _steps(_agent_doc(docs)) if s["name"] == "InstallAgent")
    root = tmp_path / "root"
    script = "\n".join(step["inputs"]["commands"])
    for prefix in ("/var/tmp/bake-node-downloads", python_site,
                   "/usr/share/bake-node", "/var/lib/bake-node", "/etc/bake"):
        script = script.replace(prefix, f"{root}{prefix}")
    downloads = root / "var/tmp/bake-node-downloads"
    downloads.mkdir(parents=True)
    shutil.copy(bundle.path, downloads / bundle.filename)
    site = root / python_site.lstrip("/")
    site.mkdir(parents=True)
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    (fakebin / "python3").symlink_to(sys.executable)  # has boto3, yaml and jinja2
    env = {**os.environ, "PATH": f"{fakebin}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert (site / "bake_node/main.py").is_file()
    assert sorted(p.name for p in (root / "usr/share/bake-node/manifests/cni").iterdir())
    probe = subprocess.run(
        [sys.executable, "-c",
         f"import sys; sys.path.insert(0, {str(site)!r}); import bake_node.main, bake_node.agent;"
         " print(bake_node.main.__file__)"],
        capture_output=True, text=True,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip().startswith(str(site))


def test_rotate_timer_keeps_join_validity_at_the_shortest_token_ttl(release):
    """The baked rotate timer's period (systemd OnUnitActiveSec + RandomizedDelaySec) is the
    one the agent's arithmetic assumes, and at the cluster file's shortest token TTL a token is
    replaced while it still has the validity a join asks for (so no joiner ever waits)."""
    import re

    import yaml

    from bake.cluster import init_text, parse_cluster
    from bake.errors import UsageError
    from bake_node.joinmaterial import JOIN_MIN_VALIDITY, ROTATE_PERIOD

    docs = render_image_documents(release, RenderOptions(mirror=MIRROR, agent=AGENT))
    (timer,) = [s["inputs"][0]["content"] for s in _steps(_agent_doc(docs))
                if s["name"] == "WriteRotateTimer"]
    units = {"s": 1, "min": 60}
    seconds = {k: int(n) * units[u] for k, n, u in
               re.findall(r"^(OnUnitActiveSec|RandomizedDelaySec)=(\d+)(s|min)$", timer, re.M)}
    assert seconds["OnUnitActiveSec"] + seconds["RandomizedDelaySec"] == ROTATE_PERIOD
    data = yaml.safe_load(init_text())
    shortest = parse_cluster({**data, "bootstrapToken": {"ttlMinutes": 15}})
    ttl = shortest.bootstrap_token_ttl_minutes * 60
    assert ttl / 2 + ROTATE_PERIOD + JOIN_MIN_VALIDITY <= ttl
    with pytest.raises(UsageError):
        parse_cluster({**data, "bootstrapToken": {"ttlMinutes": 14}})
