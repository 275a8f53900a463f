"""Builds without internet: with ``RenderOptions.artifacts_s3`` every download is an AWSTOE
``S3Download`` from where ``bake stage`` put the file, checked against the catalog's SHA-256 by
the very next step, before anything uses it.

The validator is the AWSTOE table of ``test_components`` (S3Download inputs from the AWSTOE
"Action modules" reference); the SHA-256 check steps are run for real with bash against a good
and a tampered file; shellcheck reads every generated step.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess

import pytest
from test_components import _bash_scripts, _steps, awstoe_errors

from bake.catalog import load_catalog, resolve
from bake.errors import UsageError
from bake.render import DOWNLOADS_DIR, RenderOptions, render_image_documents

BUCKET = "s3://bake-artifacts/offline"


def _staged(upstream_url: str) -> str:
    """Where `bake stage` puts a release file: <bucket/prefix>/<upstream host>/<path>."""
    return f"{BUCKET}/{upstream_url.split('://', 1)[1]}"
MIRROR = "http://127.0.0.1:8999"  # never contacted: rendering makes no requests


@pytest.fixture(scope="module")
def releases(images_overlay):
    catalog = load_catalog([images_overlay])
    return {
        "1.30.12-amd64": resolve(catalog, "1.30.12", "amd64"),
        "1.34-arm64": resolve(catalog, "1.34", "arm64"),
    }


@pytest.fixture(scope="module")
def offline(releases):
    """Documents rendered with ``--artifacts s3://bake-artifacts/offline`` (trailing slash too)."""
    return {
        key: render_image_documents(release, RenderOptions(artifacts_s3=BUCKET + "/"))
        for key, release in releases.items()
    }


def _fetches(docs):
    """``[(component, step index, step)]`` of every download step, in document order."""
    out = []
    for component in docs.components:
        for phase in component.data["phases"]:
            for index, step in enumerate(phase["steps"]):
                if step["action"] in {"S3Download", "WebDownload"}:
                    out.append((component, phase["steps"], index, step))
    return out


def test_components_stay_valid_awstoe_documents(offline):
    for key, docs in offline.items():
        for component in docs.components:
            assert awstoe_errors(component.data) == [], (key, component.name)


def test_every_binary_and_image_archive_comes_from_the_staged_s3_objects(offline):
    """Every release file, image archive and add-on file: from S3, checked right after."""
    for key, docs in offline.items():
        release = docs.release
        want = {
            _staged(a.url): a.sha256 for a in release.artifacts if a.source == "release"
        }
        want.update({f"{BUCKET}/{i.archive_path}": i.archive_sha256 for i in release.images})
        want.update({_staged(f.url): f.sha256 for f in release.addon_files})  # Calico's CRDs
        got = {}
        for component in docs.components:
            for phase in component.data["phases"]:
                steps = phase["steps"]
                fetches = [i for i, s in enumerate(steps) if s["action"] == "S3Download"]
                if not fetches:
                    continue
                # the downloads come together, and the step right after them checks every file
                assert fetches == list(range(fetches[0], fetches[-1] + 1)), component.name
                check = steps[fetches[-1] + 1]
                assert (check["name"], check["action"]) == ("VerifyDownloads", "ExecuteBash")
                script = "\n".join(check["inputs"]["commands"])
                for index in fetches:
                    (item,) = steps[index]["inputs"]
                    assert set(item) == {"source", "destination", "overwrite"}
                    source, destination = item["source"], item["destination"]
                    # the check names the staged object: $staged/<path>, staged written once
                    assert f"\nstaged={BUCKET}\n" in script
                    path = source.removeprefix(f"{BUCKET}/")
                    assert f"{want[source]} {destination} {path}\n" in script
                    got[source] = want[source]
        assert got == want, key  # every artifact and image archive, nothing else
        assert not [s for c in docs.components for _, s in _steps(c, "WebDownload")], key


def test_components_fit_image_builder_with_a_long_prefix(releases):
    """CreateComponent ``data`` holds at most 16,000 characters (Image Builder API reference)."""
    prefix = "s3://" + "b" * 63 + "/" + "/".join(["artifact-staging-area"] * 4)
    for key, release in releases.items():
        docs = render_image_documents(release, RenderOptions(artifacts_s3=prefix))
        sizes = {c.name: len(c.text) for c in docs.components}
        assert max(sizes.values()) <= 16000, (key, sizes)


