"""``bake stage`` and ``bake prune`` against moto (S3, EC2, SSM).

Stage reads the stand-in mirror written by tools/standins.py (tiny scripts and OCI archives that
stand in for the real release files, which cannot be downloaded here), pinned by the overlay it
writes, so the real SHA-256-verifying path runs.
"""

from __future__ import annotations

import pytest

# `standin_mirror` is the suite's shared fixture (tests/support/fixtures.py).


@pytest.fixture
def bucket(aws):
    import boto3

    s3 = boto3.client("s3", endpoint_url=aws.endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="bake-artifacts")
    return s3


def test_stage_uploads_verified_artifacts_in_mirror_layout(run_bake, aws, bucket, standin_mirror):
    args = [
        "--endpoint-url",
        aws.endpoint,
        "stage",
        "--k8s",
        "1.30",
        "--mirror",
        str(standin_mirror.mirror),
        "--bucket",
        "s3://bake-artifacts/offline",
        "--catalog",
        str(standin_mirror.overlay),
    ]
    result = run_bake(*args)
    assert result.exit_code == 0, result.stderr
    keys = {o["Key"] for o in bucket.list_objects_v2(Bucket="bake-artifacts")["Contents"]}
    assert keys == {f"offline/{path}" for path in standin_mirror.files}
    kubeadm = standin_mirror.release.artifact("kubeadm")
    key = "offline/" + kubeadm.url.split("://", 1)[1]
    head = bucket.head_object(Bucket="bake-artifacts", Key=key)
    assert head["Metadata"]["sha256"] == kubeadm.sha256
    assert head["ServerSideEncryption"] == "aws:kms"
    again = run_bake(*args)
    assert again.exit_code == 0 and "(0 uploaded now)" in again.stdout


def test_stage_with_a_tampered_file_uploads_nothing(
    run_bake, aws, bucket, standin_mirror, tmp_path
):
    import shutil

    mirror = tmp_path / "mirror"
    shutil.copytree(standin_mirror.mirror, mirror)
    kubelet = standin_mirror.release.artifact("kubelet")
    (mirror / kubelet.url.split("://", 1)[1]).write_bytes(b"not the pinned kubelet")
    result = run_bake(
        "--endpoint-url",
        aws.endpoint,
        "stage",
        "--k8s",
        "1.30",
        "--mirror",
        str(mirror),
        "--bucket",
        "s3://bake-artifacts/x",
        "--catalog",
        str(standin_mirror.overlay),
    )
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "SHA-256 mismatch" in result.stderr
    assert "kubelet" in result.stderr
    assert "Contents" not in bucket.list_objects_v2(Bucket="bake-artifacts")


def test_stage_without_image_checksums_says_how_to_fix(run_bake, aws, bucket, standin_mirror):
    result = run_bake(
        "--endpoint-url",
        aws.endpoint,
        "stage",
        "--k8s",
        "1.30",
        "--mirror",
        str(standin_mirror.mirror),
        "--bucket",
        "s3://bake-artifacts/x",
    )
    assert result.exit_code == 2
    assert "image_archives" in result.stderr and "--no-images" in result.stderr


def test_stage_into_a_missing_bucket_is_one_line(run_bake, aws, standin_mirror):
    result = run_bake(
        "--endpoint-url",
        aws.endpoint,
        "stage",
        "--k8s",
        "1.30",
        "--no-images",
        "--mirror",
        str(standin_mirror.mirror),
        "--bucket",
        "s3://no-such-bucket/x",
        "--catalog",
        str(standin_mirror.overlay),
    )
    assert result.exit_code == 1
    assert "s3:" in result.stderr and result.stderr.count("\n") == 1


def _bake_image(ec2_client, version, created_suffix):
    from bake.aws import ec2

    return ec2.register_image(
        ec2_client,
        name=f"bake-{version}-{created_suffix}",
        description="",
        arch="amd64",
        tags={
            "bake:managed": "true",
            "bake:kubernetes-version": version,
            "bake:arch": "amd64",
            "bake:os": "debian-12",
        },
    )


def test_prune_keeps_newest_and_never_the_published_image(run_bake, aws):
    import json

    from bake.aws import ssm
    from bake.aws.session import AwsClients, AwsTarget

    clients = AwsClients(AwsTarget(region="us-east-1", endpoint_url=aws.endpoint))
    ec2_client = clients.client("ec2")
    ids = [_bake_image(ec2_client, "1.30.12", n) for n in range(4)]
    other = _bake_image(ec2_client, "1.31.1", 0)
    name = "/bake/k8s/1.30/debian-12/amd64/image_id"
    ssm.put_image_id(clients.client("ssm"), name, ids[0])
    # moto gives every image the same CreationDate; order them explicitly through the planner
    from bake.aws.ec2 import describe_bake_images
    from bake.prune import plan_prune

    images = describe_bake_images(ec2_client)
    for image in images:
        image["CreationDate"] = (
            f"2026-01-0{ids.index(image['ImageId']) + 1 if image['ImageId'] in ids else 9}"
        )
    plan = {d.image_id: d.action for d in plan_prune(images, {ids[0]}, keep=1)}
    assert plan == {
        ids[0]: "protected",
        ids[1]: "delete",
        ids[2]: "delete",
        ids[3]: "keep",
        other: "keep",
    }

    dry = run_bake(
        "--endpoint-url", aws.endpoint, "prune", "--keep", "1", "--dry-run", "--output", "json"
    )
    assert dry.exit_code == 0, dry.stderr
    report = json.loads(dry.stdout)
    # moto stamps every image with the same CreationDate, so which unpublished 1.30 image is
    # "newest" is arbitrary here; the published one and the other version always stay
    doomed = {d["image_id"] for d in report["images"] if d["action"] == "delete"}
    assert len(doomed) in (2, 3) and ids[0] not in doomed and other not in doomed
    assert len(describe_bake_images(ec2_client)) == 5
    real = run_bake("--endpoint-url", aws.endpoint, "prune", "--keep", "1")
    assert real.exit_code == 0, real.stderr
    left = {i["ImageId"] for i in describe_bake_images(ec2_client)}
    assert left == {i["ImageId"] for i in describe_bake_images(ec2_client)} - doomed
    assert ids[0] in left and other in left and not (left & doomed)


def test_prune_keep_zero_is_refused(run_bake, aws):
    result = run_bake("--endpoint-url", aws.endpoint, "prune", "--keep", "0")
    assert result.exit_code == 2 and "--keep must be at least 1" in result.stderr
