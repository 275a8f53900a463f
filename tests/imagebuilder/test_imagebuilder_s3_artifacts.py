"""`bake ami --artifacts s3://...`: the driver takes the S3-rendered documents (S3Download +
SHA-256 check) and uploads them byte for byte; it no longer refuses the option.

Image Builder is botocore's Stubber (requests validated against the real service model); the
VPC, subnet, endpoints and the parent image's SSM parameter live in moto.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest
import yaml
from tests.imagebuilder.conftest import ARN, stub_creates

from bake.errors import UsageError

ACCOUNT = "123456789012"  # moto's account, as in conftest.py (imported by fixture only)
REGION = "us-east-1"
BUCKET = "s3://bake-artifacts/offline"
ENDPOINTS = ("ssm", "ssmmessages", "ec2messages", "imagebuilder", "s3")


@pytest.fixture
def overlay(tmp_path, release):
    """Archive SHA-256s for the release's images (made up: no registry images here)."""
    path = tmp_path / "images.yaml"
    archives = {
        i.ref: hashlib.sha256(f"{release.arch}/{i.ref}".encode()).hexdigest()
        for i in release.images
    }
    path.write_text(
        yaml.safe_dump(
            {"schema": "bake.catalog/v1", "image_archives": {release.arch: archives}}
        )
    )
    return path


@pytest.fixture
def private_subnet(clients):
    """A subnet whose VPC has every endpoint a build without internet needs."""
    ec2_client = clients.client("ec2")
    vpc = ec2_client.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2_client.create_subnet(VpcId=vpc, CidrBlock="10.1.1.0/24")["Subnet"]["SubnetId"]
    for service in ENDPOINTS:
        ec2_client.create_vpc_endpoint(
            VpcId=vpc,
            ServiceName=f"com.amazonaws.{REGION}.{service}",
            VpcEndpointType="Gateway" if service == "s3" else "Interface",
            SubnetIds=[] if service == "s3" else [subnet],
        )
    return subnet


def _record_components(stub) -> list[str]:
    sent: list[str] = []
    stub.client.meta.events.register(
        "provide-client-params.imagebuilder.CreateComponent",
        lambda params, **kw: sent.append(params["data"]),
    )
    return sent


def _actions(text: str) -> list[str]:
    data = yaml.safe_load(text)
    return [s["action"] for p in data["phases"] for s in p["steps"]]


def test_driver_uploads_the_s3_documents_byte_for_byte(
    clients, ib_stub, options, release, overlay, private_subnet
):
    from bake.builders.imagebuilder import ImageBuilderDriver
    from bake.catalog import load_catalog, resolve
    from bake.render import RenderOptions, render_image_documents

    release = resolve(load_catalog([overlay]), release.kubernetes_version, release.arch)
    docs = render_image_documents(release, RenderOptions(artifacts_s3=BUCKET))
    parent = f"arn:aws:imagebuilder:{REGION}:aws:image/debian-12-x86/x.x.x"
    recipe = replace(docs.recipe, data={**docs.recipe.data, "parentImage": parent})
    docs = replace(docs, recipe=recipe)
    sent = _record_components(ib_stub)
    stub_creates(ib_stub, docs)
    offline = replace(
        options, artifacts_s3=BUCKET, subnet_id=private_subnet, kms_key_id=None, instance_types=()
    )

    resources = ImageBuilderDriver(clients, offline, lambda line: None).ensure_resources(docs)

    assert len(resources.created) == len(docs.components) + 3
    assert sent == [d.text for d in docs.components]
    actions = [a for text in sent for a in _actions(text)]
    assert "WebDownload" not in actions
    # kubeadm, kubelet, kubectl, containerd, runc, CNI plugins, crictl, every image archive and
    # every add-on file (Calico's CRDs)
    expected = (sum(1 for a in release.artifacts if a.source == "release") + len(release.images)
                + len(release.addon_files))
    assert actions.count("S3Download") == expected
    for text in sent:
        steps = [s for p in yaml.safe_load(text)["phases"] for s in p["steps"]]
        fetched = [i for i, s in enumerate(steps) if s["action"] == "S3Download"]
        if fetched:  # the SHA-256 check comes right after the downloads
            assert steps[fetched[-1] + 1]["name"] == "VerifyDownloads"
    assert all(f"{BUCKET}/" in json.dumps(yaml.safe_load(t)) for t in sent[1:4])


def test_documents_for_another_bucket_are_refused_before_any_call(
    clients, options, release, private_subnet
):
    from bake.builders.imagebuilder import ImageBuilderDriver
    from bake.render import RenderOptions, render_image_documents

    docs = render_image_documents(release, RenderOptions(artifacts_s3="s3://other-bucket/x"))
    offline = replace(options, artifacts_s3=BUCKET, subnet_id=private_subnet)
    with pytest.raises(UsageError) as info:
        ImageBuilderDriver(clients, offline, lambda line: None).ensure_resources(docs)
    message = info.value.format_message()
    assert message.startswith(f"--artifacts {BUCKET} was given but ")
    assert "download(s) come from elsewhere, e.g. s3://other-bucket/x/" in message
    assert message.endswith("render them with the same --artifacts")


