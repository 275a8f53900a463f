"""The node agent checks of the shipped testinfra suite, against the fake image tree.

The fake image is baked without the agent, so its manifest has no ``agent`` entry: the agent
checks pass there without skipping, but catch a stray agent the manifest does not list; and a
manifest that lists the agent fails every agent check while the image lacks it. The passing
case with the agent baked in is the real local bake (tests/e2e, ``bake verify``).
"""

from __future__ import annotations

import json

import pytest
from tests.verify.conftest import needs_root

from bake.verify import run_suite

pytestmark = [pytest.mark.root, needs_root]


def test_stray_agent_without_manifest_entry_fails_one_check(image_copy, tmp_path):
    command = image_copy / "usr/sbin/bake-node"
    command.parent.mkdir(parents=True, exist_ok=True)
    command.write_text("#!/usr/bin/python3\n")
    result = run_suite(f"chroot://{image_copy}", tmp_path / "logs")
    assert [test_id for test_id, _ in result.failures] == ["test_agent_manifest_entry"]
    assert "/usr/sbin/bake-node is in the image but" in result.failures[0][1]


def test_manifest_listing_a_missing_agent_fails_the_agent_checks(image_copy, tmp_path):
    path = image_copy / "etc/bake/image-manifest.json"
    doc = json.loads(path.read_text())
    doc["agent"] = {"name": "bake-node", "version": "0.1.0", "url": "http://127.0.0.1:1/x",
                    "sha256": "a" * 64}
    path.write_text(json.dumps(doc))
    result = run_suite(f"chroot://{image_copy}", tmp_path / "logs")
    failed = sorted(test_id for test_id, _ in result.failures)
    assert failed == [
        "test_agent_command",
        "test_agent_importable",
        "test_agent_manifests_present",
        "test_agent_unit_enabled[bake-node-certs.timer-/etc/systemd/system/timers.target.wants]",
        "test_agent_unit_enabled[bake-node-rotate.timer-/etc/systemd/system/timers.target.wants]",
        "test_agent_unit_enabled[bake-node-snapshot.timer-/etc/systemd/system/timers.target.wants]",
        "test_agent_unit_enabled[bake-node.service-/etc/systemd/system/multi-user.target.wants]",
        "test_every_baked_addon_has_its_manifests",  # the add-ons' templates come with it
    ]
    reasons = dict(result.failures)
    assert "/usr/sbin/bake-node is missing" in reasons["test_agent_command"]