def test_downloads_land_in_folders_created_before(offline):
    """S3Download needs the destination folder to exist (AWSTOE reference)."""
    for docs in offline.values():
        for component, steps, index, step in _fetches(docs):
            folder = step["inputs"][0]["destination"].rsplit("/", 1)[0]
            created = [
                i["path"]
                for s in steps[:index]
                if s["action"] == "CreateFolder"
                for i in s["inputs"]
            ]
            assert folder in created, (component.name, step["name"])


def _check_script(docs, step_name, component=None):
    for doc in docs.components:
        if component and doc.name != component:
            continue
        for _, step in _steps(doc, "ExecuteBash"):
            if step["name"] == step_name:
                return "\n".join(step["inputs"]["commands"])
    raise AssertionError(f"no step {step_name}")


def test_the_sha256_check_passes_pinned_files_and_fails_a_tampered_one(tmp_path):
    """Runs the rendered check step with bash against stand-in files (no real binaries here):
    the catalog entries of kubeadm, kubelet and kubectl are pointed at the stand-ins' SHA-256."""
    import dataclasses

    names = ("kubeadm", "kubelet", "kubectl", "etcd")
    contents = {n: f"stand-in {n}\n".encode() for n in names}
    release = resolve(load_catalog(), "1.30.12", "amd64")
    artifacts = tuple(
        dataclasses.replace(a, sha256=hashlib.sha256(contents[a.name]).hexdigest())
        if a.name in contents
        else a
        for a in release.artifacts
    )
    release = dataclasses.replace(release, artifacts=artifacts)
    docs = render_image_documents(release, RenderOptions(artifacts_s3=BUCKET))
    script = _check_script(docs, "VerifyDownloads", component="bake-kubernetes")
    script = script.replace(DOWNLOADS_DIR, str(tmp_path))

    files = {a.name: a.filename for a in release.artifacts if a.name in contents}
    for name, content in contents.items():
        (tmp_path / files[name]).write_bytes(content)
    ok = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert all((tmp_path / files[name]).exists() for name in contents)

    (tmp_path / "kubelet").write_bytes(b"tampered\n")
    bad = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert bad.returncode == 1
    assert not (tmp_path / "kubelet").exists()  # the bad file is not left for a later step
    assert (tmp_path / "kubeadm").exists()
    kubelet = release.artifact("kubelet")
    assert bad.stderr.strip().splitlines()[-1] == (
        f"SHA-256 mismatch with the catalog for {_staged(kubelet.url)}: stage the "
        "files again with bake stage"
    )


def test_without_artifacts_s3_nothing_changes(releases):
    """The WebDownload path is the default and untouched (the golden files pin its bytes)."""
    release = releases["1.30.12-amd64"]
    default = render_image_documents(release, RenderOptions(mirror=MIRROR))
    explicit = render_image_documents(release, RenderOptions(mirror=MIRROR, artifacts_s3=None))
    assert [d.text for d in default.documents] == [d.text for d in explicit.documents]
    assert all("S3Download" not in c.text for c in default.components)
    offline = render_image_documents(release, RenderOptions(artifacts_s3=BUCKET))
    # only the fetches differ: the recipe and the build instances are the same
    assert offline.recipe.text == default.recipe.text
    assert offline.infrastructure.text == default.infrastructure.text
    assert offline.content_hash != default.content_hash


def test_an_os_package_runtime_cannot_build_without_internet(images_overlay, os_package_overlay):
    release = resolve(load_catalog([images_overlay, os_package_overlay]), "1.30.12", "amd64")
    with pytest.raises(UsageError) as info:
        render_image_documents(release, RenderOptions(artifacts_s3=BUCKET))
    message = info.value.format_message()
    assert message == (
        f"--artifacts {BUCKET}: containerd, runc for Kubernetes 1.30.12 come from Debian "
        "packages (apt-get), which a build without internet cannot install; use the release "
        "files (source: release in a catalog overlay) or drop --artifacts"
    )


@pytest.mark.parametrize(
    "uri", ["https://bucket/prefix", "s3://Bad_Bucket/x", "s3://b", "s3://bucket/a b", "bucket"]
)
def test_a_malformed_artifacts_uri_is_one_line(releases, uri):
    with pytest.raises(UsageError, match="must look like s3://bucket/prefix"):
        render_image_documents(releases["1.30.12-amd64"], RenderOptions(artifacts_s3=uri))


