"""The ``bake`` command: a click group that loads its sub-commands lazily.

Sub-command modules (``bake.commands.*``) are imported only when invoked, so ``bake --help``
stays fast (no boto3 import). ``main()`` is the one error handler: a ``BakeError`` prints one
line to stderr and exits with its code; a traceback appears only with ``--debug``.
"""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path

import click

from bake import __version__
from bake.context import GlobalOptions, default_data_dir

# name -> "module:attribute" of a click command or group; help text is the command's own.
COMMANDS: dict[str, str] = {
    "catalog": "bake.commands.catalog:catalog",
    "render": "bake.commands.render:render",
    "ami": "bake.commands.ami:ami",
    "images": "bake.commands.images:images",
    "verify": "bake.commands.verify:verify",
    "sandbox": "bake.commands.sandbox:sandbox",
    "stage": "bake.commands.stage:stage",
    "prune": "bake.commands.prune:prune",
    "init": "bake.commands.cluster:init",
    "validate": "bake.commands.cluster:validate",
    "launch": "bake.commands.cluster:launch",
    "destroy": "bake.commands.cluster:destroy",
    "status": "bake.commands.cluster:status",
    "logs": "bake.commands.cluster:logs",
    "kubeconfig": "bake.commands.cluster:kubeconfig",
    "etcd": "bake.commands.etcd:etcd",
    "upgrade": "bake.commands.upgrade:upgrade",
    "drill": "bake.commands.cluster:drill",
}

# one-line summaries for `bake --help`, so that help does not import every command module
SUMMARIES: dict[str, str] = {
    "catalog": "List the Kubernetes releases bake can bake, with pinned checksums.",
    "render": "Render Image Builder documents (or cluster templates) for review.",
    "ami": "Bake a node image: locally (--local) or in EC2 Image Builder.",
    "images": "List baked images from SSM Parameter Store and EC2.",
    "verify": "Run the testinfra checks against a baked image or a live node.",
    "sandbox": "Start, stop or inspect the embedded AWS (moto server on 127.0.0.1).",
    "stage": "Verify a release's artifacts and upload them to S3 for offline builds.",
    "prune": "Deregister older bake AMIs and their snapshots (never a published one).",
    "init": "Write a commented cluster.yaml to start from.",
    "validate": "Check a cluster file and render its stack, without AWS.",
    "launch": "Deploy a cluster stack (with --local: as VMs of the baked image here).",
    "destroy": "Delete a cluster stack (and, with --local, its VMs).",
    "status": "Show a cluster's nodes, etcd members, join material and anything stuck.",
    "logs": "Print a node's console (kernel, cloud-init, the node agent).",
    "kubeconfig": "Fetch a cluster's admin kubeconfig (0600) from SSM Parameter Store.",
    "etcd": "List a cluster's etcd snapshots in S3, or restore one.",
    "upgrade": "Roll a cluster onto a newer image or the next Kubernetes minor, node by node.",
    "drill": "Break a local VM cluster on purpose and check that it recovers.",
}


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use (click docs, "Lazy loading")."""

    def __init__(self, *args, lazy: dict[str, str], summaries: dict[str, str], **kwargs):
        super().__init__(*args, **kwargs)
        self._lazy = dict(lazy)
        self._summaries = dict(summaries)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._lazy))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self._lazy:
            module_name, attr = self._lazy[name].split(":")
            return getattr(importlib.import_module(module_name), attr)
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, self._summaries.get(name, "")) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    summaries=SUMMARIES,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="bake")
@click.option("--debug", is_flag=True, help="Show debug logs and tracebacks.")
@click.option(
    "--endpoint-url",
    metavar="URL",
    help="AWS endpoint for every client (default: boto3's own, which honours AWS_ENDPOINT_URL).",
)
@click.option("--region", metavar="REGION", help="AWS region (default: the standard chain).")
@click.option("--profile", metavar="NAME", help="AWS named profile.")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where bake keeps caches and local images (default: $BAKE_DATA_DIR or the user data dir).",
)
@click.pass_context
def cli(ctx: click.Context, debug, endpoint_url, region, profile, data_dir) -> None:
    """bake: immutable Kubernetes node images for self-managed clusters on AWS.

    \b
    Start with:
      bake catalog list                 what can be baked
      bake render ami --k8s 1.30 -o out the Image Builder documents, for review
      bake ami --k8s 1.30 --local       bake on this machine into the embedded AWS
      bake images list                  what was baked
    """
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    ctx.obj = GlobalOptions(
        debug=debug,
        endpoint_url=endpoint_url,
        region=region,
        profile=profile,
        data_dir=(data_dir.resolve() if data_dir else default_data_dir()),
    )


def _debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv


def _data_dir_requested(argv: list[str]) -> Path | None:
    """The data dir the arguments select (``--data-dir DIR`` / ``--data-dir=DIR`` before the
    command, else the default), for error messages only; ``None`` if it cannot be told."""
    for i, arg in enumerate(argv):
        if arg == "--data-dir" and i + 1 < len(argv):
            return Path(argv[i + 1])
        if arg.startswith("--data-dir="):
            return Path(arg.split("=", 1)[1])
    try:
        return default_data_dir()
    except Exception:  # noqa: BLE001 - only used to word a message
        return None


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and map every failure to one line and an exit code.

    Args:
        argv: arguments without the program name (default: ``sys.argv[1:]``).

    Exit codes: 0 success, 1 a ``BakeError``, 2 bad usage, 70 an unexpected internal error,
    130 interrupted.
    """
    from bake.errors import BakeError

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(argv)
    try:
        cli.main(args=argv, prog_name="bake", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("bake: aborted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except BakeError as exc:
        if debug:
            raise
        click.echo(f"bake: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:  # click's own usage errors
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("bake: interrupted", err=True)
        sys.exit(130)
    except OSError as exc:  # a path the user named or the data dir: never an internal error
        if debug:
            raise
        from bake.userfiles import describe_os_error

        message, code = describe_os_error(exc, _data_dir_requested(argv))
        click.echo(f"bake: error: {message}", err=True)
        sys.exit(code)
    except Exception as exc:  # noqa: BLE001 - the one place unexpected errors are reported
        if debug:
            raise
        from bake.aws.errors import translate_unexpected

        message = translate_unexpected(exc)
        if message is not None:
            click.echo(f"bake: error: {message}", err=True)
            sys.exit(1)
        click.echo(
            f"bake: internal error: {type(exc).__name__}: {exc} (rerun with --debug for a "
            "traceback and report it)",
            err=True,
        )
        sys.exit(70)
