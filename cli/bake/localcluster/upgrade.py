"""``bake upgrade --local``: the roll of ``bake.upgrade`` on the local VM cluster.

The local platform plays AWS's parts of the roll as it does for the drills:

- SSM Run Command (``bake-node drain``, ``delete-node``, ``etcd-status``,
  ``upgrade-addons``) runs through the VMs' guest agents (``runcommand.ClusterRunCommand``,
  which re-reads the running VMs before each command: they come and go during a roll);
- a control plane's termination goes through its lifecycle hook: the very etcd member cleanup
  Lambda handler gets the EventBridge event, and its ``complete_lifecycle_action`` terminates
  the instance, decrementing the desired capacity when ``bake upgrade`` asked for that
  (``runcommand.LifecycleGroup``); a worker's termination is the group's own;
- the VMs follow the groups (``service.sync_local``), each booting the image its instance was
  launched from (the ``bake:local-path`` tag of its AMI).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bake.localcluster import vm
from bake.localcluster.runcommand import ClusterRunCommand, LifecycleGroup
from bake.localcluster.service import LocalOptions, sync_local
from bake.localcluster.state import read_state, running_nodes


@dataclass(frozen=True)
class LocalRoll:
    """What ``bake.upgrade.upgrade`` takes to roll the local cluster: ``run_command`` (the SSM
    client of Run Command), ``terminate(instance id, role, decrement)`` and ``after_resize``."""

    run_command: ClusterRunCommand
    terminate: Callable[[str, str, bool], None]
    after_resize: Callable[[], None]


def local_roll(options: LocalOptions, clients, echo: Callable[[str], None]) -> LocalRoll:
    """The local platform's side of a roll for the cluster of ``options`` (see the module
    docstring).

    Args:
        options: the local cluster; clients: the embedded AWS's ``AwsClients``; echo: one line
            of progress (the VMs booted and stopped, the Lambda's answer).
    """
    from bake.aws import autoscaling
    from bake.lambdas.etcd_member_cleanup import handler
    from bake.launch import LAMBDA_TIMEOUT_SECONDS
    from bake.localcluster.drill import LambdaContext, lifecycle_event

    spec = options.spec

    def sockets() -> dict[str, Path]:
        state = read_state(options.data_dir, spec.name) or {}
        return {n["instance_id"]: vm.VmFiles(Path(n["dir"])).guest_agent
                for n in running_nodes(state)}

    def terminate(instance_id: str, role: str, decrement: bool) -> None:
        asg = clients.client("autoscaling")
        if role != "control-plane":
            autoscaling.terminate(asg, instance_id, decrement)
            return
        log = io.StringIO()  # the handler's log line (CloudWatch Logs on AWS)
        with contextlib.redirect_stdout(log):
            out = handler(lifecycle_event(spec.name, spec.region, instance_id),
                          LambdaContext(LAMBDA_TIMEOUT_SECONDS),
                          clients=(clients.client("ec2"), LifecycleGroup(asg, decrement=decrement),
                                   ClusterRunCommand(sockets)))
        echo(f"{instance_id}: lifecycle hook -> etcd member cleanup: {out['result']}")

    def after_resize() -> None:
        sync_local(options, clients, echo)

    return LocalRoll(ClusterRunCommand(sockets), terminate, after_resize)