def test_bake_aws_renders_with_artifacts_and_starts_the_build(
    clients, ib_stub, release, overlay, private_subnet, monkeypatch
):
    """The service path `bake ami --artifacts s3://... --no-wait`: the RenderOptions carry the
    bucket, so the same S3 documents reach the driver (no refusal) and the build starts."""
    from bake.ami import (
        AmiOptions,
        AwsBakeOptions,
        agent_source_s3,
        bake_aws,
        render_for,
        resolve_release,
    )
    from bake.builders.imagebuilder import ImageBuilderDriver

    # moto refuses parameters under the reserved /aws/ prefix, so Debian's public parameter
    # (the default parent image) cannot be created there; the look-up is tested elsewhere.
    monkeypatch.setattr(ImageBuilderDriver, "check_parent_image", lambda self, parent: None)
    options = AmiOptions(k8s=release.kubernetes_version, catalogs=(overlay,))
    # the node agent's bundle is staged next to the artifacts and baked in (bake-node)
    clients.client("s3").create_bucket(Bucket="bake-artifacts")
    agent = agent_source_s3(BUCKET)
    expected = render_for(
        resolve_release(options), replace(options, artifacts_s3=BUCKET), agent
    ).components
    sent = _record_components(ib_stub)
    stub_creates(ib_stub, type("Docs", (), {"components": expected}))
    build_arn = f"{ARN}:image/bake-k8s/1.0.0/1"
    ib_stub.add_response("create_image", {"imageBuildVersionArn": build_arn})
    lines: list[str] = []

    results = bake_aws(
        options,
        AwsBakeOptions(
            arches=(release.arch,),
            subnet_id=private_subnet,
            security_group_ids=("sg-0123456789abcdef0",),
            instance_profile="bake-imagebuilder",
            artifacts_s3=BUCKET,
            wait=False,
        ),
        clients,
        lines.append,
    )

    assert sent == [d.text for d in expected]
    assert all("S3Download" in t for t in sent[1:4])
    assert [d.name for d in expected][-2:] == ["bake-node", "bake-hygiene"]
    assert agent.url == f"{BUCKET}/bake-node/bake-node-{agent.version}.tar.gz"
    assert f"node agent: uploaded {agent.url}" in lines
    head = clients.client("s3").head_object(
        Bucket="bake-artifacts", Key=f"offline/bake-node/bake-node-{agent.version}.tar.gz"
    )
    assert head["Metadata"]["sha256"] == agent.sha256
    assert results[0]["arch"] == release.arch
    assert build_arn in json.dumps(results)
    assert f"not waiting; attach with: bake ami wait {build_arn}" in lines


def test_local_runner_fetches_the_rendered_s3_downloads(clients, release, tmp_path):
    """The local runner's S3Download runs the very steps the documents hold, against moto's S3:
    the objects land in the rootfs; a missing object fails with one line naming it."""
    from bake.builders.local.runner import ComponentDoc, LocalRunner
    from bake.errors import ArtifactError
    from bake.render import RenderOptions, render_image_documents

    docs = render_image_documents(release, RenderOptions(artifacts_s3=BUCKET))
    kubernetes = docs.components[2]
    build = kubernetes.data["phases"][0]["steps"]
    fetch = [s for s in build if s["action"] == "S3Download" or s["name"] == "CreateDownloadFolder"]
    s3 = clients.client("s3")
    s3.create_bucket(Bucket="bake-artifacts")
    contents = {}
    for step in fetch[1:]:
        (item,) = step["inputs"]
        key = item["source"].removeprefix("s3://bake-artifacts/")
        contents[item["destination"]] = f"stand-in for {key}\n".encode()
        s3.put_object(Bucket="bake-artifacts", Key=key, Body=contents[item["destination"]])
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    doc = ComponentDoc("fetch", {"phases": [{"name": "build", "steps": fetch}]})

    runner = LocalRunner(rootfs, tmp_path / "logs", chroot=False, s3_client=s3)
    runner.run_phases([doc], ("build",))
    for destination, content in contents.items():
        assert (rootfs / destination.lstrip("/")).read_bytes() == content

    first = fetch[1]["inputs"][0]
    s3.delete_object(
        Bucket="bake-artifacts", Key=first["source"].removeprefix("s3://bake-artifacts/")
    )
    with pytest.raises(ArtifactError) as info:
        LocalRunner(rootfs, tmp_path / "logs2", chroot=False, s3_client=s3).run_phases(
            [doc], ("build",)
        )
    assert info.value.format_message().startswith(f"cannot fetch {first['source']}: NoSuchKey")
