"""The commented starter cluster file ``bake init`` writes (``init_text``)."""

from __future__ import annotations

import yaml

from bake.cluster.parse import parse_cluster

INIT_TEXT = """\
# bake cluster file (apiVersion bake.cluster/v1). Check it with `bake validate -f cluster.yaml`,
# review the CloudFormation with `bake render cluster -f cluster.yaml -o out/`,
# deploy with `bake launch -f cluster.yaml`.
apiVersion: bake.cluster/v1
name: {name}                       # [a-z0-9-], 2-28 chars; AWS names start with bake-<name>
region: {region}
kubernetes: "{minor}"               # the Kubernetes minor the AMI was baked for
os: debian-12                      # debian-12 | debian-13 | ubuntu-22.04 | ubuntu-24.04 | al2023
arch: amd64                        # amd64 | arm64
image:
  # SSM parameter holding the AMI id (`bake ami` publishes <prefix>/<minor>/<os>/<arch>/image_id)
  ssmParameter: /bake/k8s/{minor}/debian-12/amd64/image_id
network:
  mode: create                     # create: new VPC, 3 private subnets | existing: see below
  vpcCIDR: 10.0.0.0/16
  # vpcId: vpc-0123456789abcdef0   # mode: existing only
  # subnetIds: [subnet-0aaa..., subnet-0bbb..., subnet-0ccc...]   # private subnets, 3 AZs
  airGapped: true                  # no internet/NAT gateway; VPC endpoints for AWS APIs
  allowedApiCIDRs:                 # who may reach the API server (TCP 6443); never 0.0.0.0/0
    - 10.0.0.0/8
controlPlane:
  count: 3                         # odd: 1, 3, 5 or 7 (etcd quorum)
  instanceType: m6i.large
  volumeSizeGiB: 40
workers:
  min: 1
  max: 5
  desired: 2
  instanceTypes: [m6i.large]
  volumeSizeGiB: 40
  # kubelet:                       # optional, also under controlPlane; applied at registration
  #   maxPods: 110                 # 10-250
  #   kubeReserved: {{cpu: 80m, memory: 1465Mi}}   # default: computed as the EKS AMI does
  #   systemReserved: {{cpu: 100m, memory: 100Mi}}
  #   evictionHard: {{memory.available: 100Mi, nodefs.available: 10%}}
  #   labels: {{node.kubernetes.io/pool: general}}
  #   taints: ["dedicated=batch:NoSchedule"]
kubernetesNetwork:
  podCIDR: 10.244.0.0/16
  serviceCIDR: 10.96.0.0/12
  cni: flannel                     # flannel, calico or cilium (all baked into the image)
  # kubeProxyReplacement: true     # cilium only: it serves Services, kubeadm installs no kube-proxy
addons:                            # applied by the first control plane after the CNI, from the
                                   # images and manifests baked in (`bake ami --addons`)
  metricsServer: true              # the metrics API: kubectl top, HorizontalPodAutoscaler
  clusterAutoscaler: true          # sizes the worker group between workers.min and max
  localPath: false                 # or {{defaultStorageClass: true}}: volumes on the node's disk
  awsCloudController: false        # nodes from EC2, Services of type LoadBalancer
  ebsCsi: false                    # or {{defaultStorageClass: gp3}}: encrypted EBS volumes, on
                                   # the cluster key (needs awsCloudController)
  monitoring: false                # or {{persistentVolume: true, retentionDays: 15}}: Prometheus,
                                   # node-exporter, kube-state-metrics, Grafana
  ingressNginx: false              # or {{serviceType: NodePort}} (30080/30443) or LoadBalancer
                                   # (an internal NLB; needs awsCloudController): IngressClass
                                   # nginx; ingress-nginx is retired upstream (no fixes after
                                   # March 2026)
bootstrapToken:
  ttlMinutes: 30                   # bootstrap token lifetime (15-1440); rotated at half of it
etcdSnapshots:                     # control planes snapshot etcd to S3 (SSE-KMS, cluster key)
  enabled: true
  intervalMinutes: 30              # 5-1440
  keepHourlyHours: 48              # the newest of each hour, for this many hours
  keepDailyDays: 30                # the newest of each day, for this many days
certificates:
  renewBeforeDays: 90              # control planes renew kubeadm's 1-year certificates (7-300)
# registry:                        # mirrors for the images your workloads pull (air-gapped)
#   mirrors:
#     docker.io: [https://registry.internal.example]
#     quay.io: [https://quay-mirror.internal.example:5000]
#   caBundle: |                    # the mirrors' CA, PEM: certificates only (user-data is public)
#     -----BEGIN CERTIFICATE-----
#     ...
#   ecrCredentialProvider: true    # pull from this account's ECR with the instance profile (needs
#                                  # an image baked with checksums.ecr-credential-provider pinned)
"""


# `bake init --local`: the same cluster, sized for VMs on one machine (`bake launch --local`)
LOCAL_TEXT = """\
local:                             # `bake launch --local`: this cluster as VMs on this machine
  vmMemoryMiB: 1024                # memory of each VM (ignored on AWS)
"""


def init_text(
    name: str = "demo", region: str = "us-east-1", minor: str = "1.30", local: bool = False
) -> str:
    """The commented starter ``cluster.yaml`` that ``bake init`` writes.

    Args:
        name, region, minor: values filled in (checked like the file itself).
        local: sized for ``bake launch --local``: 3 control planes and 2 workers of a small
            instance type (t3.medium), a fixed worker group (so no Cluster Autoscaler), plus
            the ``local`` section.

    Returns:
        YAML text that ``parse_cluster`` accepts.

    Raises:
        ClusterFileError: an argument is invalid (names the field).
    """
    text = INIT_TEXT.format(name=name, region=region, minor=minor)
    if local:
        text = (text.replace("instanceType: m6i.large", "instanceType: t3.medium")
                .replace("instanceTypes: [m6i.large]", "instanceTypes: [t3.medium]")
                .replace("  min: 1\n", "  min: 2\n").replace("  max: 5\n", "  max: 2\n")
                .replace("  clusterAutoscaler: true          # sizes the worker group between "
                         "workers.min and max",
                         "  clusterAutoscaler: false         # VMs on one machine: a fixed group")
                + LOCAL_TEXT)
    parse_cluster(yaml.safe_load(text), "cluster.yaml")
    return text
