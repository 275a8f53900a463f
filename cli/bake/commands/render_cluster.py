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
