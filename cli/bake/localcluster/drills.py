"""Failure drills on a local VM cluster (``bake drill --local -f cluster.yaml NAME``).

Each drill breaks the running cluster the way AWS would, lets the product's own code recover
it, and checks the cluster came back: etcd has exactly the expected started members, all
healthy, no learner; every instance of the groups has a joined node agent; nothing was lost
from the cluster table or the SSM parameters. It returns a ``DrillResult`` (what it did, what
it checked, the seconds to recover) that ``bake drill`` prints and writes as JSON.

- ``control-plane-replace``: the terminating lifecycle hook of the control-plane group, as
  EventBridge delivers it, handed to the very Lambda handler bake deploys
  (``bake.lambdas.etcd_member_cleanup``); its SSM Run Command runs on a healthy control-plane
  VM (``runcommand.LocalRunCommand``), its ``complete_lifecycle_action`` lets the group
  terminate the instance and launch a replacement (``runcommand.LifecycleGroup``), which boots
  from the image and joins. The member must be gone before the VM is.
- ``control-plane-roll``: every control plane replaced, one at a time, with quorum checked
  every 2 s throughout.
- ``control-plane-upgrade``: ``bake upgrade`` of the control planes to the next Kubernetes
  minor (its local image baked first): each replaced by a VM of the new image, one surge
  instance at a time, gated on etcd, with quorum checked every 2 s throughout; kube-proxy
  follows, the workers are left running.
- ``quorum-guard``: one control plane frozen (its VM paused: down, not gone), then a second one
  terminated: the Lambda must refuse the removal (quorum) and still complete the lifecycle
  action within its bounded wait; the frozen one then resumes, the replacement joins and the
  agent's own reconcile removes the gone member.
- ``stale-learner``: an unstarted etcd learner left by a control plane that died between
  ``member add`` and etcd's start (cluster-api #13221) is cleaned up by the next join (a
  control-plane replacement): its pre-join reconcile removes learners that never started.
- ``leader-dies-mid-init`` (on a new cluster it launches): the control plane holding the lease
  is killed inside ``kubeadm init``; another takes over after the lease expires (reset, init),
  the crashed instance is replaced, the cluster forms.
- ``embedded-aws-outage``: a worker is added and, once its agent runs, the embedded AWS is
  paused for 60 s (SIGSTOP of bake's own moto server): the join resumes on botocore's retries,
  with no second init and no secret written twice.
- ``worker-after-token-expiry``: the first bootstrap token published to SSM has expired (the
  drill waits for it when the cluster is younger than the cluster file's
  ``bootstrapToken.ttlMinutes``); kubeadm on a control plane no longer lists it, the published
  token is a rotated one, and a worker added now still joins.

Etcd is read the way the Lambda reads it: its ``etcdctl`` command, run inside a control-plane
VM through the guest agent. Only processes bake started are signalled, each by recorded PID.

The package's drill code: ``drill`` (the harness: ``DrillResult``, ``Drill``),
``drills_control_plane`` and ``drills_join`` (the drills), and this module (``run_drill``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from bake.errors import UsageError
from bake.localcluster import DRILLS, FRESH_CLUSTER_DRILLS
from bake.localcluster.drill import Drill, DrillResult, Echo
from bake.localcluster.drills_control_plane import (
    drill_control_plane_replace,
    drill_control_plane_roll,
    drill_control_plane_upgrade,
    drill_leader_dies_mid_init,
    drill_quorum_guard,
    drill_stale_learner,
)
from bake.localcluster.drills_join import (
    drill_embedded_aws_outage,
    drill_worker_after_token_expiry,
)
from bake.localcluster.service import LocalOptions
from bake.localcluster.state import read_state

__all__ = ["DrillResult", "run_drill"]


_RUNNERS = {  # the drills on a running cluster, in the order of DRILLS
    "control-plane-replace": drill_control_plane_replace,
    "control-plane-roll": drill_control_plane_roll,
    "control-plane-upgrade": drill_control_plane_upgrade,
    "quorum-guard": drill_quorum_guard,
    "stale-learner": drill_stale_learner,
    "embedded-aws-outage": drill_embedded_aws_outage,
    "worker-after-token-expiry": drill_worker_after_token_expiry,
}


def run_drill(options: LocalOptions, clients, echo: Echo, name: str,
              launch: Callable[[], Any] | None = None) -> DrillResult:
    """Run drill ``name`` against the running local cluster and write its result.

    Args:
        options: the cluster (``LocalOptions``; ``timeout_s`` bounds each wait for joins).
        clients: the embedded AWS's ``AwsClients``.
        echo: one line of progress.
        name: one of ``DRILLS``.
        launch: for ``leader-dies-mid-init`` (``FRESH_CLUSTER_DRILLS``), which needs a cluster
            that is still forming: deploys the stack and boots the VMs without waiting
            (``service.launch_local(wait=False)``); no cluster may be running.

    Returns:
        the ``DrillResult`` (also written to ``<cluster dir>/drills/<name>-<time>.json``).

    Raises:
        UsageError: unknown drill, or no local cluster, or the cluster is not healthy before
            the drill (it would prove nothing).
    """
    if name not in DRILLS:
        raise UsageError(f"unknown drill {name!r}; drills: {', '.join(DRILLS)}")
    result = DrillResult(name)
    d = Drill(options, clients, echo, result)
    fresh = name in FRESH_CLUSTER_DRILLS
    if fresh:
        if read_state(options.data_dir, options.spec.name) is not None or launch is None:
            raise UsageError(f"drill {name} forms a new cluster: `bake destroy --local -f "
                             f"{options.spec.source}` first")
    else:
        d.state()
        problems = d.healthy()
        if problems:
            raise UsageError(f"the cluster is not healthy before the drill "
                             f"({'; '.join(problems)}): `bake status --local` shows why")
        d.check(True, "healthy before the drill", "")
    started = time.monotonic()
    try:
        if fresh:
            drill_leader_dies_mid_init(d, launch)
        else:
            _RUNNERS[name](d)
    finally:
        result.passed = not result.failures and result.recovery_s is not None
        result.details["drill_seconds"] = round(time.monotonic() - started, 1)
        out = d.base / "drills" / f"{name}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result.to_json(), indent=2) + "\n")
        result.details["result_file"] = str(out)
    return result
