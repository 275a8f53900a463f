"""``bake catalog``: what can be baked."""

from __future__ import annotations

import json
from pathlib import Path

import click

from bake.commands.common import catalog_option, output_option


@click.group()
def catalog() -> None:
    """List the Kubernetes releases bake can bake, with pinned checksums."""


@catalog.command("list")
@catalog_option
@output_option
def list_cmd(catalogs: tuple[Path, ...], output: str) -> None:
    """List Kubernetes minors, their newest patch, arches and paired versions."""
    from bake.catalog import list_releases, load_catalog

    cat = load_catalog(catalogs)
    rows = list_releases(cat)
    if output == "json":
        click.echo(json.dumps({"sources": list(cat.sources), "releases": rows}, indent=2))
        return
    header = (
        "MINOR",
        "LATEST",
        "PATCHES",
        "ARCHES",
        "OS",
        "CRICTL",
        "CONTAINERD",
        "RUNC",
        "CNI",
        "PAUSE",
        "ETCD",
        "COREDNS",
    )
    table = [header] + [
        (
            r["minor"],
            r["latest"],
            str(len(r["patches"])),
            ",".join(r["arches"]),
            ",".join(r["oses"]),
            r["crictl"],
            str(r["containerd"]),
            str(r["runc"]),
            r["cni_plugins"],
            r["images"].get("pause", ""),
            r["images"].get("etcd", ""),
            r["images"].get("coredns", ""),
        )
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    click.echo("add-ons baked by default (bake ami --addons):")
    for r in rows:
        click.echo(f"  {r['minor']}: " + ", ".join(f"{n} {v}" for n, v in r["addons"].items()))
    click.echo(f"catalog: {' + '.join(cat.sources)}")
