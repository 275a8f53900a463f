"""The local platform's SSM Run Command and lifecycle-hook completion, for the very Lambda code.

bake's etcd member cleanup (``bake.lambdas.etcd_member_cleanup.handler``) takes its clients as
``(ec2, autoscaling, ssm)``. On a local cluster the EC2 and Auto Scaling clients are the embedded
AWS's; two calls moto cannot carry out are provided here, shaped like boto3's:

- ``LocalRunCommand``: ``send_command`` with ``AWS-RunShellScript`` (its ``commands`` run as one
  ``/bin/sh`` script, as the SSM document does) on the instance's VM through the QEMU guest agent
  (``bake.localcluster.guest``), and ``get_command_invocation`` with SSM's statuses and its
  24,000-character cap on ``StandardOutputContent`` (SSM API reference, GetCommandInvocation).
- ``LifecycleGroup``: the Auto Scaling client, whose ``complete_lifecycle_action`` (moto has no
  lifecycle hooks) ends the termination the way the group does after ``CONTINUE``: the instance
  is terminated and, the desired capacity unchanged, the group launches a replacement
  (``TerminateInstanceInAutoScalingGroup`` with ``ShouldDecrementDesiredCapacity=false``).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bake.localcluster.guest import GuestAgent, GuestAgentError

OUTPUT_LIMIT = 24000  # characters of StandardOutputContent / StandardErrorContent


class InvocationDoesNotExist(Exception):
    """No such command on that instance (boto3's ``ssm.exceptions.InvocationDoesNotExist``)."""


class InvalidInstanceId(Exception):
    """The instance has no VM with a guest agent (SSM's ``InvalidInstanceId``)."""


class _Exceptions:
    InvocationDoesNotExist = InvocationDoesNotExist
    InvalidInstanceId = InvalidInstanceId


class LocalRunCommand:
    """SSM Run Command on local VMs.

    Args:
        sockets: instance id -> its VM's guest agent socket (``VmFiles.guest_agent``).
    """

    exceptions = _Exceptions

    def __init__(self, sockets: dict[str, Path]) -> None:
        self.sockets = dict(sockets)
        self._invocations: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.log: list[dict[str, Any]] = []  # every command sent: what the drill reports

    def send_command(self, InstanceIds: list[str], DocumentName: str,  # noqa: N803 (boto3)
                     Parameters: dict[str, list[str]], TimeoutSeconds: int = 3600,
                     **_: Any) -> dict[str, Any]:
        """Start ``Parameters["commands"]`` on each instance; returns ``{"Command": {...}}``."""
        if DocumentName != "AWS-RunShellScript":
            raise ValueError(f"the local Run Command runs AWS-RunShellScript only, not "
                             f"{DocumentName}")
        script = "\n".join(Parameters["commands"])
        command_id = str(uuid.uuid4())
        for instance_id in InstanceIds:
            if instance_id not in self.sockets:
                raise InvalidInstanceId(f"{instance_id} has no local VM")
            entry = {"Status": "InProgress", "StandardOutputContent": "",
                     "StandardErrorContent": "", "ResponseCode": -1}
            with self._lock:
                self._invocations[(command_id, instance_id)] = entry
            self.log.append({"command_id": command_id, "instance_id": instance_id,
                             "script": script, "sent": time.time()})
            threading.Thread(target=self._run, args=(entry, instance_id, script,
                                                     float(TimeoutSeconds)), daemon=True).start()
        return {"Command": {"CommandId": command_id, "DocumentName": DocumentName,
                            "InstanceIds": list(InstanceIds), "Status": "InProgress"}}

    def _run(self, entry: dict[str, Any], instance_id: str, script: str,
             timeout_s: float) -> None:
        try:
            result = GuestAgent(self.sockets[instance_id]).run(script, timeout_s)
        except GuestAgentError as exc:
            update = {"Status": "Failed", "StandardErrorContent": str(exc)}
        else:
            update = {"Status": "Success" if result.exit_code == 0 else "Failed",
                      "ResponseCode": result.exit_code,
                      "StandardOutputContent": result.stdout[:OUTPUT_LIMIT],
                      "StandardErrorContent": result.stderr[:OUTPUT_LIMIT]}
        with self._lock:
            entry.update(update)

    def get_command_invocation(self, CommandId: str, InstanceId: str,  # noqa: N803 (boto3)
                               **_: Any) -> dict[str, Any]:
        """The invocation's ``Status`` (InProgress, Success, Failed), output and exit code."""
        with self._lock:
            entry = self._invocations.get((CommandId, InstanceId))
            if entry is None:
                raise InvocationDoesNotExist(f"{CommandId} on {InstanceId}")
            return {"CommandId": CommandId, "InstanceId": InstanceId, **entry}


class LifecycleGroup:
    """The embedded AWS's Auto Scaling client with the group's side of a terminating lifecycle
    hook (see the module docstring).

    Args:
        client: the Auto Scaling client of the embedded AWS.
        on_complete: called with ``(instance id, result)`` right after the instance was
            terminated (the drill stops the VM there).
        decrement: the termination was asked with ``ShouldDecrementDesiredCapacity`` (``bake
            upgrade`` after its surge): no replacement is launched.
    """

    def __init__(self, client: Any, on_complete: Callable[[str, str], None] | None = None,
                 decrement: bool = False) -> None:
        self._client = client
        self._on_complete = on_complete
        self._decrement = decrement
        self.completed: list[dict[str, Any]] = []
        self.exceptions = client.exceptions

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def complete_lifecycle_action(self, LifecycleHookName: str,  # noqa: N803 (boto3)
                                  AutoScalingGroupName: str, LifecycleActionResult: str,
                                  InstanceId: str, **_: Any) -> dict[str, Any]:
        """CONTINUE or ABANDON: both end in termination for a terminating hook."""
        self.completed.append({"hook": LifecycleHookName, "group": AutoScalingGroupName,
                               "result": LifecycleActionResult, "instance_id": InstanceId,
                               "at": time.time()})
        self._client.terminate_instance_in_auto_scaling_group(
            InstanceId=InstanceId, ShouldDecrementDesiredCapacity=self._decrement)
        if self._on_complete:
            self._on_complete(InstanceId, LifecycleActionResult)
        return {}


class ClusterRunCommand(LocalRunCommand):
    """``LocalRunCommand`` whose VMs are re-read before every command (VMs come and go while
    ``bake upgrade --local`` rolls the cluster).

    Args:
        sockets_of: returns instance id -> guest agent socket of the running VMs now.
    """

    def __init__(self, sockets_of: Callable[[], dict[str, Path]]) -> None:
        super().__init__(sockets_of())
        self._sockets_of = sockets_of

    def send_command(self, **kwargs: Any) -> dict[str, Any]:  # noqa: D102 - see the base
        self.sockets = dict(self._sockets_of())
        return super().send_command(**kwargs)
