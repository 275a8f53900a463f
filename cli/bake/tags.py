"""The tags bake puts on what it creates, named once.

Every AWS resource bake creates (AMIs, Image Builder components, recipes, infrastructure and
distribution configurations) carries ``release_tags``; content identity is ``CONTENT_TAG``
(SHA-256 hex) on every one of them: of a component's text, of a recipe's canonical request, and
of the whole document set on the AMI. Tags never hold secrets (EC2 tags are readable by anyone
with ``ec2:DescribeTags``).
"""

from __future__ import annotations

#: SHA-256 hex of the content a resource was made from (``bake.render.ImageDocuments`` on AMIs)
CONTENT_TAG = "bake:content-sha256"
#: ``true`` on everything bake manages (what ``bake images`` and the cleanups select on)
MANAGED_TAG = "bake:managed"


def release_tags(kubernetes_version: str, arch: str, os_name: str) -> dict[str, str]:
    """The tags of every resource bake creates for one release.

    Args:
        kubernetes_version: e.g. ``1.30.12``.
        arch: ``amd64`` or ``arm64``.
        os_name: e.g. ``debian-12``.

    Returns:
        ``{"bake:managed": "true", "bake:kubernetes-version": ..., "bake:arch": ...,
        "bake:os": ...}`` in that order.
    """
    return {
        MANAGED_TAG: "true",
        "bake:kubernetes-version": kubernetes_version,
        "bake:arch": arch,
        "bake:os": os_name,
    }
