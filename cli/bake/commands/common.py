"""Options shared by several commands (click decorators only)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

catalog_option = click.option(
    "--catalog",
    "catalogs",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="BAKE_CATALOG",
    help="Catalog overlay (bake.catalog/v1 YAML) merged over the shipped catalog; repeatable. "
    "Env: BAKE_CATALOG (space-separated).",
)

class ArchList(click.ParamType):
    """``--arch``: one arch, or with ``many`` a comma list (``amd64,arm64``), checked against
    ``bake.catalog.ARCHES``; the one place an arch option is parsed.

    Converts to the arch (``"amd64"``) or, with ``many``, a tuple without repeats.
    Raises ``CatalogError`` (exit 2) naming an unknown arch, as resolving a release does.
    """

    name = "ARCH"

    def __init__(self, many: bool = False) -> None:
        self.many = many

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        from bake.catalog import ARCHES
        from bake.errors import CatalogError, UsageError

        arches = tuple(dict.fromkeys(a.strip() for a in str(value).split(",") if a.strip()))
        unknown = [a for a in arches if a not in ARCHES] or ([] if arches else [str(value)])
        if unknown:
            raise CatalogError(f"unknown arch {unknown[0]!r}; supported: {', '.join(ARCHES)}")
        if not self.many:
            if len(arches) != 1:
                raise UsageError(f"--arch takes one arch here, not {value!r}")
            return arches[0]
        return arches


class ArtifactsS3(click.ParamType):
    """``--artifacts s3://bucket/prefix`` (staged by ``bake stage``), checked by
    ``bake.aws.s3.check_prefix_url``; converts to the URL without a trailing ``/``."""

    name = "s3://BUCKET/PREFIX"

    def convert(self, value, param, ctx):
        if value is None:
            return None
        from bake.aws.s3 import check_prefix_url

        return check_prefix_url(str(value), "--artifacts")


arch_option = click.option(
    "--arch",
    type=ArchList(),
    default="amd64",
    show_default=True,
    help="Target architecture: amd64 or arm64.",
)

os_option = click.option(
    "--os",
    "os_name",
    default="debian-12",
    show_default=True,
    metavar="OS",
    help="Image OS: debian-12, debian-13, ubuntu-22.04, ubuntu-24.04 or al2023 (one data file "
    "each in image-recipes/os/; --local builds Debian only).",
)

class AddonList(click.ParamType):
    """``--addons``: ``all`` (``None``: every add-on the catalog pins for the minor), ``none``
    (``()``) or a comma-separated list of add-on names (a tuple, checked by the catalog)."""

    name = "ADDONS"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, tuple):
            return value
        text = str(value).strip()
        if text == "all":
            return None
        if text == "none":
            return ()
        names = tuple(n.strip() for n in text.split(",") if n.strip())
        if not names:
            self.fail("give all, none or add-on names separated by commas", param, ctx)
        return names


addons_option = click.option(
    "--addons",
    type=AddonList(),
    default="all",
    show_default=True,
    help="Add-ons whose images are included (baked, each as a bake-addon-<name> component, or "
    "staged): all, none, or names separated by commas (e.g. flannel,metrics-server); "
    "`bake catalog list` names them per minor.",
)

arches_option = click.option(
    "--arch",
    "arches",
    type=ArchList(many=True),
    default="amd64",
    show_default=True,
    help="Target architectures, comma-separated: amd64 or arm64 or amd64,arm64.",
)


def artifacts_option(help_text: str):
    """``--artifacts`` (``artifacts_s3``): where ``bake stage`` staged the release in S3."""
    return click.option(
        "--artifacts", "artifacts_s3", type=ArtifactsS3(), metavar="s3://BUCKET/PREFIX",
        help=help_text,
    )

k8s_option = click.option(
    "--k8s",
    "k8s",
    required=True,
    metavar="VERSION",
    help="Kubernetes version: 1.30 (newest known patch) or 1.30.4 (exact).",
)

output_option = click.option(
    "--output",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Output format (text: lines or a table for people; json: one document for scripts).",
)


def out_dir_option(help: str, *aliases: str, default: Path | None = None):  # noqa: A002
    """``-o/--output-dir DIR`` (``out_dir``): where a command writes files. ``-o`` is always a
    directory in bake, and ``--output`` always the text|json format.

    Args:
        help: what is written there (``help`` is click's own keyword).
        aliases: older long names still accepted (e.g. ``--out``).
        default: the directory when ``-o`` is not given; ``None``: ``-o`` is required.
    Returns:
        the click decorator.
    """
    return click.option(
        "-o",
        "--output-dir",
        *aliases,
        "out_dir",
        required=default is None,
        default=default,
        show_default=default is not None,
        type=click.Path(file_okay=False, path_type=Path),
        help=help,
    )

class MirrorUrl(click.ParamType):
    """A mirror base URL (http, https or file), checked by ``bake.catalog.parse_mirror``."""

    name = "URL"

    def __init__(self, allow_dir: bool = False, must_exist: bool = True) -> None:
        self.allow_dir = allow_dir
        self.must_exist = must_exist

    def convert(self, value, param, ctx):
        if value is None:
            return None
        from bake.catalog import parse_mirror

        option = param.opts[0] if param is not None else "--mirror"
        return parse_mirror(
            str(value), option, allow_dir=self.allow_dir, must_exist=self.must_exist
        )


mirror_option = click.option(
    "--mirror",
    metavar="URL",
    type=MirrorUrl(),
    help="Artifact mirror base URL (http, https or file), laid out as "
    "<mirror>/<upstream host>/<path>.",
)

ssm_prefix_option = click.option(
    "--ssm-prefix",
    default="/bake/k8s",
    show_default=True,
    help="SSM hierarchy the image id is published under.",
)


def interactive() -> bool:
    """True when a person can answer a prompt: standard input is a terminal."""
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def confirmer(yes: bool, what: str) -> Callable[[str], bool]:
    """The confirm function of a command that asks before it changes something.

    Args:
        yes: ``--yes`` was given: every question is answered yes.
        what: what the command would do, for the refusal (e.g. ``"launch bake-demo"``).

    Returns:
        ``confirm(question) -> bool`` (a click prompt on stderr, default no).

    Raises:
        UsageError: without ``--yes`` and without a terminal, at once (never a prompt that
            nobody can answer).
    """
    from bake.errors import UsageError

    if yes:
        return lambda question: True
    if not interactive():
        raise UsageError(f"{what} needs a confirmation and there is no terminal: pass --yes")
    return lambda question: click.confirm(question, default=False, err=True)


def interrupt_confirmer(yes: bool) -> Callable[[str], bool]:
    """The question asked on Ctrl-C during a long AWS operation ("cancel the build?").

    ``--yes`` answers yes; without a terminal nothing is asked and the answer is no (the
    operation keeps running and the message says how to attach or cancel).
    """
    if yes:
        return lambda question: True
    if not interactive():
        return lambda question: False
    return lambda question: click.confirm(question, default=False, err=True)
