"""Checks of an Image Builder bake that run before any resource is made: the options, a build
without internet (its subnet's VPC endpoints and staged artifacts) and the parent image."""

from __future__ import annotations

from typing import Any

from bake.builders.imagebuilder.model import (
    REQUIRED_ENDPOINTS,
    ImageBuilderOptions,
    Progress,
)
from bake.errors import UsageError


class Preflight:
    """The driver's checks before any resource is created (mixed into ``ImageBuilderDriver``;
    uses its ``clients``, ``options`` and ``progress``)."""

    clients: Any
    options: ImageBuilderOptions
    progress: Progress

    @property
    def _ib(self) -> Any:
        return self.clients.client("imagebuilder")

    # ------------------------------------------------------------ resources

    def check_options(self) -> None:
        """Validate the options before any AWS call.

        Raises:
            UsageError: no instance profile, or a malformed ``artifacts_s3``.
        """
        if not self.options.instance_profile:
            raise UsageError(
                "Image Builder needs an instance profile: pass --instance-profile NAME (a role "
                "with EC2InstanceProfileForImageBuilder and AmazonSSMManagedInstanceCore)"
            )
        if self.options.artifacts_s3 and not self.options.artifacts_s3.startswith("s3://"):
            raise UsageError(
                f"--artifacts {self.options.artifacts_s3!r} must look like s3://bucket/prefix"
            )

    def check_offline(self, docs: Any) -> None:
        """With ``artifacts_s3``, fail early when the build would still need the internet.

        Checks that no component downloads with ``WebDownload`` and that every ``S3Download``
        fetches from under ``artifacts_s3`` (the documents must be rendered with the same
        ``bake.render.RenderOptions.artifacts_s3``, as ``bake.ami.bake_aws`` does) and, with a
        ``subnet_id``, that the subnet's VPC has the endpoints a
        build instance without internet needs: interface endpoints for ``ssm``,
        ``ssmmessages``, ``ec2messages`` and ``imagebuilder``, and ``s3`` (gateway or
        interface) for the artifacts, AWSTOE and the logs (Image Builder user guide, "Image
        Builder and interface VPC endpoints"; Systems Manager user guide, "VPC endpoints").
        Uses ``ec2:DescribeSubnets`` and ``ec2:DescribeVpcEndpoints``.

        Raises:
            UsageError: names the component that downloads from the internet, an S3Download
                from outside ``artifacts_s3``, or the missing endpoints.
        """
        if not self.options.artifacts_s3:
            return
        online = [
            d.name
            for d in docs.components
            if any(
                step.get("action") == "WebDownload"
                for phase in (d.data or {}).get("phases", [])
                for step in phase.get("steps", [])
            )
        ]
        if online:
            raise UsageError(
                f"--artifacts {self.options.artifacts_s3} was given but component(s) "
                f"{', '.join(online)} still download from the internet (WebDownload): render the "
                "documents with S3 sources (RenderOptions.artifacts_s3)"
            )
        prefix = self.options.artifacts_s3.rstrip("/") + "/"
        elsewhere = [
            (d.name, str(item.get("source", "")))
            for d in docs.components
            for phase in (d.data or {}).get("phases", [])
            for step in phase.get("steps", [])
            if step.get("action") == "S3Download"
            for item in step.get("inputs", [])
            if not str(item.get("source", "")).startswith(prefix)
        ]
        if elsewhere:
            component, source = elsewhere[0]
            raise UsageError(
                f"--artifacts {self.options.artifacts_s3} was given but {len(elsewhere)} "
                f"download(s) come from elsewhere, e.g. {source} in {component}; "
                "render them with the same --artifacts"
            )
        if not self.options.subnet_id:
            return
        from bake.aws.errors import call

        ec2_client = self.clients.client("ec2")
        subnets = call(
            "ec2:DescribeSubnets", ec2_client.describe_subnets, SubnetIds=[self.options.subnet_id]
        )["Subnets"]
        vpc_id = subnets[0]["VpcId"]
        endpoints = call(
            "ec2:DescribeVpcEndpoints",
            ec2_client.describe_vpc_endpoints,
            Filters=[{"Name": "vpc-id", "Values": [vpc_id]}],
        ).get("VpcEndpoints", [])
        have = {
            e["ServiceName"].rsplit(".", 1)[-1]
            for e in endpoints
            if e.get("State", "available").lower() in {"available", "pending"}
        }
        missing = [s for s in REQUIRED_ENDPOINTS if s not in have]
        if missing:
            region = self.clients.region
            raise UsageError(
                f"subnet {self.options.subnet_id} (VPC {vpc_id}) has no internet for the build "
                f"and lacks VPC endpoints for: "
                f"{', '.join(f'com.amazonaws.{region}.{s}' for s in missing)}; create them or "
                "use a subnet with a NAT gateway"
            )

    def check_parent_image(self, parent_image: str) -> None:
        """Fail early on a parent image that does not exist.

        ``ssm:<parameter>`` is looked up in SSM (``ssm:GetParameter``), ``ami-...`` in EC2
        (``ec2:DescribeImages``); Image Builder image ARNs are left to Image Builder.

        Raises:
            UsageError: the parameter or AMI does not exist (names it).
        """
        if parent_image.startswith("ssm:"):
            from bake.aws import ssm

            name = parent_image[len("ssm:") :]
            if ssm.get_parameter(self.clients.client("ssm"), name) is None:
                raise UsageError(
                    f"unknown parent image {parent_image}: SSM parameter {name} does not exist in "
                    f"{self.clients.region}; pass --parent-image ami-... or ssm:/path"
                )
        elif parent_image.startswith("ami-"):
            from bake.aws import ec2

            if ec2.describe_image(self.clients.client("ec2"), parent_image) is None:
                raise UsageError(
                    f"unknown parent image {parent_image} in {self.clients.region}: check the id "
                    "and region, or pass --parent-image ssm:/path"
                )
