"""``bake render cluster``: write the cluster's CloudFormation template and user-data for review.

Parsing only; rendering is ``bake.launch.render_cluster`` (no AWS calls).
"""

from __future__ import annotations

from pathlib import Path

import click

from bake.commands.cluster import file_option
from bake.commands.common import catalog_option, out_dir_option


@click.command("cluster")
@file_option
@out_dir_option("Directory to write cloudformation/ and userdata/ into.")
@catalog_option
def cluster(cluster_file: Path, out_dir: Path, catalogs: tuple[Path, ...]) -> None:
    """Render the cluster's CloudFormation template and cloud-init user-data into a directory."""
    from bake.cluster import load_checked_cluster
    from bake.launch import render_cluster

    docs = render_cluster(load_checked_cluster(cluster_file, catalogs))
    for path in docs.write(out_dir):
        click.echo(str(path))
    click.echo(f"stack version {docs.stack_version}")


@click.command("addons")
@file_option
@out_dir_option("Directory to write manifests/cni/ and manifests/addons/ into.")
@catalog_option
def addons(cluster_file: Path, out_dir: Path, catalogs: tuple[Path, ...]) -> None:
    """Render the CNI and add-on manifests the first control plane applies, for review.

    \b
    The same templates and values as the node agent, with the images the catalog bakes for
    the cluster's Kubernetes minor (`bake ami --addons`).
    Example:
      bake render addons -f cluster.yaml -o out/
    """
    from bake.addons import RenderAddonsOptions, render_addons

    for path in render_addons(RenderAddonsOptions(cluster_file, out_dir, tuple(catalogs))):
        click.echo(str(path))
