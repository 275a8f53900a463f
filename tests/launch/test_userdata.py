"""Cloud-init user-data: cloud-init's own schema, the node config schema, and the rules of
issue 5 (only writes /etc/bake/node.yaml and starts the agent; no packages, downloads or
secrets; under the EC2 limit of 16384 bytes)."""

from __future__ import annotations

import re

import jsonschema
import pytest
import yaml

from bake.launch import (
    API_HOST_PLACEHOLDER,
    ROLES,
    SNAPSHOT_BUCKET_PLACEHOLDER,
    render_user_data,
)

VARIANTS = ["airgapped", "nat", "existing-vpc"]
EXAMPLE_HOST = "bake-demo-api-0123456789.elb.us-east-1.amazonaws.com"
FORBIDDEN = re.compile(
    r"\b(packages|package_update|package_upgrade|apt|apt-get|yum|dnf|curl|wget|snap|"
    r"password|passwd|secret|token|private_key|BEGIN [A-Z ]*PRIVATE KEY)\b",
    re.IGNORECASE,
)


def cases():
    return [(v, r) for v in VARIANTS for r in ROLES]


@pytest.mark.parametrize(("variant", "role"), cases())
def test_user_data_passes_cloud_init_schema(specs, cloud_config_schema, variant, role):
    text = render_user_data(specs[variant], role, EXAMPLE_HOST)
    assert text.startswith("#cloud-config\n")
    jsonschema.validate(yaml.safe_load(text), cloud_config_schema)


@pytest.mark.parametrize(("variant", "role"), cases())
def test_node_yaml_passes_the_node_config_schema(specs, node_schema, variant, role):
    data = yaml.safe_load(render_user_data(specs[variant], role, EXAMPLE_HOST,
                                           "bake-demo-snapshotbucket-1a2b3c4d5e6f"))
    (entry,) = data["write_files"]
    assert entry["path"] == "/etc/bake/node.yaml"
    node = yaml.safe_load(entry["content"])
    jsonschema.validate(node, node_schema)
    assert node["role"] == role
    assert node["controlPlaneEndpoint"] == f"{EXAMPLE_HOST}:6443"
    if role == "control-plane":  # only control planes snapshot etcd, into the stack's bucket
        assert node["etcdSnapshots"] == {
            "bucket": "bake-demo-snapshotbucket-1a2b3c4d5e6f", "prefix": "etcd-snapshots/",
            "intervalMinutes": 30, "keepHourlyHours": 48, "keepDailyDays": 30}
        assert node["certificateRenewBeforeDays"] == 90
    else:
        assert "etcdSnapshots" not in node and "certificateRenewBeforeDays" not in node


@pytest.mark.parametrize(("variant", "role"), cases())
def test_user_data_does_only_its_job(rendered, variant, role):
    text = rendered[variant].user_data[role]
    assert len(text.encode()) <= 16384
    data = yaml.safe_load(text)
    assert set(data) == {"write_files", "runcmd"}
    assert [f["path"] for f in data["write_files"]] == ["/etc/bake/node.yaml"]
    assert data["runcmd"] == [["systemctl", "start", "--no-block", "bake-node.service"]]
    assert not FORBIDDEN.search(text), FORBIDDEN.search(text)
    # the only CloudFormation substitutions: the NLB's DNS name, and the snapshot bucket's name
    # on control planes
    assert re.findall(r"\$\{[^}]*\}", text) == [API_HOST_PLACEHOLDER] + (
        [SNAPSHOT_BUCKET_PLACEHOLDER] if role == "control-plane" else [])


def test_oversized_user_data_is_refused(specs, monkeypatch):
    from bake import launch
    from bake.errors import RenderError

    monkeypatch.setattr(launch, "USER_DATA_LIMIT", 100)
    with pytest.raises(RenderError, match="over EC2's 100"):
        render_user_data(specs["airgapped"], "worker")
