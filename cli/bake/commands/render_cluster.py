"""``bake render cluster``: write the cluster's CloudFormation template and user-data for review.

Parsing only; rendering is ``bake.launch.render_cluster`` (no AWS calls).
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command("cluster")
@click.option(
    "-f",
    "--file",
    "cluster_file",
    default="cluster.yaml",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The cluster file.",
)
@click.option(
    "-o",
    "--output-dir",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write into.",
)
def cluster(cluster_file: Path, out_dir: Path) -> None:
    """Render the cluster's CloudFormation template and cloud-init user-data into a directory."""
    from bake.cluster import load_cluster
    from bake.launch import render_cluster

    docs = render_cluster(load_cluster(cluster_file))
    for path in docs.write(out_dir):
        click.echo(str(path))
    click.echo(f"stack version {docs.stack_version}")
