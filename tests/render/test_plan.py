"""The download plan (``bake.plan``): one list of every file a release's build fetches, which
rendering, ``bake stage`` and the mirror preflight all read."""

from __future__ import annotations

import pytest

from bake.catalog import load_catalog, resolve
from bake.errors import CatalogError
from bake.plan import DOWNLOADS_DIR, IMAGES_DIR, download_plan
from bake.render import RenderOptions, render_image_documents
from bake.stage import plan as stage_plan

KUBEADM = "https://dl.k8s.io/release/v1.30.12/bin/linux/amd64/kubeadm"


@pytest.fixture(scope="module")
def release(images_overlay):
    return resolve(load_catalog([images_overlay]), "1.30.12", "amd64")


def test_the_mirror_and_s3_layout_of_a_release_file(release):
    kubeadm = download_plan(release).artifact("kubeadm")
    assert kubeadm.upstream == KUBEADM
    assert kubeadm.url(None) == KUBEADM
    assert kubeadm.url("http://127.0.0.1:8080/m/") == (
        "http://127.0.0.1:8080/m/dl.k8s.io/release/v1.30.12/bin/linux/amd64/kubeadm"
    )
    assert kubeadm.s3_uri("s3://bucket/bake/") == (
        "s3://bucket/bake/dl.k8s.io/release/v1.30.12/bin/linux/amd64/kubeadm"
    )
    assert kubeadm.s3_key("bake") == "bake/dl.k8s.io/release/v1.30.12/bin/linux/amd64/kubeadm"
    assert kubeadm.s3_key("") == "dl.k8s.io/release/v1.30.12/bin/linux/amd64/kubeadm"
    assert kubeadm.destination == f"{DOWNLOADS_DIR}/kubeadm"
    assert kubeadm.sha256 == release.artifact("kubeadm").sha256


def test_an_image_archive_exists_only_on_a_mirror(release):
    pause = next(i for i in download_plan(release).images if i.name == "pause")
    assert pause.path.startswith("bake-images/amd64/pause_")
    assert pause.destination.startswith(f"{IMAGES_DIR}/pause_")
    with pytest.raises(CatalogError, match="needs a mirror: pass --mirror URL"):
        pause.url(None)


def test_render_and_stage_fetch_the_same_files(release):
    """What the components download from a mirror is what `bake stage` verifies and uploads,
    file for file, with the same SHA-256 (one plan, two readers)."""
    mirror = "http://127.0.0.1:8080"
    docs = render_image_documents(release, RenderOptions(mirror=mirror))
    rendered = {}
    for component in docs.components:
        for phase in component.data["phases"]:
            for step in phase["steps"]:
                if step["action"] == "WebDownload":
                    rendered.update({i["source"]: i["checksum"] for i in step["inputs"]})
    staged = {url: sha for url, sha, _key in stage_plan(release, mirror, "p", images=True)}
    assert rendered == staged and len(staged) >= 10


def test_images_without_an_archive_sha256_are_named(release):
    shipped = resolve(load_catalog([]), "1.30.12", "amd64")
    plan = download_plan(shipped)
    assert plan.images == () and "registry.k8s.io/pause" in " ".join(plan.images_without_sha256)
    with pytest.raises(CatalogError, match="no SHA-256 for the image archive of"):
        stage_plan(shipped, "http://127.0.0.1:8080", "p", images=True)
