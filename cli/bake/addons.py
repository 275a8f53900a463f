"""``bake render addons``: the CNI and add-on manifests a cluster's first control plane will
apply, rendered on the user's machine for review, from the same templates and with the same
values the node agent uses (``bake_node.addons``).

The images are the catalog's for the cluster's minor, arch and OS (what a default ``bake ami``
bakes and pins); on a node they come from the image manifest, which records the same refs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bake.cluster import ClusterSpec

#: the note ``bake render addons`` writes beside a set's manifests naming the upstream files the
#: node applies first (not rendered: they come from the image)
UPSTREAM_NOTE = "UPSTREAM-FILES.txt"

@dataclass(frozen=True)
class RenderAddonsOptions:
    """What ``bake render addons`` was asked to do.

    Attributes:
        cluster_file: the cluster file.
        out_dir: where ``manifests/cni/<cni>/`` and ``manifests/addons/<name>/`` go.
        catalogs: catalog overlays (the images and add-on versions), applied in order.
    """

    cluster_file: Path
    out_dir: Path
    catalogs: tuple[Path, ...] = ()


def addon_manifests(spec: ClusterSpec, catalogs: tuple[Path, ...] = ()) -> dict[str, str]:
    """The rendered manifests of the cluster's CNI and enabled add-ons.

    Args:
        spec: a validated cluster.
        catalogs: catalog overlays.
    Returns:
        ``{relative path: YAML}``: ``manifests/cni/<cni>/<file>.yaml`` then
        ``manifests/addons/<name>/<file>.yaml`` per enabled add-on, in apply order; a CNI or
        add-on that applies upstream files first (Calico's CRDs, baked into the image) gets
        ``UPSTREAM_NOTE`` naming each with its URL and SHA-256.
    Raises:
        CatalogError: the minor or an add-on is not in the catalog.
        RenderError: a template failed (a value missing: StrictUndefined; not YAML).
    """
    from bake.catalog import load_catalog, resolve
    from bake.errors import RenderError
    from bake.launch import API_HOST_PLACEHOLDER
    from bake.templates import list_templates, read_text
    from bake_node.addons import cni_settings, manifest_context, ordered, render_templates

    release = resolve(load_catalog(catalogs), spec.kubernetes_minor, spec.arch, spec.os,
                      addons=[spec.cni, *spec.addons.names()])
    # the API endpoint is the load balancer's DNS name, known once the stack exists: the node
    # renders it from node.yaml; a review shows CloudFormation's name for it
    steps = [(f"cni/{spec.cni}", spec.cni, cni_settings(
        kube_proxy_replacement=spec.kube_proxy_replacement,
        control_plane_endpoint=f"{API_HOST_PLACEHOLDER}:6443"))]
    steps += [(f"addons/{info.name}", info.name, settings)
              for info, settings in ordered(spec.addons.node_yaml())]
    files: dict[str, str] = {}
    for folder, group, settings in steps:
        names = [n for n in list_templates("manifests")
                 if n.startswith(folder + "/") and n.endswith((".yaml", ".yaml.j2"))]
        if not names:
            raise RenderError(f"manifests/{folder}: no manifests in the bake package (bake bug)")
        context = manifest_context(
            cluster_name=spec.name, region=spec.region, pod_cidr=spec.pod_cidr,
            kms_key_id=spec.kms_alias,
            images={i.name: i.ref for i in release.addon_images(group)}, settings=settings)
        try:
            rendered = render_templates(
                [(n.rsplit("/", 1)[1], read_text("manifests", n)) for n in names], context)
        except Exception as exc:  # jinja2 / YAML errors, named by the folder
            raise RenderError(f"manifests/{folder}: {exc}") from exc
        upstream = [f for f in release.addon_files if f.addon == group]
        if upstream:  # applied first on the node, from the image: named here, not rendered
            files[f"manifests/{folder}/{UPSTREAM_NOTE}"] = "".join(
                f"{f.name}: {f.url}\n  sha256 {f.sha256}\n" for f in upstream) + (
                "bake ami bakes these upstream files into the image (verified by SHA-256) and "
                "the node agent applies them server-side before the manifests here.\n")
        for manifest in rendered:
            files[f"manifests/{folder}/{manifest.name}"] = manifest.text
    return files


def render_addons(options: RenderAddonsOptions) -> list[Path]:
    """Load and check the cluster file, render its manifests and write them under
    ``options.out_dir`` (all or nothing, ``bake.userfiles.write_files``).

    Returns:
        the paths written.
    Raises:
        ClusterFileError: the cluster file is invalid.
        CatalogError, RenderError: see ``addon_manifests``.
        UsageError: ``out_dir`` cannot be written.
    """
    from bake.cluster import load_checked_cluster
    from bake.userfiles import write_files

    spec = load_checked_cluster(options.cluster_file, options.catalogs)
    return write_files(options.out_dir, addon_manifests(spec, options.catalogs), "-o")
