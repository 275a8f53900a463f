"""``bake sandbox``: start, stop, inspect the embedded AWS (moto server on 127.0.0.1).

Parsing only; the work is in ``bake.sandbox``. No boto3 import here.
"""

from __future__ import annotations

import json

import click

from bake.commands.common import output_option


@click.group()
def sandbox() -> None:
    """Start, stop or inspect the embedded AWS (moto server on 127.0.0.1).

    \b
    Its state (AMIs, SSM parameters, ...) lives in memory while it runs.
    Point other tools at it with:  eval "$(bake sandbox env)"
    """


@sandbox.command("start")
@click.option(
    "--port",
    type=int,
    default=None,
    help="TCP port on 127.0.0.1 (default: a free port chosen by the kernel).",
)
@click.pass_obj
def start_cmd(g, port: int | None) -> None:
    """Start moto's server detached on 127.0.0.1 and print its endpoint."""
    from bake.sandbox import start, status

    already = status(g.data_dir)
    sbx = start(g.data_dir, port=port, progress=lambda m: click.echo(m, err=True))
    if already is not None:
        click.echo(f"already running (pid {sbx.pid})", err=True)
    click.echo(sbx.endpoint)


@sandbox.command("stop")
@click.pass_obj
def stop_cmd(g) -> None:
    """Stop the recorded moto server (only if that PID still is a moto server)."""
    from bake.sandbox import stop

    result = stop(g.data_dir)
    if result.stopped:
        click.echo(f"stopped the embedded AWS (pid {result.sandbox.pid})")
    elif result.stale:
        click.echo(
            f"the embedded AWS was not running (pid {result.sandbox.pid} is not a moto server); "
            "removed its stale state"
        )
    else:
        click.echo("the embedded AWS is not running")


@sandbox.command("status")
@output_option
@click.pass_obj
def status_cmd(g, output: str) -> None:
    """Say whether the embedded AWS is running, with its endpoint and pid.

    ``stopped``: nothing runs; ``unresponsive``: the server runs but did not answer a cheap
    probe in time (a busy machine); ``running``: it answers.
    """
    from bake.sandbox import check, state_path
    from bake.sandbox.server import PROBE_TIMEOUT_S

    found = check(g.data_dir)
    sbx = found.sandbox if found.state != "stopped" else None
    if output == "json":
        data = {"status": found.state, "state_file": str(state_path(g.data_dir))}
        if sbx:
            data.update(sbx.to_json())
        click.echo(json.dumps(data, indent=2))
        return
    if sbx is None:
        click.echo("stopped")
        return
    line = f"{found.state}  endpoint={sbx.endpoint}  pid={sbx.pid}  started={sbx.started}"
    if found.state == "unresponsive":
        line += f"  (no answer within {PROBE_TIMEOUT_S:.0f} s)"
    click.echo(line)


@sandbox.command("env")
@click.pass_obj
def env_cmd(g) -> None:
    """Print shell export lines for the sandbox: eval "$(bake sandbox env)"."""
    from bake.sandbox import env_lines, require_running

    for line in env_lines(require_running(g.data_dir)):
        click.echo(line)
