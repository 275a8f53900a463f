"""The embedded AWS: moto's server on 127.0.0.1, started, inspected and stopped by bake.

Everything lives in ``bake.sandbox.server``; the names most callers need are re-exported here:
``ensure_running(data_dir, progress) -> Sandbox`` (used by ``bake ami --local``),
``require_running(data_dir) -> Sandbox`` and ``sandbox_target(sandbox) -> AwsTarget``.
Importing this package does not import boto3 or moto.
"""

from bake.sandbox.server import (
    NOT_RUNNING,
    Sandbox,
    SandboxStatus,
    StopResult,
    check,
    ensure_running,
    env_lines,
    read_state,
    require_running,
    sandbox_target,
    start,
    state_path,
    status,
    stop,
)

__all__ = [
    "NOT_RUNNING",
    "Sandbox",
    "SandboxStatus",
    "StopResult",
    "check",
    "ensure_running",
    "env_lines",
    "read_state",
    "require_running",
    "sandbox_target",
    "start",
    "state_path",
    "status",
    "stop",
]
