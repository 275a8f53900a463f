"""``bake-node``: the command line of the node agent (argparse: the node has no click).

Commands: ``run`` (config -> bootstrap -> post; what the systemd unit starts), ``status``
(print state.json), ``rotate`` (the control-plane timer: refresh join material), ``snapshot``
(the control-plane timer: an etcd snapshot to S3 when one is due; ``--force`` takes one now),
``certs`` (the control-plane timer: record certificate expiry, renew when due),
``drain NODE``, ``etcd-remove NODE``, ``delete-node NODE``, ``upgrade-addons`` and
``etcd-status`` (what ``bake upgrade`` runs on a control plane through SSM Run Command;
``bake_node.upgrade``) and
``validate`` (the config phase only, touching nothing). Errors print one line
``bake-node: error: ...`` and exit 1; ``--debug`` shows tracebacks. Logs go to stderr, which
systemd sends to the journal.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

from bake_node.agent import Agent, Settings, State
from bake_node.errors import ConfigError, NodeError
from bake_node.timers import (
    etcd_status,
    remove_etcd_member,
    renew_certificates,
    rotate,
    snapshot,
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bake-node", description="Join this node to its kubeadm cluster."
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    p.add_argument(
        "--config", type=Path, default=Settings.config_path, help="node config (node.yaml)"
    )
    p.add_argument(
        "--state-dir", type=Path, default=Settings.state_dir, help="agent state directory"
    )
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in (
        ("run", "config, bootstrap (init or join) and post phases"),
        ("rotate", "refresh join material (control planes; run by a timer)"),
        ("snapshot", "an etcd snapshot to S3 when one is due (control planes; run by a timer)"),
        ("certs", "record certificate expiry; renew when due (control planes; run by a timer)"),
        ("drain", "cordon and drain a node before its instance is replaced (control planes)"),
        ("delete-node", "delete a replaced node's Node object (control planes)"),
        ("upgrade-addons", "kube-proxy and CoreDNS at this image's versions once every control "
                           "plane runs it, then the CNI and add-ons re-applied from this image "
                           "(control planes)"),
        ("etcd-status", "record the etcd members as this control plane sees them now, and "
                        "print them (control planes)"),
        ("etcd-remove", "remove a control plane's etcd member before its instance is "
                        "terminated, leadership moved first (control planes)"),
        ("validate", "the config phase only: validate node.yaml and identity"),
        ("status", "print the agent's state"),
    ):
        s = sub.add_parser(name, help=text, description=text)
        if name == "status":
            continue
        s.add_argument("--identity", type=Path, help="identity override JSON (tests, labs)")
        s.add_argument("--image-manifest", type=Path, default=Settings.image_manifest)
        s.add_argument("--manifests-dir", type=Path, default=Settings.manifests_dir)
        s.add_argument("--kubernetes-dir", type=Path, default=Settings.kubernetes_dir)
        s.add_argument("--kubeadm", default="kubeadm", help="kubeadm executable")
        s.add_argument("--kubectl", default="kubectl", help="kubectl executable")
        s.add_argument("--etcdctl", default="etcdctl", help="etcdctl executable")
        s.add_argument("--etcdutl", default="etcdutl",
                       help="etcdutl executable (etcd >= 3.5; else etcdctl does its work)")
        s.add_argument("--etcd-data-dir", type=Path, default=Settings.etcd_data_dir)
        s.add_argument("--containerd-certs-dir", type=Path,
                       default=Settings.containerd_certs_dir,
                       help="containerd's registry config_path (hosts.toml per registry)")
        s.add_argument("--credential-provider-dir", type=Path,
                       default=Settings.credential_provider_dir,
                       help="where the image installed the kubelet's image credential providers")
        s.add_argument("--addon-files-dir", type=Path, default=Settings.addon_files_dir,
                       help="where the image put the add-ons' upstream files (<dir>/<add-on>/)")
        if name in ("drain", "delete-node", "etcd-remove"):
            s.add_argument("node", help="the Node's name (also its etcd member's)")
        if name == "drain":
            s.add_argument("--timeout", type=int, default=300,
                           help="seconds kubectl drain may take (evictions honour PDBs)")
        if name in ("snapshot", "certs"):
            s.add_argument("--force", action="store_true", help="do it now, due or not")
        if name == "certs":
            s.add_argument("--static-pod-restart-wait", type=float,
                           default=Settings.static_pod_restart_wait,
                           help="seconds the static pod manifests stay out (kubelet's "
                                "fileCheckFrequency is 20 s)")
        s.add_argument("--lease-ttl", type=float, default=Settings.lease_ttl, help="seconds")
        s.add_argument("--token-ttl", type=float, default=None,
                       help="seconds (default: node.yaml's bootstrapTokenTTLSeconds)")
        s.add_argument("--poll", type=float, default=Settings.poll, help="seconds between looks")
        s.add_argument("--max-poll", type=float, default=Settings.max_poll, help="seconds")
        s.add_argument("--wait-timeout", type=float, default=Settings.wait_timeout, help="seconds")
    return p


def _settings(args: argparse.Namespace) -> Settings:
    return replace(
        Settings(),
        config_path=args.config,
        state_dir=args.state_dir,
        identity_override=args.identity,
        image_manifest=args.image_manifest,
        manifests_dir=args.manifests_dir,
        kubernetes_dir=args.kubernetes_dir,
        kubeadm=args.kubeadm,
        kubectl=args.kubectl,
        etcdctl=args.etcdctl,
        etcdutl=args.etcdutl,
        etcd_data_dir=args.etcd_data_dir,
        containerd_certs_dir=args.containerd_certs_dir,
        credential_provider_dir=args.credential_provider_dir,
        addon_files_dir=args.addon_files_dir,
        static_pod_restart_wait=getattr(args, "static_pod_restart_wait",
                                        Settings.static_pod_restart_wait),
        lease_ttl=args.lease_ttl,
        token_ttl=args.token_ttl,
        poll=args.poll,
        max_poll=args.max_poll,
        wait_timeout=args.wait_timeout,
    )


def _upgrade_command(settings: Settings, args: argparse.Namespace) -> str:
    """``drain``, ``delete-node`` and ``upgrade-addons`` with this control plane's admin.conf;
    returns what to print."""
    from bake_node import upgrade
    from bake_node.kubeadm import Kubeadm

    admin = settings.kubernetes_dir / "admin.conf"
    if not admin.is_file():
        raise ConfigError(f"{admin} is missing: run this on a control plane that joined")
    api = upgrade.ClusterApi(Kubeadm(settings.kubeadm, settings.kubectl,
                                     dict(settings.kubeadm_env), str(admin)), admin)
    if args.command == "drain":
        return upgrade.drain(api, args.node, args.timeout).strip()
    if args.command == "delete-node":
        return upgrade.delete_node(api, args.node).strip() or f"node {args.node}: already gone"
    agent = Agent(settings)
    ctx = agent.config_phase()
    changed = upgrade.upgrade_addons(api, ctx.kubernetes_version,
                                     upgrade.image_refs(settings.image_manifest),
                                     without_kube_proxy=ctx.config.kube_proxy_replacement)
    what = "CoreDNS" if ctx.config.kube_proxy_replacement else "kube-proxy and CoreDNS"
    lines = changed or [f"{what} already at v{ctx.kubernetes_version}"]
    # then the CNI and the add-ons at this image's versions (the cluster autoscaler and the
    # cloud controller follow the control plane's minor); kubectl apply leaves unchanged ones
    records = agent.apply_addons(ctx) if ctx.config.is_control_plane else {}
    if records:
        lines.append("re-applied: " + ", ".join(
            " ".join(x for x in (name, r.get("version"), r["status"]) if x)
            for name, r in records.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``bake-node`` console script; exits 0 on success, 1 on error."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if not args.debug:
        logging.getLogger("botocore").setLevel(logging.WARNING)
    try:
        if args.command == "status":
            state = State(args.state_dir)
            print(json.dumps(state.data, indent=2, sort_keys=True))
            return
        settings = _settings(args)
        if args.command == "validate":
            ctx = Agent(settings).config_phase()
            print(
                f"{args.config}: valid ({ctx.config.role} of {ctx.config.cluster_name}, "
                f"Kubernetes {ctx.kubernetes_version}, instance {ctx.identity.instance_id})"
            )
        elif args.command == "certs":
            print(renew_certificates(settings, force=args.force))
        elif args.command == "snapshot":
            print(snapshot(settings, force=args.force))
        elif args.command in ("drain", "delete-node", "upgrade-addons"):
            print(_upgrade_command(settings, args))
        elif args.command == "etcd-status":
            print(etcd_status(settings))
        elif args.command == "etcd-remove":
            print(remove_etcd_member(settings, args.node))
        elif args.command == "rotate":
            done = rotate(settings)
            print("rotated: " + (", ".join(done) or "nothing due"))
        else:
            mode = Agent(settings).run()
            print(f"bake-node: {mode}")
    except NodeError as exc:
        if args.debug:
            raise
        print(f"bake-node: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:  # botocore and OS errors: one line unless --debug
        if args.debug:
            raise
        print(f"bake-node: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
