"""Options shared by several commands (click decorators only)."""

from __future__ import annotations

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

arch_option = click.option(
    "--arch",
    default="amd64",
    show_default=True,
    help="Target architecture: amd64 or arm64.",
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
    help="Output format.",
)

mirror_option = click.option(
    "--mirror",
    metavar="URL",
    help="Artifact mirror base URL, laid out as <mirror>/<upstream host>/<path>.",
)

ssm_prefix_option = click.option(
    "--ssm-prefix",
    default="/bake/k8s",
    show_default=True,
    help="SSM hierarchy the image id is published under.",
)
