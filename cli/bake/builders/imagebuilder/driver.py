"""``ImageBuilderDriver``: the resources of a bake (components, recipe, configurations), one build
and its wait, and the ``BuiltImage`` it hands to ``bake.publish``."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from bake.aws import imagebuilder as ib
from bake.builders.imagebuilder.model import (
    AmiOutput,
    BuildResult,
    BuildStatus,
    ImageBuilderOptions,
    Progress,
    Resources,
    Step,
    log_location,
    mmss,
)
from bake.builders.imagebuilder.preflight import Preflight
from bake.builders.imagebuilder.requests import (
    _PLACEHOLDER,
    _account_of,
    _component_arns,
    _drop_none,
    content_sha256,
    fill_placeholders,
)
from bake.errors import AwsError, BakeError, BuildError
from bake.imagebuilder_requests import (
    AccountSettings,
    bump_patch,
    distribution_request,
    infrastructure_request,
    recipe_request,
)
from bake.publish import BuiltAmi, BuiltImage
from bake.tags import CONTENT_TAG, release_tags


class ImageBuilderDriver(Preflight):
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
                self.progress(f"[{mmss(elapsed)}] throttled by Image Builder; polling slower")
                self._sleep(self.options.poll_seconds * 2)
                continue
            if current.status != last_status:
                self.progress(f"[{mmss(elapsed)}] {current.status}")
                last_status = current.status
            for s in current.steps:
                key = (s.kind, s.name)
                if seen_steps.get(key) != s.status:
                    seen_steps[key] = s.status
                    self.progress(f"[{mmss(elapsed)}]   {s.kind.lower()} step {s.name}: {s.status}")
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
