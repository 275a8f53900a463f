"""The EC2 Image Builder driver behind ``bake ami`` on AWS.

``ImageBuilderDriver`` turns the rendered ``ImageDocuments`` (the very component texts the local
builder runs) into Image Builder resources and drives one build:

1. ``ensure_resources(docs)``: every component is uploaded byte for byte as ``Document.text``;
   a component or image recipe whose content is unchanged is reused, a changed one gets a new
   semantic version (patch bumped). Content identity is the tag ``bake:content-sha256``
   (SHA-256 of the component text, or of the canonical JSON of the recipe request). The
   infrastructure configuration (instance types, subnet, security groups, instance profile,
   IMDSv2 required, terminate on failure, S3 logs) and distribution configuration (regions,
   target accounts, launch permissions, KMS key, AMI name and tags) are created or updated in
   place. If anything fails, what this call created is deleted again; what cannot be deleted is
   named in the error.
2. ``start_build(resources)`` -> the image build version ARN.
3. ``wait(arn)``: polls ``GetImage`` and the workflow steps, reports each status transition and
   step with elapsed time, tolerates throttling; ``FAILED``/``CANCELLED`` raise ``BuildError``
   with reason, failing step and log location. Nothing is published by Image Builder itself
   (the request bodies have no ``ssmParameterConfigurations``).
4. ``built_image(result, release)``: only after ``AVAILABLE``, the ``bake.publish.BuiltImage``
   that ``bake.publish.publish`` takes, exactly as for a local build: it tags the AMIs owned by
   this account and writes ``<prefix>/<minor>/<os>/<arch>/image_id`` in every region, labelled
   ``v<version>``.

The recipe, infrastructure and distribution bodies come from the one producer,
``bake.imagebuilder_requests``, for ``account_settings()``: the same functions give the bodies
``bake render ami`` shows. Placeholders in the rendered request bodies:
``${component:<name>}`` becomes the component's ARN; ``${<key>}`` for the keys of
``placeholder_values`` below. An unknown placeholder is a ``RenderError``.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bake.aws import imagebuilder as ib
from bake.errors import AwsError, BakeError, BuildError, RenderError, UsageError
from bake.imagebuilder_requests import (
    AccountSettings,
    bump_patch,
    distribution_request,
    infrastructure_request,
    recipe_request,
)
from bake.publish import BuiltAmi, BuiltImage, publish
from bake.tags import CONTENT_TAG, release_tags

Progress = Callable[[str], None]
#: services a build in a subnet without internet reaches through VPC endpoints
REQUIRED_ENDPOINTS = ("ssm", "ssmmessages", "ec2messages", "imagebuilder", "s3")
_PLACEHOLDER = re.compile(r"\$\{([^}]+)\}")


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


def content_sha256(value: str | Mapping[str, Any]) -> str:
    """SHA-256 hex of a text, or of a request body as canonical JSON (sorted keys)."""
    text = (
        value
        if isinstance(value, str)
        else json.dumps(value, sort_keys=True, separators=(",", ":"))
    )
    return hashlib.sha256(text.encode()).hexdigest()


def fill_placeholders(data: Any, values: Mapping[str, Any]) -> Any:
    """Replace ``${key}`` placeholders in every string of ``data`` (dicts, lists, strings).

    A string that is exactly one placeholder takes the value itself (which may be a list);
    placeholders inside longer strings are replaced by ``str(value)``.

    Raises:
        RenderError: a placeholder has no value (names it).
    """
    if isinstance(data, Mapping):
        return {k: fill_placeholders(v, values) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [fill_placeholders(v, values) for v in data]
    if not isinstance(data, str):
        return data
    whole = _PLACEHOLDER.fullmatch(data)
    if whole:
        return _value(whole.group(1), values)
    return _PLACEHOLDER.sub(lambda m: str(_value(m.group(1), values)), data)


def _value(key: str, values: Mapping[str, Any]) -> Any:
    if key not in values:
        raise RenderError(
            f"rendered document has the placeholder ${{{key}}} that the Image Builder driver "
            f"cannot fill (known: {', '.join(sorted(values))})"
        )
    return values[key]


def _drop_none(data: Any) -> Any:
    """Remove ``None``, empty strings, lists and dicts from nested dicts and lists, so an unset
    option (e.g. ``${kms_key_id}`` without a key) drops its field instead of sending ``null``."""
    if isinstance(data, Mapping):
        cleaned = {k: _drop_none(v) for k, v in data.items()}
        return {k: v for k, v in cleaned.items() if v not in (None, [], {}, "")}
    if isinstance(data, list | tuple):
        return [v for v in (_drop_none(v) for v in data) if v not in (None, [], {}, "")]
    return data


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


class ImageBuilderDriver:
    """Drives EC2 Image Builder for one region (the client's) and one arch per build.

    Args:
        clients: ``bake.aws.session.AwsClients`` (``imagebuilder``, ``ssm``, ``ec2`` are used).
        options: account-specific ``ImageBuilderOptions``.
        progress: called with one human-readable line per event.
        sleep: injected ``time.sleep`` (tests pass a no-op).
        clock: injected monotonic clock in seconds.
    """

    def __init__(
        self,
        clients: Any,
        options: ImageBuilderOptions,
        progress: Progress,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clients = clients
        self.options = options
        self.progress = progress
        self._sleep = sleep
        self._clock = clock

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

    def placeholder_values(self, docs: Any) -> dict[str, Any]:
        """The ``${key}`` values the driver fills into the rendered request bodies.

        Returns:
            ``instance_profile``, ``instance_types``, ``subnet_id``, ``security_group_ids``,
            ``security_group_id`` (the first), ``log_bucket``, ``log_prefix``, ``kms_key_id``,
            ``artifacts_s3``, ``region``,
            ``regions``, ``target_accounts``, ``kubernetes_version``, ``minor``, ``arch``, ``os``.
        """
        release = docs.release
        o = self.options
        return {
            "instance_profile": o.instance_profile,
            "instance_types": list(o.instance_types),
            "subnet_id": o.subnet_id,
            "security_group_ids": list(o.security_group_ids),
            "security_group_id": o.security_group_ids[0] if o.security_group_ids else None,
            "log_bucket": o.log_bucket,
            "log_prefix": o.log_prefix,
            "kms_key_id": o.kms_key_id,
            "artifacts_s3": o.artifacts_s3,
            "region": self.clients.region,
            "regions": list(self._regions()),
            "target_accounts": list(o.target_accounts),
            "kubernetes_version": release.kubernetes_version,
            "minor": release.minor,
            "arch": release.arch,
            "os": release.os,
        }

    def _regions(self) -> tuple[str, ...]:
        home = self.clients.region
        rest = [r for r in self.options.regions if r != home]
        return (home, *rest)

    def base_tags(self, release: Any) -> dict[str, str]:
        """Tags of every resource bake creates here (``bake.tags.release_tags``)."""
        return release_tags(release.kubernetes_version, release.arch, release.os)

    def ensure_resources(self, docs: Any) -> Resources:
        """Create or reuse every Image Builder resource of ``docs``; all or nothing.

        Args:
            docs: ``bake.render.ImageDocuments``.

        Returns:
            the ``Resources`` (ARNs, what was created and what reused).

        Raises:
            UsageError: bad options, unknown parent image, or (with ``artifacts_s3``) documents
                or a subnet that need the internet (before anything is created).
            RenderError: a placeholder the driver cannot fill.
            AwsError: an API call failed; what this call created was deleted first (the message
                lists anything that could not be deleted).
        """
        self.check_options()
        self.check_offline(docs)
        values = self.placeholder_values(docs)
        recipe_body = dict(docs.recipe.data or {})
        parent = recipe_body.get("parentImage")
        if isinstance(parent, str) and not _PLACEHOLDER.search(parent):
            self.check_parent_image(parent)
        created: list[tuple[str, str]] = []  # (kind, arn)
        reused: list[str] = []
        try:
            components = []
            for doc in docs.components:
                arn, new = self._ensure_component(doc, docs.release)
                components.append((doc.name, arn))
                (created.append(("component", arn)) if new else reused.append(arn))
            values = {**values, **{f"component:{n}": a for n, a in components}}
            recipe_arn, new = self._ensure_recipe(docs, values)
            (created.append(("recipe", recipe_arn)) if new else reused.append(recipe_arn))
            infra_arn, new = self._ensure_infrastructure(docs, values)
            (created.append(("infrastructure", infra_arn)) if new else reused.append(infra_arn))
            dist_arn, new = self._ensure_distribution(docs, values)
            (created.append(("distribution", dist_arn)) if new else reused.append(dist_arn))
        except BaseException as exc:
            left = self._rollback(created)
            if left and isinstance(exc, BakeError):
                raise type(exc)(
                    f"{exc.format_message()} (created and NOT removed: {', '.join(left)})"
                ) from exc
            raise
        for kind, arn in created:
            self.progress(f"created {kind} {arn}")
        for arn in reused:
            self.progress(f"reused unchanged {arn}")
        return Resources(
            components=tuple(components),
            recipe_arn=recipe_arn,
            infrastructure_arn=infra_arn,
            distribution_arn=dist_arn,
            created=tuple(a for _, a in created),
            reused=tuple(reused),
            tags={**self.base_tags(docs.release), CONTENT_TAG: docs.content_hash},
        )

    def _rollback(self, created: list[tuple[str, str]]) -> list[str]:
        """Delete what ``ensure_resources`` created, newest first; returns ARNs left behind."""
        deleters = {
            "component": ib.delete_component,
            "recipe": ib.delete_image_recipe,
            "infrastructure": ib.delete_infrastructure_configuration,
            "distribution": ib.delete_distribution_configuration,
        }
        left = []
        for kind, arn in reversed(created):
            try:
                deleters[kind](self._ib, arn)
            except BakeError:
                left.append(arn)
        return left

    def _ensure_component(self, doc: Any, release: Any) -> tuple[str, bool]:
        digest = content_sha256(doc.text)
        versions = ib.list_component_versions(self._ib, doc.name)
        latest = versions[0] if versions else None
        if latest is not None:
            current = ib.get_component(self._ib, latest["arn"])
            if (current.get("tags") or {}).get(CONTENT_TAG) == digest or current.get(
                "data"
            ) == doc.text:
                return latest["arn"], False
        version = bump_patch(latest["version"] if latest else None)
        arn = ib.create_component(
            self._ib,
            name=doc.name,
            version=version,
            data=doc.text,
            description=f"bake {doc.name} for Kubernetes {release.kubernetes_version} "
            f"{release.os} {release.arch}",
            tags={**self.base_tags(release), CONTENT_TAG: digest},
            kms_key_id=self.options.kms_key_id,
        )
        return arn, True

    def _ensure_recipe(self, docs: Any, values: Mapping[str, Any]) -> tuple[str, bool]:
        rendered = recipe_request(docs.recipe.data or {}, self.account_settings())
        body = _drop_none(fill_placeholders(rendered, values))
        name = body.pop("name", None) or docs.recipe.name
        body.pop("semanticVersion", None)
        body.pop("clientToken", None)
        tags = dict(body.pop("tags", None) or {})
        # the rendered recipe lists ${component:<name>} ARNs; without a list, use recipe order
        body["components"] = body.get("components") or [
            {"componentArn": arn} for _, arn in _component_arns(values)
        ]
        digest = content_sha256({"name": name, **body})
        versions = ib.list_recipe_versions(self._ib, name)
        latest = versions[0]["arn"] if versions else None
        if latest is not None:
            current = ib.get_image_recipe(self._ib, latest)
            if (current.get("tags") or {}).get(CONTENT_TAG) == digest:
                return latest, False
        request = {
            "name": name,
            "semanticVersion": bump_patch(latest.rsplit("/", 1)[-1] if latest else None),
            **body,
            "tags": {**tags, **self.base_tags(docs.release), CONTENT_TAG: digest},
        }
        return ib.create_image_recipe(self._ib, request), True

    def account_settings(self) -> AccountSettings:
        """The ``bake.imagebuilder_requests.AccountSettings`` of this driver's options: what
        goes into every request body (regions: the client's region first)."""
        o = self.options
        return AccountSettings(
            instance_types=tuple(o.instance_types),
            instance_profile=o.instance_profile,
            subnet_id=o.subnet_id,
            security_group_ids=tuple(o.security_group_ids),
            log_bucket=o.log_bucket,
            log_prefix=o.log_prefix,
            regions=self._regions(),
            target_accounts=tuple(o.target_accounts),
            kms_key_id=o.kms_key_id,
        )

    def infrastructure_request(self, docs: Any, values: Mapping[str, Any]) -> dict[str, Any]:
        """The Create/UpdateInfrastructureConfiguration body sent:
        ``bake.imagebuilder_requests.infrastructure_request`` for ``account_settings()``, with
        placeholders filled and unset fields dropped."""
        body = infrastructure_request(
            docs.infrastructure.data or {},
            docs.release,
            self.account_settings(),
            docs.infrastructure.name,
        )
        return _drop_none(fill_placeholders(body, values))

    def distribution_request(self, docs: Any, values: Mapping[str, Any]) -> dict[str, Any]:
        """The Create/UpdateDistributionConfiguration body sent:
        ``bake.imagebuilder_requests.distribution_request`` for ``account_settings()`` (one
        distribution per region; no ``ssmParameterConfigurations``: bake publishes to SSM itself
        after the build, with the version label), placeholders filled, unset fields dropped."""
        body = distribution_request(
            docs.distribution.data or {},
            docs.release,
            self.account_settings(),
            docs.distribution.name,
        )
        return _drop_none(fill_placeholders(body, values))

    def _ensure_infrastructure(self, docs: Any, values: Mapping[str, Any]) -> tuple[str, bool]:
        request = self.infrastructure_request(docs, values)
        arn = ib.find_infrastructure_configuration(self._ib, request["name"])
        return ib.put_infrastructure_configuration(self._ib, request, arn), arn is None

    def _ensure_distribution(self, docs: Any, values: Mapping[str, Any]) -> tuple[str, bool]:
        request = self.distribution_request(docs, values)
        arn = ib.find_distribution_configuration(self._ib, request["name"])
        return ib.put_distribution_configuration(self._ib, request, arn), arn is None

    # ------------------------------------------------------------ builds

    def start_build(self, resources: Resources) -> str:
        """Start the image build (``imagebuilder:CreateImage``); returns its build version ARN."""
        arn = ib.create_image(
            self._ib,
            recipe_arn=resources.recipe_arn,
            infrastructure_arn=resources.infrastructure_arn,
            distribution_arn=resources.distribution_arn,
            tags=dict(resources.tags),
        )
        self.progress(f"started {arn}")
        return arn

    def status(self, image_arn: str) -> BuildStatus:
        """The current ``BuildStatus`` of a build (``GetImage`` + workflow steps)."""
        image = ib.get_image(self._ib, image_arn)
        state = image.get("state") or {}
        amis = tuple(
            AmiOutput(
                region=a.get("region", ""),
                image_id=a.get("image", ""),
                account_id=a.get("accountId", ""),
                name=a.get("name", ""),
            )
            for a in (image.get("outputResources") or {}).get("amis", [])
        )
        try:
            raw_steps = ib.workflow_steps(self._ib, image_arn)
        except AwsError as exc:  # older builds / missing permission: steps are a nicety
            if exc.throttled:
                raise
            raw_steps = []
        steps = tuple(
            Step(
                name=s.get("name", ""),
                status=s.get("status", ""),
                kind=s.get("workflowType", ""),
                message=s.get("message", "") or "",
            )
            for s in raw_steps
        )
        return BuildStatus(
            arn=image_arn,
            status=state.get("status", "UNKNOWN"),
            reason=state.get("reason", "") or "",
            amis=amis,
            steps=steps,
            tags=image.get("tags") or {},
        )

    def cancel(self, image_arn: str) -> None:
        """Cancel a running build (``imagebuilder:CancelImageCreation``)."""
        ib.cancel_image_creation(self._ib, image_arn)
        self.progress(f"cancellation requested for {image_arn}")

    def wait(self, image_arn: str) -> BuildResult:
        """Poll until the build ends, reporting transitions and steps with elapsed time.

        Throttling during a poll is retried after a longer pause (up to 10 in a row).

        Returns:
            the ``BuildResult`` of an AVAILABLE build.

        Raises:
            BuildError: FAILED (reason, failing step, log location), CANCELLED or any other
                terminal status, or ``timeout_minutes`` passed (the build keeps running).
        """
        start = self._clock()
        last_status = None
        seen_steps: dict[tuple[str, str], str] = {}
        throttled = 0
        while True:
            elapsed = self._clock() - start
            try:
                current = self.status(image_arn)
                throttled = 0
            except AwsError as exc:
                if not exc.throttled or throttled >= 10:
                    raise
                throttled += 1
                self.progress(f"[{_fmt(elapsed)}] throttled by Image Builder; polling slower")
                self._sleep(self.options.poll_seconds * 2)
                continue
            if current.status != last_status:
                self.progress(f"[{_fmt(elapsed)}] {current.status}")
                last_status = current.status
            for s in current.steps:
                key = (s.kind, s.name)
                if seen_steps.get(key) != s.status:
                    seen_steps[key] = s.status
                    self.progress(f"[{_fmt(elapsed)}]   {s.kind.lower()} step {s.name}: {s.status}")
            if current.finished:
                return self._finish(current, elapsed)
            if elapsed >= self.options.timeout_minutes * 60:
                raise BuildError(
                    f"build {image_arn} still {current.status} after "
                    f"{self.options.timeout_minutes} "
                    f"min; it keeps running: `bake ami wait {image_arn}` or "
                    f"`bake ami cancel {image_arn}`"
                )
            self._sleep(self.options.poll_seconds)

    def _finish(self, current: BuildStatus, elapsed: float) -> BuildResult:
        if current.status == "AVAILABLE":
            for ami in current.amis:
                self.progress(f"AMI {ami.image_id} in {ami.region}")
            return BuildResult(current.arn, current.amis, elapsed, current)
        if current.status == "FAILED":
            step = current.failed_step
            where = f" at {step.kind.lower()} step {step.name}" if step else ""
            detail = f" ({step.message})" if step and step.message else ""
            raise BuildError(
                f"Image Builder build failed{where}: "
                f"{current.reason or 'no reason given'}{detail}; "
                f"logs: {log_location(self.options, current)}; nothing was published"
            )
        raise BuildError(
            f"Image Builder build {current.arn} ended {current.status}; nothing was published"
        )

    # ------------------------------------------------------------ what was built

    def built_image(self, result: BuildResult, release: Any) -> BuiltImage:
        """The ``bake.publish.BuiltImage`` of an AVAILABLE build (what ``publish`` takes).

        Args:
            result: an AVAILABLE ``BuildResult``.
            release: the ``bake.catalog.Release`` that was baked.

        Returns:
            one ``BuiltAmi`` per AMI the build distributed (copies in target accounts carry
            their account, which ``publish`` leaves alone); build id from the image ARN; the
            ``bake:image-builder-arn`` tag; logs at the build's S3 log location.
        """
        return BuiltImage.of(
            release,
            result.arn.rsplit(":image/", 1)[-1],
            amis=tuple(
                BuiltAmi(region=a.region, image_id=a.image_id, account_id=a.account_id)
                for a in result.amis
            ),
            account_id=_account_of(result.arn),
            logs=log_location(self.options, result.status),
            extra_tags={"bake:image-builder-arn": result.arn},
        )

def _component_arns(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(k.split(":", 1)[1], v) for k, v in values.items() if k.startswith("component:")]


def _account_of(arn: str) -> str:
    parts = arn.split(":")
    return parts[4] if len(parts) > 4 else ""


def _fmt(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def wait_interactive(
    driver: ImageBuilderDriver, image_arn: str, confirm: Callable[[str], bool]
) -> BuildResult:
    """``driver.wait`` with Ctrl-C handling: asks ``confirm`` whether to cancel the build.

    Args:
        confirm: e.g. ``lambda q: click.confirm(q, default=False)``.

    Raises:
        BuildError: as ``wait``; on Ctrl-C, after cancelling or leaving the build running.
    """
    try:
        return driver.wait(image_arn)
    except KeyboardInterrupt:
        if confirm(f"cancel the build {image_arn}?"):
            driver.cancel(image_arn)
            raise BuildError(f"build {image_arn} cancelled; nothing was published") from None
        raise BuildError(
            f"stopped waiting; the build continues: `bake ami wait {image_arn}` or "
            f"`bake ami cancel {image_arn}`"
        ) from None


@dataclass(frozen=True)
class Outcome:
    """What one Image Builder bake did.

    Attributes:
        image_arn: the image build version ARN.
        resources: the Image Builder resources used.
        result: the AVAILABLE ``BuildResult``, or ``None`` with ``wait=False``.
        publications: one dict per region (``region``, ``image_id``, ``ssm_parameter``,
            ``parameter_version``, ``label``); empty with ``wait=False``.
    """

    image_arn: str
    resources: Resources
    result: BuildResult | None = None
    publications: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "image_arn": self.image_arn,
            "created": list(self.resources.created),
            "reused": list(self.resources.reused),
            "amis": [vars(a) for a in self.result.amis] if self.result else [],
            "elapsed_seconds": self.result.elapsed_seconds if self.result else None,
            "publications": list(self.publications),
        }


def bake_with_image_builder(
    driver: ImageBuilderDriver,
    docs: Any,
    ssm_prefix: str = "/bake/k8s",
    confirm: Callable[[str], bool] | None = None,
) -> Outcome:
    """The whole AWS bake of one arch: resources, build, wait, publish (the ``bake ami`` core).

    Args:
        driver: a configured ``ImageBuilderDriver``.
        docs: ``bake.render.ImageDocuments`` for one release and arch.
        ssm_prefix: SSM hierarchy root for publication.
        confirm: asked on Ctrl-C whether to cancel (``None``: never cancel, just stop waiting).

    Returns:
        the ``Outcome``; with ``driver.options.wait`` false, right after the build started.

    Raises:
        UsageError, RenderError, AwsError: before the build (nothing left half-created).
        BuildError: the build failed or was cancelled (nothing published).
    """
    resources = driver.ensure_resources(docs)
    arn = driver.start_build(resources)
    if not driver.options.wait:
        driver.progress(f"not waiting; attach with: bake ami wait {arn}")
        return Outcome(arn, resources)
    result = wait_interactive(driver, arn, confirm or (lambda question: False))
    publications = publish(
        driver.clients, driver.built_image(result, docs.release), ssm_prefix, driver.progress
    )
    return Outcome(arn, resources, result, tuple(p.to_json() for p in publications))
