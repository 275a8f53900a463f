"""Publication into the embedded AWS: AMI + SSM with labels, listing, and all-or-nothing."""

from __future__ import annotations

import json

import pytest

from bake.aws import ec2, ssm
from bake.errors import AwsError, UsageError
from bake.publish import publish

PARAM = "/bake/k8s/1.30/debian-12/amd64/image_id"


def _amis(clients):
    return ec2.describe_bake_images(clients.client("ec2"))


def test_publish_registers_tagged_ami_and_labelled_parameter(clients, publish_request):
    pub = publish(clients, publish_request(local_path="/data/images/x"))[0]

    assert pub.image_id.startswith("ami-")
    assert pub.ssm_parameter == PARAM
    assert pub.label == "v1.30.12"
    [ami] = _amis(clients)
    assert ami["ImageId"] == pub.image_id
    assert ami["TagMap"] == {
        "Name": "bake-k8s-1.30.12-amd64-20261122T030000Z-debian-12",
        "bake:managed": "true",
        "bake:kubernetes-version": "1.30.12",
        "bake:arch": "amd64",
        "bake:os": "debian-12",
        "bake:build-id": "1.30.12-amd64-20261122T030000Z",
        "bake:manifest-sha256": "0" * 64,
        "bake:local-path": "/data/images/x",
    }
    param = clients.client("ssm").get_parameter(Name=PARAM)["Parameter"]
    assert param["Value"] == pub.image_id
    assert param["DataType"] == "aws:ec2:image"
    # the label resolves to the version, as `aws ssm get-parameter --name NAME:v1.30.12` does
    labelled = clients.client("ssm").get_parameter(Name=f"{PARAM}:v1.30.12")["Parameter"]
    assert labelled["Value"] == pub.image_id


def test_history_keeps_every_bake_with_its_label(clients, publish_request):
    first = publish(clients, publish_request(patch=11, stamp="20261121T000000Z"))[0]
    second = publish(clients, publish_request(patch=12, stamp="20261122T000000Z"))[0]

    versions = ssm.history(clients.client("ssm"), PARAM)
    assert [(v.version, v.value, v.labels) for v in versions] == [
        (1, first.image_id, ("v1.30.11",)),
        (2, second.image_id, ("v1.30.12",)),
    ]
    assert ssm.get_parameter(clients.client("ssm"), PARAM).value == second.image_id


def test_images_list_json_and_table(clients, publish_request, run_bake, aws):
    first = publish(clients, publish_request(patch=11, stamp="20261121T000000Z"))[0]
    second = publish(clients, publish_request(patch=12, stamp="20261122T000000Z"))[0]

    result = run_bake("--endpoint-url", aws.endpoint, "images", "list", "--output", "json")
    assert result.exit_code == 0, result.stderr
    listed = json.loads(result.stdout)["images"]
    assert [i["image_id"] for i in listed] == [second.image_id, first.image_id]
    assert listed[0]["ssm_parameter"] == PARAM
    assert listed[0]["ssm_labels"] == ["v1.30.12"]
    assert listed[1]["ssm_parameter"] is None
    assert listed[1]["ssm_labels"] == ["v1.30.11"]
    assert listed[1]["ssm_versions"] == [f"{PARAM}:1"]

    result = run_bake("--endpoint-url", aws.endpoint, "images", "list")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "IMAGE", "ID", "KUBERNETES", "ARCH", "OS", "BUILD", "CREATED", "SSM", "LOCAL", "PATH"
    ]
    assert lines[1].startswith(second.image_id) and "current (v1.30.12)" in lines[1]
    assert lines[2].startswith(first.image_id) and "was v1.30.11" in lines[2]


def test_images_list_shows_local_build_paths(clients, publish_request, run_bake, aws, tmp_path):
    build_id = "1.30.12-amd64-20261122T030000Z"
    build_dir = tmp_path / "images" / build_id
    build_dir.mkdir(parents=True)
    (build_dir / "rootfs.tar.zst").write_bytes(b"stand-in")
    (build_dir / "disk.raw").write_bytes(b"stand-in")
    pub = publish(clients, publish_request(local_path=str(build_dir)))[0]
    (build_dir / "build.json").write_text(json.dumps({
        "build_id": build_id, "kubernetes_version": "1.30.12", "minor": "1.30",
        "arch": "amd64", "os": "debian-12", "created": "2026-11-22T03:00:00Z",
        "content_hash": "1" * 64, "manifest_sha256": "0" * 64, "image_id": pub.image_id,
        "ssm_parameter": PARAM,
    }))
    # a finished build whose AMI is gone (the embedded AWS was restarted), and a staging dir
    old = tmp_path / "images" / "1.30.11-amd64-20261101T000000Z"
    old.mkdir()
    (old / "build.json").write_text(json.dumps({
        "build_id": old.name, "kubernetes_version": "1.30.11", "arch": "amd64",
        "os": "debian-12", "created": "2026-11-01T00:00:00Z", "image_id": "ami-0000000000000000",
    }))
    (tmp_path / "images" / ".staging-x").mkdir()

    result = run_bake("--data-dir", str(tmp_path), "--endpoint-url", aws.endpoint,
                      "images", "list", "--output", "json")
    assert result.exit_code == 0, result.stderr
    listed = json.loads(result.stdout)["images"]
    assert [(i["image_id"], i["registered"]) for i in listed] == [
        (pub.image_id, True), ("ami-0000000000000000", False)
    ]
    assert listed[0]["local_path"] == str(build_dir)
    assert listed[0]["rootfs_archive"] == str(build_dir / "rootfs.tar.zst")
    assert listed[0]["disk"] == str(build_dir / "disk.raw")

    table = run_bake("--data-dir", str(tmp_path), "--endpoint-url", aws.endpoint,
                     "images", "list").stdout
    assert "ami-0000000000000000 (not registered)" in table
    assert str(build_dir) in table


