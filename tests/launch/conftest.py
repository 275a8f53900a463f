"""Fixtures for the launch tests: example cluster files, rendered documents, validators.

``cloud_config_schema`` is cloud-init's own JSON schema, taken from the Debian ``cloud-init``
package WITHOUT installing it: ``apt-get download`` into pytest's cache dir, ``dpkg-deb -x``,
file ``cloudinit/config/schemas/schema-cloud-config-v1.json``; cached across runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from bake.cluster import ClusterSpec, init_text, parse_cluster

HERE = Path(__file__).parent
REPO = HERE.parent.parent


def example_specs() -> dict[str, ClusterSpec]:
    """The three shapes every artifact is rendered in: id -> spec."""
    base = yaml.safe_load(init_text())
    nat = yaml.safe_load(init_text(name="edge", region="eu-west-1", minor="1.31"))
    nat["network"]["airGapped"] = False
    nat["workers"]["instanceTypes"] = ["m6i.large", "m7i.large"]
    nat["addons"]["awsCloudController"] = True
    nat["addons"]["ebsCsi"] = {"defaultStorageClass": "gp3"}
    nat["addons"]["monitoring"] = {"persistentVolume": True, "retentionDays": 30}
    nat["addons"]["ingressNginx"] = {"serviceType": "LoadBalancer"}
    nat["kubernetesNetwork"]["cni"] = "calico"
    existing = yaml.safe_load(init_text(name="prod", region="us-west-2"))
    existing["network"].update(
        mode="existing",
        vpcCIDR="172.20.0.0/16",
        vpcId="vpc-0123456789abcdef0",
        subnetIds=[
            "subnet-0aaaaaaaaaaaaaaaa",
            "subnet-0bbbbbbbbbbbbbbbb",
            "subnet-0cccccccccccccccc",
        ],
        allowedApiCIDRs=["172.20.0.0/16", "192.168.10.0/24"],
    )
    existing["controlPlane"]["count"] = 5
    existing["addons"] = {"clusterAutoscaler": False, "localPath": {"defaultStorageClass": True},
                          "ingressNginx": True}
    existing["kubernetesNetwork"].update(cni="cilium", kubeProxyReplacement=True)
    existing["registry"] = {"ecrCredentialProvider": True}
    return {
        "airgapped": parse_cluster(base, "airgapped.yaml"),
        "nat": parse_cluster(nat, "nat.yaml"),
        "existing-vpc": parse_cluster(existing, "existing.yaml"),
    }


@pytest.fixture(scope="session")
def specs() -> dict[str, ClusterSpec]:
    return example_specs()


@pytest.fixture(scope="session")
def rendered(specs):
    """id -> ClusterDocuments for every example spec."""
    from bake.launch import render_cluster

    return {key: render_cluster(spec) for key, spec in specs.items()}


@pytest.fixture(scope="session")
def node_schema() -> dict:
    """The node config JSON schema owned by the node agent (cli/bake_node/schema)."""
    path = REPO / "cli" / "bake_node" / "schema" / "node-config.schema.json"
    if not path.exists():
        pytest.skip("cli/bake_node/schema/node-config.schema.json not written yet")
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def cloud_config_schema(request) -> dict:
    """cloud-init's cloud-config JSON schema from the Debian package (downloaded, not installed)."""
    cache = Path(request.config.cache.mkdir("cloud-init-schema"))
    target = cache / "schema-cloud-config-v1.json"
    if not target.exists():
        if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
            pytest.skip(
                "apt-get/dpkg-deb unavailable: cannot fetch cloud-init's schema from Debian"
            )
        work = cache / "work"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        got = subprocess.run(
            ["apt-get", "download", "cloud-init"], cwd=work, capture_output=True, text=True
        )
        debs = list(work.glob("cloud-init_*.deb"))
        if got.returncode != 0 or not debs:
            pytest.skip(f"apt-get download cloud-init failed: {got.stderr.strip()[-200:]}")
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(work / "x")], check=True)
        found = list((work / "x").rglob("cloudinit/config/schemas/schema-cloud-config-v1.json"))
        assert found, "cloud-init package has no schema-cloud-config-v1.json"
        shutil.copy(found[0], target)
        shutil.rmtree(work, ignore_errors=True)
    return json.loads(target.read_text())


@pytest.fixture
def cluster_file(tmp_path):
    """A fresh ``bake init`` cluster file (``cluster.yaml``) in the test's temporary directory."""
    from bake.cluster import init_text

    path = tmp_path / "cluster.yaml"
    path.write_text(init_text())
    return path


@pytest.fixture
def embedded(aws):
    """The moto server with the AMI parameter `bake ami` would have published, and bake's
    shims of moto's CloudFormation gaps: ``(aws, ami id)``."""
    import boto3

    from bake.sandbox.compat import moto_cloudformation_shims

    ec2 = boto3.client("ec2", endpoint_url=aws.endpoint, region_name="us-east-1")
    ssm = boto3.client("ssm", endpoint_url=aws.endpoint, region_name="us-east-1")
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ssm.put_parameter(Name="/bake/k8s/1.30/debian-12/amd64/image_id", Value=ami, Type="String")
    with moto_cloudformation_shims():
        yield aws, ami
