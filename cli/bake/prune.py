"""``bake prune``: deregister older bake AMIs and delete their snapshots, keeping the newest.

Images are bake's own (``bake:managed=true``, owned by this account), grouped by Kubernetes
minor, OS and arch (tags ``bake:kubernetes-version``, ``bake:os``, ``bake:arch``); in each group
the ``keep`` newest (EC2 ``CreationDate``) stay. An image that any SSM parameter under the
prefix points to is never removed, whatever its age. ``dry_run`` lists what would go.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bake.errors import UsageError

Progress = Callable[[str], None]


@dataclass(frozen=True)
class PruneOptions:
    """``keep``: newest images kept per (minor, os, arch), at least 1; ``ssm_prefix``: SSM
    hierarchy whose image ids are protected; ``dry_run``: change nothing."""

    keep: int
    ssm_prefix: str = "/bake/k8s"
    dry_run: bool = False


@dataclass(frozen=True)
class PruneDecision:
    """One image: ``image_id``, ``name``, ``group`` (minor/os/arch), ``created``, ``action``
    (``keep``, ``protected`` or ``delete``), ``snapshots`` deleted (empty for kept or dry
    runs) and ``reason``."""

    image_id: str
    name: str
    group: str
    created: str
    action: str
    reason: str
    snapshots: tuple[str, ...] = ()

    def to_json(self) -> dict:
        """JSON-ready dict."""
        return {**vars(self), "snapshots": list(self.snapshots)}


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def plan_prune(images: list[dict], protected: set[str], keep: int) -> list[PruneDecision]:
    """Decide, without any AWS call, what to keep and what to delete.

    Args:
        images: EC2 ``Image`` dicts with ``TagMap`` (``bake.aws.ec2.describe_bake_images``).
        protected: image ids an SSM parameter points to.
        keep: newest images kept per group.

    Returns:
        one decision per image, newest first within each group.
    """
    groups: dict[str, list[dict]] = {}
    for image in images:
        tags = image.get("TagMap", {})
        group = "/".join(
            (
                _minor(tags.get("bake:kubernetes-version", "?")),
                tags.get("bake:os", "?"),
                tags.get("bake:arch", "?"),
            )
        )
        groups.setdefault(group, []).append(image)
    decisions = []
    for group, members in sorted(groups.items()):
        members.sort(key=lambda i: i.get("CreationDate", ""), reverse=True)
        for rank, image in enumerate(members):
            image_id = image["ImageId"]
            if image_id in protected:
                action, reason = "protected", "an SSM parameter points to it"
            elif rank < keep:
                action, reason = "keep", f"among the {keep} newest of {group}"
            else:
                action, reason = "delete", f"older than the {keep} newest of {group}"
            decisions.append(
                PruneDecision(
                    image_id,
                    image.get("Name", ""),
                    group,
                    image.get("CreationDate", ""),
                    action,
                    reason,
                )
            )
    return decisions


def prune(clients, options: PruneOptions, progress: Progress) -> list[PruneDecision]:
    """Deregister the older bake AMIs (and their snapshots) of the account and region.

    Args:
        clients: ``bake.aws.session.AwsClients`` (``ec2``, ``ssm``).
        options: see ``PruneOptions``.
        progress: one line per image removed (or that would be).

    Returns:
        every decision, deleted images with the snapshot ids removed.

    Raises:
        UsageError: ``keep`` < 1.
        AwsError: an EC2/SSM call failed; images already removed are reported by ``progress``.
    """
    from bake.aws import ec2, ssm

    if options.keep < 1:
        raise UsageError("--keep must be at least 1 (the newest image of each version stays)")
    protected = {p.value for p in ssm.list_by_path(clients.client("ssm"), options.ssm_prefix)}
    ec2_client = clients.client("ec2")
    decisions = plan_prune(ec2.describe_bake_images(ec2_client), protected, options.keep)
    out = []
    for d in decisions:
        if d.action == "delete":
            if options.dry_run:
                progress(f"would deregister {d.image_id} ({d.name}, {d.created})")
            else:
                snapshots = ec2.deregister_image(ec2_client, d.image_id)
                progress(
                    f"deregistered {d.image_id} ({d.name}); deleted snapshots "
                    f"{', '.join(snapshots) or 'none'}"
                )
                d = PruneDecision(**{**vars(d), "snapshots": tuple(snapshots)})
        out.append(d)
    return out
