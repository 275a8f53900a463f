"""What an Image Builder bake takes and gives: its options, the resources it used, a build's
status and result (a whole bake's result is ``bake.publish.AmiResult``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bake.aws import imagebuilder as ib

Progress = Callable[[str], None]
#: services a build in a subnet without internet reaches through VPC endpoints
REQUIRED_ENDPOINTS = ("ssm", "ssmmessages", "ec2messages", "imagebuilder", "s3")


@dataclass(frozen=True)
class ImageBuilderOptions:
    """Account-specific settings of an Image Builder build.

    Attributes:
        instance_types: build instance types, e.g. ``("m7i.large",)``; empty: the rendered
            defaults (``bake.render.INSTANCE_TYPES``).
        subnet_id: private subnet for the build instance, or ``None`` (default VPC).
        security_group_ids: security groups of the build instance.
        instance_profile: IAM instance profile name (needs the ``EC2InstanceProfileForImageBuilder``
            and ``AmazonSSMManagedInstanceCore`` policies, plus s3:GetObject on ``artifacts_s3``).
        log_bucket: S3 bucket for build logs, or ``None`` (CloudWatch Logs only).
        log_prefix: key prefix of the logs in ``log_bucket``.
        regions: regions the AMI is distributed to; empty means the client's region only.
        target_accounts: account ids the AMI is copied to and shared with.
        kms_key_id: KMS key (id, ARN or alias) encrypting components and AMI snapshots, or
            ``None`` for the AWS managed key.
        artifacts_s3: ``s3://bucket/prefix`` the components fetch from, or ``None``.
        wait: wait for the build to finish.
        poll_seconds: seconds between ``GetImage`` polls.
        timeout_minutes: give up waiting after this many minutes (the build continues).
    """

    instance_types: tuple[str, ...]
    subnet_id: str | None
    security_group_ids: tuple[str, ...]
    instance_profile: str
    log_bucket: str | None
    log_prefix: str
    regions: tuple[str, ...]
    target_accounts: tuple[str, ...]
    kms_key_id: str | None
    artifacts_s3: str | None
    wait: bool = True
    poll_seconds: float = 30.0
    timeout_minutes: int = 240


@dataclass(frozen=True)
class Resources:
    """The Image Builder resources of one image.

    Attributes:
        components: ``(name, component build version ARN)`` in recipe order.
        recipe_arn: image recipe ARN (``.../image-recipe/<name>/<x.y.z>``).
        infrastructure_arn: infrastructure configuration ARN.
        distribution_arn: distribution configuration ARN.
        created: ARNs this run created (new versions / configurations).
        reused: ARNs reused unchanged.
        tags: tags put on the image build (``bake:*``).
    """

    components: tuple[tuple[str, str], ...]
    recipe_arn: str
    infrastructure_arn: str
    distribution_arn: str
    created: tuple[str, ...] = ()
    reused: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    """One workflow step of a build: ``name``, ``status``, workflow ``kind`` and ``message``."""

    name: str
    status: str
    kind: str = ""
    message: str = ""


@dataclass(frozen=True)
class AmiOutput:
    """An AMI a build produced: ``region``, ``image_id``, ``account_id``, ``name``."""

    region: str
    image_id: str
    account_id: str = ""
    name: str = ""


@dataclass(frozen=True)
class BuildStatus:
    """A snapshot of a build.

    Attributes:
        arn: image build version ARN.
        status: Image Builder status (PENDING, BUILDING, TESTING, DISTRIBUTING, AVAILABLE,
            FAILED, CANCELLED, ...).
        reason: the failure reason Image Builder gives, or ``""``.
        amis: AMIs produced so far.
        steps: workflow steps in start order.
        tags: tags of the image build.
    """

    arn: str
    status: str
    reason: str = ""
    amis: tuple[AmiOutput, ...] = ()
    steps: tuple[Step, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        """True when the status is terminal."""
        return self.status in ib.TERMINAL_STATES

    @property
    def failed_step(self) -> Step | None:
        """The first workflow step whose status is FAILED, or ``None``."""
        return next((s for s in self.steps if s.status == "FAILED"), None)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "arn": self.arn,
            "status": self.status,
            "reason": self.reason,
            "amis": [vars(a) for a in self.amis],
            "steps": [vars(s) for s in self.steps],
        }


@dataclass(frozen=True)
class BuildResult:
    """A finished, AVAILABLE build: ``status`` snapshot, ``amis`` and ``elapsed_seconds``."""

    arn: str
    amis: tuple[AmiOutput, ...]
    elapsed_seconds: float
    status: BuildStatus


def log_location(options: ImageBuilderOptions, status: BuildStatus) -> str:
    """Where Image Builder wrote a build's logs: the S3 prefix and the CloudWatch log group.

    Image Builder writes to ``s3://<bucket>/<prefix>/<image name>/<version>/<build>/`` and to the
    log group ``/aws/imagebuilder/<image name>`` (Image Builder user guide, "Logging").
    """
    parts = status.arn.split(":image/", 1)[-1].split("/")
    image_path = "/".join(parts)
    where = [f"CloudWatch Logs /aws/imagebuilder/{parts[0]}"]
    if options.log_bucket:
        prefix = options.log_prefix.strip("/")
        where.insert(0, f"s3://{options.log_bucket}/{prefix + '/' if prefix else ''}{image_path}/")
    return " and ".join(where)


def mmss(seconds: float) -> str:
    """``MM:SS`` of an elapsed time in seconds (the wait's progress lines)."""
    seconds = int(seconds)
    return f"{seconds // 60:02d}:{seconds % 60:02d}"
