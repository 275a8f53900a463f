"""Thin SSM Parameter Store wrapper for publishing image ids, with labelled history.

bake publishes the id of every baked image at ``<prefix>/<minor>/<os>/<arch>/image_id`` as a
``String`` parameter with data type ``aws:ec2:image`` (SSM API reference, PutParameter:
"DataType ... text | aws:ec2:image"; moto accepts it too, without checking that the AMI
exists, which real SSM does asynchronously), then labels the new parameter version with the
exact Kubernetes version (``v1.30.12``), so ``GetParameterHistory`` keeps every bake and a user
can resolve ``<name>:v1.30.12``. A label lives on one version of a parameter at a time: baking
the same version again moves the label to the new version. Every API call goes through
``bake.aws.errors.call`` with its IAM action.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bake.aws.errors import call, error_code
from bake.errors import AwsError, UsageError

DEFAULT_PREFIX = "/bake/k8s"

# SSM parameter names: letters, digits and . - _ / (SSM user guide, "Requirements and
# constraints for parameter names"), fully qualified names start with "/".
_NAME_CHARS = re.compile(r"^/[A-Za-z0-9_.\-/]+$")
# SSM label rules (SSM user guide, "Working with parameter labels"): up to 100 characters;
# letters, digits, ".", "-", "_"; cannot start with a digit, "aws" or "ssm" (any case).
_LABEL_CHARS = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")


def parameter_name(prefix: str, minor: str, os_name: str, arch: str) -> str:
    """Return ``f"{prefix}/{minor}/{os}/{arch}/image_id"``, validated.

    Args:
        prefix: e.g. ``/bake/k8s`` (leading ``/`` required, trailing ``/`` ignored).
        minor: Kubernetes minor, e.g. ``1.30``.
        os_name: e.g. ``debian-12``.
        arch: ``amd64`` or ``arm64``.

    Raises:
        UsageError: the name is not a valid fully qualified SSM parameter name. Names SSM
            reserves (under ``/aws`` or ``/ssm``) are left for SSM itself to refuse.
    """
    prefix = prefix.rstrip("/")
    name = f"{prefix}/{minor}/{os_name}/{arch}/image_id"
    if not prefix.startswith("/") or not _NAME_CHARS.match(name) or "//" in name:
        raise UsageError(
            f"invalid SSM parameter name {name!r}: the prefix must start with '/' and use only "
            "letters, digits and . - _ / (e.g. --ssm-prefix /bake/k8s)"
        )
    return name


def version_label(kubernetes_version: str) -> str:
    """Return the SSM label for a Kubernetes version: ``1.30.12`` -> ``v1.30.12``.

    Raises:
        UsageError: the result breaks SSM's label rules (see module constants).
    """
    label = kubernetes_version if kubernetes_version.startswith("v") else f"v{kubernetes_version}"
    lowered = label.lower()
    if (
        not _LABEL_CHARS.match(label)
        or label[0].isdigit()
        or lowered.startswith(("aws", "ssm"))
    ):
        raise UsageError(f"{label!r} is not a valid SSM parameter label")
    return label


@dataclass(frozen=True)
class ParameterVersion:
    """One version of a parameter.

    Attributes:
        name: fully qualified parameter name.
        version: SSM version number (1, 2, ...).
        value: the value of that version (an image id).
        labels: labels on that version.
        last_modified: ISO 8601 time of that version, or ``""``.
    """

    name: str
    version: int
    value: str
    labels: tuple[str, ...] = ()
    last_modified: str = ""


def _iso(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value or "")


def get_parameter(client: Any, name: str) -> ParameterVersion | None:
    """Return the current version of ``name`` (``ssm:GetParameter``), or ``None`` if absent."""
    try:
        p = call("ssm:GetParameter", client.get_parameter, Name=name)["Parameter"]
    except AwsError as exc:
        if error_code(exc) == "ParameterNotFound":
            return None
        raise
    return ParameterVersion(
        name=p["Name"],
        version=int(p["Version"]),
        value=p["Value"],
        last_modified=_iso(p.get("LastModifiedDate")),
    )


def put_image_id(client: Any, name: str, image_id: str, description: str = "") -> int:
    """Write ``image_id`` as the new value of ``name`` (``ssm:PutParameter``, overwrite).

    Args:
        client: boto3 SSM client.
        name: fully qualified parameter name (see ``parameter_name``).
        image_id: ``ami-...``.
        description: up to 1024 characters, no secrets.

    Returns:
        the new parameter version number.
    """
    kwargs: dict[str, Any] = {
        "Name": name,
        "Value": image_id,
        "Type": "String",
        "DataType": "aws:ec2:image",
        "Overwrite": True,
        "Tier": "Standard",
    }
    if description:
        kwargs["Description"] = description[:1024]
    return int(call("ssm:PutParameter", client.put_parameter, **kwargs)["Version"])


def label_version(client: Any, name: str, version: int, label: str) -> None:
    """Attach ``label`` to ``version`` of ``name`` (``ssm:LabelParameterVersion``).

    Raises:
        AwsError: the API refused, or SSM reported the label as invalid.
    """
    response = call(
        "ssm:LabelParameterVersion",
        client.label_parameter_version,
        Name=name,
        ParameterVersion=version,
        Labels=[label],
    )
    if response.get("InvalidLabels"):
        raise AwsError(
            f"ssm:LabelParameterVersion: SSM rejected the label(s) {response['InvalidLabels']} "
            f"on {name}"
        )


def restore(client: Any, name: str, previous: ParameterVersion | None) -> None:
    """Undo a publication: put back the previous value, or delete a parameter bake created.

    SSM cannot delete one version; restoring writes the previous value as a new version.

    Args:
        previous: the version current before the publication, or ``None`` when there was none.
    """
    if previous is None:
        try:
            call("ssm:DeleteParameter", client.delete_parameter, Name=name)
        except AwsError as exc:
            if error_code(exc) != "ParameterNotFound":
                raise
        return
    call(
        "ssm:PutParameter",
        client.put_parameter,
        Name=name,
        Value=previous.value,
        Type="String",
        DataType="aws:ec2:image",
        Overwrite=True,
    )


def history(client: Any, name: str, decrypt: bool = False) -> list[ParameterVersion]:
    """All versions of ``name``, oldest first, with labels (``ssm:GetParameterHistory``).

    Args:
        decrypt: decrypt SecureString values (``WithDecryption``; needs ``kms:Decrypt``).

    Returns:
        ``[]`` when the parameter does not exist.
    """
    versions: list[ParameterVersion] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"Name": name, "MaxResults": 50, "WithDecryption": decrypt}
        if token:
            kwargs["NextToken"] = token
        try:
            page = call("ssm:GetParameterHistory", client.get_parameter_history, **kwargs)
        except AwsError as exc:
            if error_code(exc) == "ParameterNotFound":
                return []
            raise
        for p in page.get("Parameters", []):
            versions.append(
                ParameterVersion(
                    name=p["Name"],
                    version=int(p["Version"]),
                    value=p.get("Value", ""),
                    labels=tuple(p.get("Labels", [])),
                    last_modified=_iso(p.get("LastModifiedDate")),
                )
            )
        token = page.get("NextToken")
        if not token:
            break
    versions.sort(key=lambda v: v.version)
    return versions


def list_by_path(client: Any, path: str, recursive: bool = True) -> list[ParameterVersion]:
    """Current parameters under ``path`` (``ssm:GetParametersByPath``, paginated).

    Args:
        path: e.g. ``/bake/k8s`` (hierarchy root).
        recursive: include every level below ``path``.

    Returns:
        the parameters sorted by name (``labels`` empty: use ``history`` for labels).
    """
    found: list[ParameterVersion] = []
    token: str | None = None
    path = path.rstrip("/") or "/"
    while True:
        kwargs: dict[str, Any] = {"Path": path, "Recursive": recursive, "MaxResults": 10}
        if token:
            kwargs["NextToken"] = token
        page = call("ssm:GetParametersByPath", client.get_parameters_by_path, **kwargs)
        for p in page.get("Parameters", []):
            found.append(
                ParameterVersion(
                    name=p["Name"],
                    version=int(p["Version"]),
                    value=p["Value"],
                    last_modified=_iso(p.get("LastModifiedDate")),
                )
            )
        token = page.get("NextToken")
        if not token:
            break
    found.sort(key=lambda v: v.name)
    return found


def describe_prefix(client: Any, prefix: str) -> dict[str, dict[str, Any]]:
    """The parameters whose name begins with ``prefix``, without their values
    (``ssm:DescribeParameters`` with a ``Name`` ``BeginsWith`` filter, paginated).

    Returns:
        ``{name: {"type": "String"|"SecureString"|..., "version": int}}``.
    """
    found: dict[str, dict[str, Any]] = {}
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {
            "ParameterFilters": [{"Key": "Name", "Option": "BeginsWith", "Values": [prefix]}],
            "MaxResults": 50,
        }
        if token:
            kwargs["NextToken"] = token
        page = call("ssm:DescribeParameters", client.describe_parameters, **kwargs)
        for p in page.get("Parameters", []):
            found[p["Name"]] = {"type": p["Type"], "version": int(p["Version"])}
        token = page.get("NextToken")
        if not token:
            return found


def secure_values(client: Any, names: list[str]) -> dict[str, str]:
    """Decrypted values of the SecureString (or String) parameters ``names`` that exist
    (``ssm:GetParameters`` with decryption; at most 10 names per call)."""
    out: dict[str, str] = {}
    for i in range(0, len(names), 10):
        resp = call("ssm:GetParameters", client.get_parameters, Names=names[i:i + 10],
                    WithDecryption=True)
        out.update({p["Name"]: p["Value"] for p in resp.get("Parameters", [])})
    return out


def delete_parameters(client: Any, names: list[str]) -> None:
    """Delete the parameters ``names`` (``ssm:DeleteParameters``, 10 per call; names that do
    not exist are ignored, as the API reports them without failing)."""
    for i in range(0, len(names), 10):
        call("ssm:DeleteParameters", client.delete_parameters, Names=names[i:i + 10])


# the statuses of a Run Command invocation that are final (SSM API reference,
# GetCommandInvocation: Pending | InProgress | Delayed | Success | Cancelled | TimedOut |
# Failed | Cancelling)
_RUNNING = ("Pending", "InProgress", "Delayed", "Cancelling")


def run_shell(client: Any, instance_id: str, script: str, timeout_s: float,
              poll_s: float = 3.0, sleep=None) -> str:
    """Run ``script`` on ``instance_id`` with SSM Run Command (``AWS-RunShellScript``, as root)
    and wait for it.

    Args:
        client: the SSM client; instance_id: a managed instance (the SSM agent runs on bake's
            images, the instance profile has AmazonSSMManagedInstanceCore).
        script: shell text; timeout_s: seconds the command may run (SSM's
            ``executionTimeout``; bake also stops waiting then).
        poll_s: seconds between GetCommandInvocation calls; sleep: injected for tests.

    Returns:
        the command's standard output (SSM keeps the first 24,000 characters).

    Raises:
        BakeError: the command failed, timed out or was cancelled (its last output line in the
            message); AwsError: a refused call.
    """
    import time

    from bake.errors import BakeError

    sleep = sleep or time.sleep
    cmd = call("ssm:SendCommand", client.send_command, InstanceIds=[instance_id],
               DocumentName="AWS-RunShellScript",
               Parameters={"commands": [script], "executionTimeout": [str(int(timeout_s))]},
               TimeoutSeconds=max(30, int(timeout_s)))["Command"]["CommandId"]
    deadline = time.monotonic() + timeout_s + 60
    while True:
        try:
            inv = call("ssm:GetCommandInvocation", client.get_command_invocation,
                       CommandId=cmd, InstanceId=instance_id)
        except AwsError as exc:  # not registered yet right after SendCommand
            if error_code(exc) != "InvocationDoesNotExist":
                raise
            inv = {"Status": "Pending"}
        status = inv.get("Status", "Pending")
        if status == "Success":
            return inv.get("StandardOutputContent", "")
        if status not in _RUNNING:
            out = (inv.get("StandardErrorContent") or inv.get("StandardOutputContent") or "")
            last = (out.strip().splitlines() or ["no output"])[-1]
            raise BakeError(f"`{script}` on {instance_id} ended {status}: {last}")
        if time.monotonic() > deadline:
            raise BakeError(f"`{script}` on {instance_id} did not finish in {timeout_s:.0f} s "
                            f"(command {cmd})")
        sleep(poll_s)
