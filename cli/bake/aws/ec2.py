"""Thin EC2 wrapper for baked images (AMIs): register, tag, describe, deregister.

Every function takes an injected boto3 EC2 client and runs each API call through
``bake.aws.errors.call`` with its IAM action (``ec2:RegisterImage``, ...), so failures become
one-line ``AwsError`` messages. Request shapes follow the EC2 API reference (RegisterImage,
CreateTags, DescribeImages, DeregisterImage, DeleteSnapshot). bake's images are recognised by
the tag ``bake:managed=true`` on images owned by the caller's account (``Owners=["self"]``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bake.aws.errors import call
from bake.errors import UsageError

#: bake arch -> EC2 ``Architecture`` (EC2 API reference, RegisterImage: i386 | x86_64 | arm64 ...)
EC2_ARCH = {"amd64": "x86_64", "arm64": "arm64"}
#: the tag every image bake registers carries, and that ``describe_bake_images`` filters on.
MANAGED_TAG = ("bake:managed", "true")
#: root device name of Debian's and bake's AMIs.
ROOT_DEVICE = "/dev/xvda"


def to_tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    """``{"k": "v"}`` -> ``[{"Key": "k", "Value": "v"}]`` (the EC2 ``Tag`` shape), sorted by key."""
    return [{"Key": k, "Value": str(v)} for k, v in sorted(tags.items())]


def tags_to_dict(tags: Iterable[Mapping[str, str]] | None) -> dict[str, str]:
    """``[{"Key": "k", "Value": "v"}]`` -> ``{"k": "v"}``; ``None`` -> ``{}``."""
    return {t["Key"]: t.get("Value", "") for t in (tags or [])}


def create_tags(client: Any, resource_ids: list[str], tags: Mapping[str, str]) -> None:
    """Tag EC2 resources (``ec2:CreateTags``).

    Args:
        client: boto3 EC2 client.
        resource_ids: e.g. ``["ami-0123..."]``.
        tags: key -> value; at most 50 per resource (EC2 tag limits).
    """
    if tags:
        call("ec2:CreateTags", client.create_tags, Resources=resource_ids, Tags=to_tag_list(tags))


def register_image(
    client: Any,
    *,
    name: str,
    description: str,
    arch: str,
    tags: Mapping[str, str],
    snapshot_id: str | None = None,
    volume_size_gib: int = 20,
) -> str:
    """Register an HVM, ENA, IMDSv2-only AMI and tag it (``ec2:RegisterImage``, ``ec2:CreateTags``).

    The root device mapping is ``/dev/xvda``, gp3, deleted on termination. With
    ``snapshot_id`` (an EBS snapshot of the built disk) that is the AMI real EC2 needs; without
    it (local images registered into the embedded AWS, which has no disk to snapshot) the
    mapping names only size and type, which moto accepts (real EC2 rejects it). ``ImdsSupport``
    ``v2.0`` makes instances launched from the AMI require IMDSv2 (EC2 API reference,
    RegisterImage). Tags are applied with CreateTags right after registration (moto ignores
    ``TagSpecifications`` on RegisterImage); if tagging fails the AMI is deregistered again.

    Args:
        client: boto3 EC2 client.
        name: AMI name, 3-128 characters, unique in the account and region.
        description: free text, up to 255 characters.
        arch: bake arch, ``amd64`` or ``arm64``.
        tags: tags for the AMI (``bake:*``).
        snapshot_id: root volume snapshot, or ``None``.
        volume_size_gib: root volume size in GiB.

    Returns:
        the new image id, ``ami-...``.

    Raises:
        UsageError: unknown arch. AwsError: the API refused (one line).
    """
    if arch not in EC2_ARCH:
        raise UsageError(f"unknown arch {arch!r}: use one of {', '.join(sorted(EC2_ARCH))}")
    ebs: dict[str, Any] = {
        "VolumeSize": int(volume_size_gib),
        "VolumeType": "gp3",
        "DeleteOnTermination": True,
    }
    if snapshot_id:
        ebs["SnapshotId"] = snapshot_id
    response = call(
        "ec2:RegisterImage",
        client.register_image,
        Name=name,
        Description=description[:255],
        Architecture=EC2_ARCH[arch],
        RootDeviceName=ROOT_DEVICE,
        BlockDeviceMappings=[{"DeviceName": ROOT_DEVICE, "Ebs": ebs}],
        VirtualizationType="hvm",
        EnaSupport=True,
        ImdsSupport="v2.0",
    )
    image_id = response["ImageId"]
    try:
        create_tags(client, [image_id], tags)
    except Exception:
        deregister_image(client, image_id)
        raise
    return image_id


def describe_image(client: Any, image_id: str) -> dict[str, Any] | None:
    """Return the EC2 ``Image`` for ``image_id``, or ``None`` when it does not exist."""
    from bake.aws.errors import error_code
    from bake.errors import AwsError

    try:
        images = call("ec2:DescribeImages", client.describe_images, ImageIds=[image_id])["Images"]
    except AwsError as exc:
        if (error_code(exc) or "").startswith("InvalidAMIID"):
            return None
        raise
    return images[0] if images else None


def deregister_image(client: Any, image_id: str, delete_snapshots: bool = True) -> list[str]:
    """Deregister an AMI and delete its EBS snapshots.

    Actions: ``ec2:DescribeImages``, ``ec2:DeregisterImage``, ``ec2:DeleteSnapshot``.

    Args:
        client: boto3 EC2 client.
        image_id: ``ami-...``.
        delete_snapshots: also delete the snapshots of its block device mappings.

    Returns:
        the ids of the snapshots deleted (empty when the image was already gone).
    """
    image = describe_image(client, image_id)
    if image is None:
        return []
    snapshots = [
        m["Ebs"]["SnapshotId"]
        for m in image.get("BlockDeviceMappings", [])
        if m.get("Ebs", {}).get("SnapshotId")
    ]
    call("ec2:DeregisterImage", client.deregister_image, ImageId=image_id)
    deleted: list[str] = []
    if delete_snapshots:
        for snapshot_id in snapshots:
            call("ec2:DeleteSnapshot", client.delete_snapshot, SnapshotId=snapshot_id)
            deleted.append(snapshot_id)
    return deleted


def describe_bake_images(
    client: Any, extra_tags: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """List the account's AMIs that bake registered (``ec2:DescribeImages``, paginated).

    Args:
        client: boto3 EC2 client.
        extra_tags: more tag filters (key -> value), e.g. ``{"bake:arch": "amd64"}``.

    Returns:
        EC2 ``Image`` dicts owned by ``self`` and tagged ``bake:managed=true``, newest first by
        ``CreationDate``; each also has ``"TagMap"``: its tags as a dict.
    """
    wanted = {MANAGED_TAG[0]: MANAGED_TAG[1], **(extra_tags or {})}
    filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in wanted.items()]
    images: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"Owners": ["self"], "Filters": filters}
        if token:
            kwargs["NextToken"] = token
        page = call("ec2:DescribeImages", client.describe_images, **kwargs)
        for image in page.get("Images", []):
            images.append({**image, "TagMap": tags_to_dict(image.get("Tags"))})
        token = page.get("NextToken")
        if not token:
            break
    images.sort(key=lambda i: i.get("CreationDate", ""), reverse=True)
    return images


def managed_prefix_list_ids(client: Any, region: str, services: Iterable[str]) -> dict[str, str]:
    """IDs of AWS-managed prefix lists ``com.amazonaws.<region>.<service>``
    (``ec2:DescribeManagedPrefixLists``; VPC user guide, "AWS-managed prefix lists").

    Args:
        client: boto3 EC2 client of that region.
        region: e.g. ``us-east-1``.
        services: e.g. ``("s3", "dynamodb")``: the gateway endpoint services.

    Returns:
        ``{service: "pl-..."}``.

    Raises:
        UsageError: a prefix list does not exist in the region (names it).
    """
    wanted = {f"com.amazonaws.{region}.{svc}": svc for svc in services}
    found: dict[str, str] = {}
    kwargs: dict[str, Any] = {
        "Filters": [{"Name": "prefix-list-name", "Values": sorted(wanted)}],
    }
    while True:
        resp = call(
            "ec2:DescribeManagedPrefixLists", client.describe_managed_prefix_lists, **kwargs
        )
        for pl in resp.get("PrefixLists", []):
            if pl.get("PrefixListName") in wanted and pl.get("OwnerId") == "AWS":
                found[wanted[pl["PrefixListName"]]] = pl["PrefixListId"]
        if not resp.get("NextToken"):
            break
        kwargs["NextToken"] = resp["NextToken"]
    missing = [name for name, svc in sorted(wanted.items()) if svc not in found]
    if missing:
        raise UsageError(
            f"no AWS-managed prefix list {', '.join(missing)} in {region}: is the region right?"
        )
    return found


def instances(client: Any, instance_ids: list[str]) -> list[dict[str, Any]]:
    """DescribeInstances entries of ``instance_ids`` (every reservation flattened)."""
    if not instance_ids:
        return []
    out: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"InstanceIds": list(instance_ids)}
    while True:
        resp = call("ec2:DescribeInstances", client.describe_instances, **kwargs)
        for reservation in resp.get("Reservations", []):
            out += reservation.get("Instances", [])
        if not resp.get("NextToken"):
            return out
        kwargs["NextToken"] = resp["NextToken"]


def launch_template_user_data(client: Any, name: str, version: str = "$Latest") -> bytes:
    """The user-data of a launch template version, decoded from base64 (what EC2 hands the
    instance; DescribeLaunchTemplateVersions ``LaunchTemplateData.UserData``)."""
    import base64

    resp = call("ec2:DescribeLaunchTemplateVersions", client.describe_launch_template_versions,
                LaunchTemplateName=name, Versions=[version])
    data = resp["LaunchTemplateVersions"][0]["LaunchTemplateData"].get("UserData", "")
    return base64.b64decode(data)


def launch_template_image(client: Any, name: str, version: str = "$Latest") -> str | None:
    """The AMI id a launch template version names (DescribeLaunchTemplateVersions
    ``LaunchTemplateData.ImageId``)."""
    resp = call("ec2:DescribeLaunchTemplateVersions", client.describe_launch_template_versions,
                LaunchTemplateName=name, Versions=[version])
    return resp["LaunchTemplateVersions"][0]["LaunchTemplateData"].get("ImageId")


def console_output(client: Any, instance_id: str) -> str:
    """The instance's serial console output (``ec2:GetConsoleOutput``, latest), decoded."""
    import base64

    resp = call("ec2:GetConsoleOutput", client.get_console_output, InstanceId=instance_id,
                Latest=True)
    return base64.b64decode(resp.get("Output") or b"").decode(errors="replace")


def subnets(client: Any, subnet_ids: list[str]) -> list[dict[str, Any]]:
    """DescribeSubnets entries of ``subnet_ids`` (``[]`` for none)."""
    if not subnet_ids:
        return []
    resp = call("ec2:DescribeSubnets", client.describe_subnets, SubnetIds=list(subnet_ids))
    return resp.get("Subnets", [])
