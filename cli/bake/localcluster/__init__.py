"""``bake launch --local``: the baked image as a cluster of qemu VMs on this machine.

The same stack ``bake launch`` deploys is deployed into the embedded AWS (moto); its Auto
Scaling groups' instances become VMs booted from copy-on-write overlays of the baked disk, each
with a NoCloud seed whose user-data is byte for byte what its launch template carries. The VMs
share a private segment shaped like the VPC (a bridge in a network namespace bake creates, with
the stack's subnet addresses), where bake plays the VPC's parts: the DHCP and DNS resolver at
the VPC base + 2 (dnsmasq), the instance metadata service at 169.254.169.254 (IMDSv2), the
interface endpoints of the AWS APIs (a TLS endpoint forwarding to the embedded AWS) and the
internal network load balancer in front of the control planes (haproxy, health-checking 6443).

Modules: ``plan`` (addresses and names, pure), ``netns`` (entering a network namespace),
``gateway`` (IMDSv2 and the endpoint proxy, one process), ``pki`` (the local CA),
``vm`` (overlays, seeds, qemu), ``boot`` (what a VM boots with: overlay, seed, vendor-data),
``hostnet`` (dnsmasq, haproxy and the namespace's network), ``state`` (the recorded cluster,
stopping only recorded processes), ``service`` (launch, sync, follow, destroy), ``guest`` (the
qemu guest agent), ``runcommand`` (SSM Run Command and the lifecycle hook on VMs), ``drill``
(the drills' harness), ``drills_control_plane`` and ``drills_join`` (the failure drills) and
``drills`` (``run_drill``), ``upgrade`` (``bake upgrade --local``: the roll's AWS parts on VMs).
"""

# the failure drills of ``bake drill --local`` (here, so the CLI lists them without imports)
DRILLS = ("control-plane-replace", "control-plane-roll", "control-plane-upgrade",
          "quorum-guard", "stale-learner", "embedded-aws-outage", "worker-after-token-expiry",
          "leader-dies-mid-init")
# drills that launch the cluster themselves (they break it while it forms)
FRESH_CLUSTER_DRILLS = ("leader-dies-mid-init",)