def test_reserved_prefix_rejected_by_ssm_rolls_back_the_ami(clients, publish_request):
    with pytest.raises(AwsError) as err:
        publish(clients, publish_request(), "/aws/bake")[0]
    message = err.value.format_message()
    assert "ssm:PutParameter" in message and "reserved parameter name" in message
    assert "\n" not in message
    assert _amis(clients) == []


def test_label_failure_rolls_back_ami_and_new_parameter(clients, publish_request, fail_call):
    fail_call(clients.client("ssm"), "LabelParameterVersion", "AccessDeniedException",
              "not authorized to perform: ssm:LabelParameterVersion")
    with pytest.raises(AwsError) as err:
        publish(clients, publish_request())[0]
    assert "ssm:LabelParameterVersion" in err.value.format_message()
    assert _amis(clients) == []
    assert ssm.get_parameter(clients.client("ssm"), PARAM) is None


def test_label_failure_restores_the_previous_image_id(clients, publish_request, fail_call):
    first = publish(clients, publish_request(patch=11))[0]
    fail_call(clients.client("ssm"), "LabelParameterVersion", "InternalServerError")
    with pytest.raises(AwsError):
        publish(clients, publish_request(patch=12))[0]
    assert [a["ImageId"] for a in _amis(clients)] == [first.image_id]
    assert ssm.get_parameter(clients.client("ssm"), PARAM).value == first.image_id


def test_ssm_access_denied_is_one_line_naming_the_action(clients, publish_request, fail_call):
    fail_call(clients.client("ssm"), "PutParameter", "AccessDeniedException",
              "User: arn:aws:iam::123456789012:user/ci is not authorized to perform: "
              "ssm:PutParameter")
    with pytest.raises(AwsError) as err:
        publish(clients, publish_request())[0]
    message = err.value.format_message()
    assert "ssm:PutParameter" in message and "grant" in message
    assert "\n" not in message
    assert _amis(clients) == []


def test_ec2_access_denied_via_stubber_names_the_action(publish_request):
    import boto3
    from botocore.stub import Stubber

    from bake.aws.session import AwsClients, AwsTarget

    session = boto3.session.Session(region_name="us-east-1", aws_access_key_id="x",
                                    aws_secret_access_key="x")
    ec2_client, ssm_client = session.client("ec2"), session.client("ssm")
    with Stubber(ec2_client) as ec2_stub, Stubber(ssm_client) as ssm_stub:
        ec2_stub.add_client_error("register_image", service_error_code="UnauthorizedOperation",
                                  service_message="You are not authorized to perform this "
                                  "operation.", http_status_code=403)
        clients = AwsClients(AwsTarget(), overrides={"ec2": ec2_client, "ssm": ssm_client})
        with pytest.raises(AwsError) as err:
            publish(clients, publish_request())[0]
        ec2_stub.assert_no_pending_responses()
        ssm_stub.assert_no_pending_responses()  # SSM never called
    assert err.value.format_message() == (
        "AWS denied ec2:RegisterImage: You are not authorized to perform this operation. "
        "(grant ec2:RegisterImage to your role)"
    )


def test_missing_credentials_is_one_line(run_bake, aws, monkeypatch):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var)
    # keep botocore's credential chain from asking the instance metadata service (no traffic
    # leaves 127.0.0.1 in tests)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    result = run_bake("--endpoint-url", aws.endpoint, "images", "list")
    assert result.exit_code == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    # one line naming the action that needed them
    assert line.startswith("bake: error: ec2:DescribeImages: no AWS credentials found"), line
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("prefix", "ok"),
    [("/bake/k8s", True), ("/bake/k8s/", True), ("/team-a/images", True),
     ("bake/k8s", False), ("/bake k8s", False), ("/bake//k8s", False), ("", False)],
    ids=["default", "trailing-slash", "custom", "relative", "space", "empty-level", "empty"],
)
def test_parameter_name_rules(prefix, ok):
    if ok:
        assert ssm.parameter_name(prefix, "1.30", "debian-12", "amd64").endswith(
            "/1.30/debian-12/amd64/image_id")
    else:
        with pytest.raises(UsageError):
            ssm.parameter_name(prefix, "1.30", "debian-12", "amd64")