@pytest.mark.skipif(
    shutil.which("shellcheck") is None, reason="shellcheck not installed (Makefile DEB_PACKAGES)"
)
def test_every_generated_step_passes_shellcheck(offline, tmp_path):
    failures = []
    for key, docs in offline.items():
        for where, script in _bash_scripts(docs):
            path = tmp_path / "step.sh"
            path.write_text("#!/bin/bash\n" + script if not script.startswith("#!") else script)
            result = subprocess.run(
                ["shellcheck", "-s", "bash", str(path)], capture_output=True, text=True
            )
            if result.returncode != 0:
                failures.append(f"{key} {where}:\n{result.stdout}")
    assert not failures, "\n".join(failures)


def _stand_ins(tmp_path, installed: set[str], present: set[str] = frozenset()) -> dict[str, str]:
    """The parent image, as stand-ins: the commands and Python modules in ``present`` exist;
    dpkg-query answers "installed" for the packages in ``installed`` only; dpkg-deb reads a
    .deb's package from its pool name; dpkg records its arguments; apt-get records that it was
    called (it must never be, without internet)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    names = " ".join(sorted(installed)) or "none"
    modules = " ".join(sorted(present)) or "none"
    stand_ins = {
        "dpkg-query": f'for a; do last="$a"; done; for p in {names}; do [ "$p" = "$last" ] '
                      '&& echo "install ok installed" && exit 0; done; exit 1',
        "dpkg-deb": 'basename "$2" | cut -d_ -f1',
        "dpkg": f'echo "$@" >> {tmp_path}/dpkg.calls',
        "apt-get": f"touch {tmp_path}/apt-get.called; exit 100",
        # python3 -c 'import <module>'
        "python3": f'm="${{2#import }}"; for p in {modules}; do [ "$p" = "$m" ] && exit 0; done; '
                   "exit 1",
    }
    for tool in present & {"iptables", "conntrack"}:
        stand_ins[tool] = "exit 0"
    for tool, body in stand_ins.items():
        (bin_dir / tool).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / tool).chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin"}


def test_missing_network_tools_fail_with_one_clear_line(offline, tmp_path):
    """A parent image without iptables/conntrack nor the agent's Python modules, and no staged
    packages: a build without internet never runs apt-get (issue 12.11); it names the packages
    missing (image-recipes/os/debian-12.yaml) and how to stage them."""
    script = _check_script(offline["1.30.12-amd64"], "EnsureOsPackages")
    env = _stand_ins(tmp_path, installed=set())
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "the parent image lacks iptables conntrack python3-boto3 python3-yaml python3-jinja2 and "
        "no OS packages were staged for this build "
        "without internet: run bake stage --os-packages and pass its overlay with --catalog, or "
        "use a parent image that has them"
    )
    assert not (tmp_path / "apt-get.called").exists()


def test_staged_os_packages_are_downloaded_checked_and_installed_without_apt(
    tmp_path, images_overlay
):
    """With `bake stage --os-packages`'s overlay, the offline bake-os-prep fetches each .deb
    with S3Download, checks its SHA-256 against the catalog, and installs (dpkg -i) only the
    packages the parent image lacks: no apt-get, no index, no network."""
    import yaml

    debs = {
        "iptables_1.8.9-2_amd64.deb": "1" * 64,
        "conntrack_1.4.7-1+b2_amd64.deb": "2" * 64,
        "libc6_2.36-9+deb12u14_amd64.deb": "3" * 64,
    }
    overlay = tmp_path / "os-packages.yaml"
    overlay.write_text(yaml.safe_dump(
        {"schema": "bake.catalog/v1", "os_packages": {"debian-12": {"amd64": debs}}}
    ))
    release = resolve(load_catalog([images_overlay, overlay]), "1.30.12", "amd64")
    docs = render_image_documents(release, RenderOptions(artifacts_s3=BUCKET))
    (prep,) = [d for d in docs.components if d.name == "bake-os-prep"]
    assert "apt-get" not in prep.text.replace("never apt-get", "")
    steps = prep.data["phases"][0]["steps"]
    sources = {s["inputs"][0]["source"] for s in steps if s["action"] == "S3Download"}
    assert sources == {f"{BUCKET}/os-packages/debian-12/amd64/{name}" for name in debs}
    verify = _check_script(docs, "VerifyDownloads", component="bake-os-prep")
    for name, sha in debs.items():
        assert f"{sha} /var/tmp/bake-os-packages/{name}" in verify
    # the install step, run against stand-ins: libc6 is there already, the rest is installed
    script = _check_script(docs, "EnsureOsPackages", component="bake-os-prep")
    staged = tmp_path / "staged"
    staged.mkdir()
    for name in debs:
        (staged / name).write_bytes(b"deb")
    script = script.replace("/var/tmp/bake-os-packages", str(staged))
    env = _stand_ins(tmp_path, installed={"libc6"}, present={"boto3", "yaml", "jinja2"})
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    (call,) = (tmp_path / "dpkg.calls").read_text().splitlines()
    assert call.split() == ["-i", str(staged / "conntrack_1.4.7-1+b2_amd64.deb"),
                            str(staged / "iptables_1.8.9-2_amd64.deb")]
    assert not (tmp_path / "apt-get.called").exists()
    assert not staged.exists()  # removed after installing


def test_render_ami_with_artifacts_writes_the_offline_documents(
    run_bake, tmp_path, images_overlay, os_package_overlay
):
    out = tmp_path / "out"
    result = run_bake(
        "render", "ami", "--k8s", "1.30.12", "--catalog", str(images_overlay),
        "--artifacts", BUCKET, "-o", str(out),
    )
    assert result.exit_code == 0, result.stderr
    release = resolve(load_catalog([images_overlay]), "1.30.12", "amd64")
    from bake.ami import agent_source_s3

    want = render_image_documents(  # bake ami --artifacts bakes the node agent in as well
        release, RenderOptions(artifacts_s3=BUCKET, agent=agent_source_s3(BUCKET))
    )
    for doc in want.documents:  # byte for byte what `bake ami --artifacts` uploads
        assert (out / doc.path).read_text() == doc.text

    refused = run_bake(
        "render", "ami", "--k8s", "1.30.12", "--catalog", str(os_package_overlay),
        "--artifacts", BUCKET, "-o", str(tmp_path / "no"),
    )
    assert refused.exit_code == 2
    assert refused.stderr.startswith(f"bake: error: --artifacts {BUCKET}: containerd, runc")
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "no").exists()


def test_render_ami_with_artifacts_is_what_bake_ami_builds(run_bake, tmp_path):
    """`bake render ami --artifacts` writes exactly the documents `bake ami --artifacts` hands to
    Image Builder, the node agent's component included."""
    from bake.ami import AmiOptions, agent_source_s3, render_for

    result = run_bake(
        "render", "ami", "--k8s", "1.30.12", "--artifacts", BUCKET, "-o", str(tmp_path)
    )
    assert result.exit_code == 0, result.stderr
    agent = agent_source_s3(BUCKET)
    assert f"bake-node fetches the node agent from {agent.url}" in result.stderr
    options = AmiOptions(k8s="1.30.12", artifacts_s3=BUCKET)
    docs = render_for(resolve(load_catalog(), "1.30.12", "amd64"), options, agent)
    assert "components/bake-node.yaml" in docs.files()
    written = {
        str(p.relative_to(tmp_path)): p.read_text() for p in tmp_path.rglob("*") if p.is_file()
    }
    assert written == docs.files()


def test_golden_s3_rendering_with_the_node_agent(golden):
    """The documents of a build without internet, node agent included, against
    tests/render/golden/ami-1.30.12-amd64-s3/ (a fixed agent source, so the golden files follow
    the templates, not every change of the agent's code)."""
    from pathlib import Path

    from bake.render import AgentSource

    agent = AgentSource(
        url=f"{BUCKET}/bake-node/bake-node-0.0.0.tar.gz", sha256="0" * 64, version="0.0.0"
    )
    docs = render_image_documents(
        resolve(load_catalog(), "1.30.12", "amd64"),
        RenderOptions(artifacts_s3=BUCKET, agent=agent),
    )
    directory = Path(__file__).parent / "golden" / "ami-1.30.12-amd64-s3"
    golden.check(directory, docs.files(), complete=True)
