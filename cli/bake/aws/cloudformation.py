"""Thin wrapper over the CloudFormation API for ``bake launch`` / ``bake destroy``.

Clients are injected (``AwsClients.client("cloudformation")`` or a Stubber's); every call goes
through ``bake.aws.errors.call`` so failures become one-line ``AwsError`` messages. Change-set
states and stack statuses are those of the CloudFormation API reference (DescribeChangeSet,
DescribeStacks).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from bake.aws.errors import call, error_code
from bake.errors import AwsError

TERMINAL_OK = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "DELETE_COMPLETE", "IMPORT_COMPLETE"}
TERMINAL_FAILED = {
    "CREATE_FAILED",
    "ROLLBACK_COMPLETE",
    "ROLLBACK_FAILED",
    "DELETE_FAILED",
    "UPDATE_ROLLBACK_COMPLETE",
    "UPDATE_ROLLBACK_FAILED",
    "UPDATE_FAILED",
}


@dataclass(frozen=True)
class StackEvent:
    """One stack event: ``timestamp`` (datetime), logical id, resource type, status, reason."""

    event_id: str
    timestamp: Any
    logical_id: str
    resource_type: str
    status: str
    reason: str


class CloudFormation:
    """CloudFormation calls bake makes, on one injected client.

    Args:
        client: a boto3 ``cloudformation`` client.
        sleep: the sleep function used while polling (tests pass a no-op).
    """

    def __init__(self, client: Any, sleep: Callable[[float], None] = time.sleep) -> None:
        self.client = client
        self.sleep = sleep

    def stack_status(self, stack_name: str) -> str | None:
        """Return the stack's status, or ``None`` when no such stack exists (or it was deleted)."""
        try:
            resp = call(
                "cloudformation:DescribeStacks", self.client.describe_stacks, StackName=stack_name
            )
        except AwsError as exc:
            if error_code(exc) == "ValidationError" and "does not exist" in str(exc):
                return None
            raise
        stacks = resp.get("Stacks", [])
        if not stacks or stacks[0]["StackStatus"] == "DELETE_COMPLETE":
            return None
        return stacks[0]["StackStatus"]

    def create_change_set(
        self,
        stack_name: str,
        name: str,
        body: str,
        change_set_type: str,
        tags: dict[str, str],
        parameters: dict[str, str] | None = None,
    ) -> str:
        """Create a change set (``CREATE`` or ``UPDATE``); returns its id (ARN).

        Args:
            parameters: template parameter values ``{ParameterKey: ParameterValue}`` (the
                rest keep their defaults).
        """
        extra: dict[str, Any] = {}
        if parameters:
            extra["Parameters"] = [
                {"ParameterKey": k, "ParameterValue": v} for k, v in sorted(parameters.items())
            ]
        resp = call(
            "cloudformation:CreateChangeSet",
            self.client.create_change_set,
            StackName=stack_name,
            ChangeSetName=name,
            TemplateBody=body,
            ChangeSetType=change_set_type,
            Capabilities=["CAPABILITY_NAMED_IAM"],
            Tags=[{"Key": k, "Value": v} for k, v in sorted(tags.items())],
            **extra,
        )
        return resp["Id"]

    def wait_change_set(self, change_set_id: str, timeout: float = 300) -> dict:
        """Poll until the change set is created (or failed); returns DescribeChangeSet's response.

        Raises:
            AwsError: it did not settle within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            resp = self.describe_change_set(change_set_id)
            if resp["Status"] in ("CREATE_COMPLETE", "FAILED", "DELETE_COMPLETE"):
                return resp
            if time.monotonic() > deadline:
                raise AwsError(
                    f"change set {change_set_id} still {resp['Status']} after {timeout:.0f} s"
                )
            self.sleep(2)

    def describe_change_set(self, change_set_id: str) -> dict:
        """DescribeChangeSet with every page of ``Changes`` merged."""
        resp = call(
            "cloudformation:DescribeChangeSet",
            self.client.describe_change_set,
            ChangeSetName=change_set_id,
        )
        changes = list(resp.get("Changes", []))
        token = resp.get("NextToken")
        while token:
            page = call(
                "cloudformation:DescribeChangeSet",
                self.client.describe_change_set,
                ChangeSetName=change_set_id,
                NextToken=token,
            )
            changes += page.get("Changes", [])
            token = page.get("NextToken")
        return {**resp, "Changes": changes}

    def execute_change_set(self, change_set_id: str) -> None:
        """Execute a created change set."""
        call(
            "cloudformation:ExecuteChangeSet",
            self.client.execute_change_set,
            ChangeSetName=change_set_id,
        )

    def delete_change_set(self, change_set_id: str) -> None:
        """Delete a change set (used when it has no changes or the user declines)."""
        call(
            "cloudformation:DeleteChangeSet",
            self.client.delete_change_set,
            ChangeSetName=change_set_id,
        )

    def change_sets(self, stack_name: str) -> list[dict]:
        """ListChangeSets summaries of the stack (every page), or ``[]`` when it has none."""
        out: list[dict] = []
        kwargs: dict[str, Any] = {"StackName": stack_name}
        while True:
            resp = call(
                "cloudformation:ListChangeSets", self.client.list_change_sets, **kwargs
            )
            out += resp.get("Summaries", [])
            if not resp.get("NextToken"):
                return out
            kwargs["NextToken"] = resp["NextToken"]

    def stack_tags(self, stack_name: str) -> dict[str, str]:
        """The stack's tags, ``{Key: Value}`` (``{}`` when it has none)."""
        resp = call(
            "cloudformation:DescribeStacks", self.client.describe_stacks, StackName=stack_name
        )
        stack = resp["Stacks"][0]
        return {t["Key"]: t["Value"] for t in stack.get("Tags", [])}

    def delete_stack(self, stack_name: str) -> None:
        """Start deleting a stack."""
        call("cloudformation:DeleteStack", self.client.delete_stack, StackName=stack_name)

    def events(self, stack_name: str) -> list[StackEvent]:
        """All events of the stack, oldest first."""
        out: list[StackEvent] = []
        kwargs: dict[str, Any] = {"StackName": stack_name}
        while True:
            resp = call(
                "cloudformation:DescribeStackEvents", self.client.describe_stack_events, **kwargs
            )
            for e in resp.get("StackEvents", []):
                out.append(
                    StackEvent(
                        event_id=e["EventId"],
                        timestamp=e.get("Timestamp"),
                        logical_id=e.get("LogicalResourceId", ""),
                        resource_type=e.get("ResourceType", ""),
                        status=e.get("ResourceStatus", ""),
                        reason=e.get("ResourceStatusReason", "") or "",
                    )
                )
            if not resp.get("NextToken"):
                break
            kwargs["NextToken"] = resp["NextToken"]
        out.reverse()
        return out

    def outputs(self, stack_name: str) -> dict[str, str]:
        """The stack's outputs, ``{OutputKey: OutputValue}``."""
        resp = call(
            "cloudformation:DescribeStacks", self.client.describe_stacks, StackName=stack_name
        )
        stack = resp["Stacks"][0]
        return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}

    def follow(
        self,
        stack_name: str,
        on_event: Callable[[StackEvent], None],
        since: set[str] | None = None,
        timeout: float = 3600,
        poll: float = 5,
    ) -> tuple[str, list[StackEvent]]:
        """Stream new stack events until the stack reaches a terminal status.

        Args:
            stack_name: the stack (name or id; use the id when following a deletion).
            on_event: called once per new event, oldest first.
            since: event ids already seen (not reported again).
            timeout: seconds before giving up.
            poll: seconds between polls.

        Returns:
            ``(final status, every event seen)``; status ``DELETE_COMPLETE`` when it is gone.

        Raises:
            AwsError: the stack did not settle within ``timeout``.
        """
        seen = set(since or ())
        collected: list[StackEvent] = []
        deadline = time.monotonic() + timeout
        while True:
            status = self.stack_status(stack_name) or "DELETE_COMPLETE"
            try:
                events = self.events(stack_name)
            except AwsError:
                events = []
            for e in events:
                if e.event_id not in seen:
                    seen.add(e.event_id)
                    collected.append(e)
                    on_event(e)
            if status in TERMINAL_OK or status in TERMINAL_FAILED:
                return status, collected
            if time.monotonic() > deadline:
                raise AwsError(f"stack {stack_name} still {status} after {timeout:.0f} s")
            self.sleep(poll)

    def iter_event_ids(self, stack_name: str) -> Iterator[str]:
        """Ids of the events the stack already has (empty when it does not exist)."""
        if self.stack_status(stack_name) is None:
            return iter(())
        return iter([e.event_id for e in self.events(stack_name)])


def first_failure(events: list[StackEvent]) -> StackEvent | None:
    """The first ``*_FAILED`` event that is not a cascade ("Resource creation cancelled"), or
    the first failure at all; ``None`` when nothing failed."""
    failed = [e for e in events if e.status.endswith("_FAILED")]
    for e in failed:
        if "cancelled" not in e.reason.lower():
            return e
    return failed[0] if failed else None