@pytest.mark.parametrize(
    ("version", "label"),
    [("1.30.12", "v1.30.12"), ("v1.31.0", "v1.31.0"), ("1.32.0-rc.1", "v1.32.0-rc.1")],
)
def test_version_label(version, label):
    assert ssm.version_label(version) == label


@pytest.mark.parametrize("bad", ["1.30+build", "1.30/12", "1.30 12", "v" + "1" * 100])
def test_version_label_rejects_what_ssm_rejects(bad):
    with pytest.raises(UsageError):
        ssm.version_label(bad)


def test_deregister_deletes_snapshots(clients):
    client = clients.client("ec2")
    image_id = ec2.register_image(client, name="bake-test", description="t", arch="arm64",
                                  tags={"bake:managed": "true"})
    snapshots = [m["Ebs"]["SnapshotId"] for m in ec2.describe_image(client, image_id)
                 ["BlockDeviceMappings"] if "SnapshotId" in m.get("Ebs", {})]
    assert ec2.deregister_image(client, image_id) == snapshots
    assert ec2.describe_image(client, image_id) is None
    owned = client.describe_snapshots(OwnerIds=["self"])["Snapshots"]
    assert not {s["SnapshotId"] for s in owned} & set(snapshots)
    assert ec2.deregister_image(client, image_id) == []  # already gone: nothing to do


def test_unpublish_restores_the_previous_image_and_removes_the_ami(clients, publish_request):
    from bake.publish import unpublish

    first = publish(clients, publish_request(patch=11))[0]
    assert first.previous_image_id is None
    second = publish(clients, publish_request(patch=12))[0]
    assert second.previous_image_id == first.image_id

    unpublish(clients, (second,))
    assert [a["ImageId"] for a in _amis(clients)] == [first.image_id]
    assert ssm.get_parameter(clients.client("ssm"), PARAM).value == first.image_id

    unpublish(clients, (first,))
    assert _amis(clients) == []
    assert ssm.get_parameter(clients.client("ssm"), PARAM) is None


def test_a_failure_in_a_later_region_puts_every_earlier_region_back(
    clients, publish_request, fail_call
):
    """One publication for every builder: two regions, the second's label is refused; the
    first region's parameter is put back and both AMIs registered here are gone."""
    from bake.publish import BuiltAmi

    first = publish(clients, publish_request(patch=11))[0]
    eu = clients.in_region("eu-west-1")
    fail_call(eu.client("ssm"), "LabelParameterVersion", "AccessDeniedException",
              "not authorized to perform: ssm:LabelParameterVersion")
    image = publish_request(patch=12, amis=(BuiltAmi("us-east-1"), BuiltAmi("eu-west-1")))
    with pytest.raises(AwsError, match="ssm:LabelParameterVersion"):
        publish(clients, image)
    assert ssm.get_parameter(clients.client("ssm"), PARAM).value == first.image_id
    assert ssm.get_parameter(eu.client("ssm"), PARAM) is None
    assert [a["ImageId"] for a in _amis(clients)] == [first.image_id]
    assert _amis(eu) == []


def test_builder_amis_are_tagged_not_registered_and_stay_on_unpublish(clients, publish_request):
    """An Image Builder AMI (``image_id`` given) is tagged and published; undoing the
    publication restores SSM and leaves the builder's AMI alone."""
    from bake.publish import BuiltAmi, unpublish

    made = ec2.register_image(clients.client("ec2"), name="ib-out", description="",
                              arch="amd64", tags={})
    image = publish_request(amis=(BuiltAmi("us-east-1", made),), extra_tags={
        "bake:image-builder-arn": "arn:aws:imagebuilder:us-east-1:123456789012:image/x/1.0.0/1"})
    (pub,) = publish(clients, image)
    assert (pub.image_id, pub.registered, pub.region) == (made, False, "us-east-1")
    [ami] = _amis(clients)
    assert ami["TagMap"]["bake:build-id"] == image.build_id
    assert ami["TagMap"]["bake:image-builder-arn"].endswith("image/x/1.0.0/1")
    assert "Name" not in ami["TagMap"] or ami["TagMap"]["Name"] != image.ami_name
    unpublish(clients, (pub,))
    assert ssm.get_parameter(clients.client("ssm"), PARAM) is None
    assert [a["ImageId"] for a in _amis(clients)] == [made]
