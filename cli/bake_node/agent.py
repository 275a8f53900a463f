"""The agent's three phases: config -> bootstrap -> post, with state in /var/lib/bake-node.

- **config**: read /etc/bake/node.yaml and the instance identity, validate everything, pick the
  Kubernetes version (node.yaml, else /etc/bake/image-manifest.json).
- **bootstrap**: control planes take the ``control-plane`` lease (so init and control-plane
  joins never overlap: etcd must not take two joins at once); under it the first one runs
  ``kubeadm init --upload-certs`` and publishes join material, later ones reconcile etcd members
  and ``kubeadm join --control-plane``. A taker-over whose predecessor died mid-init resets
  (``kubeadm reset``, stale material deleted) before its own init. Workers wait for valid
  material (one ``GetParameters`` per look) and join in parallel, without any lock.
- **post**: the node that ran init applies the CNI, then the add-ons node.yaml enables
  (``bake_node.addons``: storage, then the rest), each rendered from the templates baked into
  the image with the images baked beside them, applied, and waited for (a bounded
  ``kubectl rollout status`` of each Deployment, DaemonSet and StatefulSet); ``state.json``
  records each (``addons``: status, seconds, objects, or the error naming the first failing
  object).

A node whose state says it joined does nothing on later boots, except that the node that ran
init runs a failed post phase again (its add-ons are then applied again; ``kubectl apply`` is
idempotent). ``state.json`` records the
phases with their durations (seconds) and outcome; ``bake-node status`` prints it. The same
report goes to the cluster's DynamoDB table (item ``node#<instance id>``: role, address,
phases, outcome, boot and join times, the failing phase and its error) once the node joined or
failed, so ``bake status`` reads every node's state over the network, on AWS and in a local VM
cluster alike; control planes also record what etcd looks like to them (item ``etcd-status``:
members, learners, health) after their init or join and on every rotation run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bake_node import addons as addon_set
from bake_node import certs, snapshots, upgrade
from bake_node.aws import Clients
from bake_node.aws import dynamodb as ddb
from bake_node.config import NodeConfig, load_config
from bake_node.errors import ConfigError, NodeError
from bake_node.etcd import EtcdCtl, EtcdMembers
from bake_node.identity import Identity, discover
from bake_node.joinmaterial import CERT_KEY_TTL, JoinMaterial, Material, Secret
from bake_node.kubeadm import (
    Kubeadm,
    new_certificate_key,
    new_token,
    render_config,
)
from bake_node.lease import Lease
from bake_node.registry import write_credential_provider, write_hosts

log = logging.getLogger("bake_node")
CLUSTER_KEY = {"pk": {"S": "cluster"}}
SNAPSHOT_KEY = {"pk": {"S": "etcd-snapshot"}}
# what `bake etcd restore` writes into the cluster item, carried through every write of it
# until the restoring init is done (a taker-over after a crash restores the same snapshot)
RESTORE_FIELDS = ("restore_snapshot", "restore_requested_at")
ETCD_STATUS_KEY = {"pk": {"S": "etcd-status"}}
# seconds one CNI or add-on may take to roll out after it is applied (its workloads' pods
# scheduled, images already in containerd, probes passing); past it the add-on is failed
ADDON_READY_TIMEOUT = 300.0


def boot_epoch() -> float:
    """Epoch seconds at which this machine booted (now minus /proc/uptime)."""
    try:
        return time.time() - float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return time.time()


@dataclass(frozen=True)
class Settings:
    """How the agent runs (the CLI builds it; defaults are the on-image paths).

    Times are seconds. ``kubeadm_env`` is passed to kubeadm/kubectl/etcdctl (stand-ins in tests).
    ``token_ttl`` overrides node.yaml's ``bootstrapTokenTTLSeconds`` when set (tests, labs).
    """

    config_path: Path = Path("/etc/bake/node.yaml")
    state_dir: Path = Path("/var/lib/bake-node")
    image_manifest: Path = Path("/etc/bake/image-manifest.json")
    manifests_dir: Path = Path("/usr/share/bake-node/manifests")
    kubernetes_dir: Path = Path("/etc/kubernetes")
    identity_override: Path | None = None
    kubeadm: str = "kubeadm"
    kubectl: str = "kubectl"
    etcdctl: str = "etcdctl"
    etcdutl: str = "etcdutl"
    etcd_data_dir: Path = Path("/var/lib/etcd")
    static_pod_restart_wait: float = certs.FILE_CHECK_FREQUENCY_S + 5
    containerd_certs_dir: Path = Path("/etc/containerd/certs.d")
    # where bake-kubernetes installs the kubelet's image credential providers (the catalog's
    # ecr-credential-provider install path)
    credential_provider_dir: Path = Path("/usr/libexec/kubernetes/image-credential-provider")
    # where the add-on components put the add-ons' upstream files (bake.plan ADDON_FILES_DIR),
    # one folder per add-on
    addon_files_dir: Path = Path("/var/lib/bake/addon-files")
    kubeadm_env: dict[str, str] = field(default_factory=dict)
    lease_ttl: float = 60.0
    token_ttl: float | None = None
    poll: float = 2.0
    max_poll: float = 15.0
    wait_timeout: float = 3600.0


@dataclass(frozen=True)
class Context:
    """Everything the config phase established."""

    config: NodeConfig
    identity: Identity
    kubernetes_version: str


class State:
    """``<state_dir>/state.json``: ``{instance_id, role, mode, joined, phases: {name: {status,
    seconds}}, updated}``; written atomically (temp file + rename)."""

    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / "state.json"
        self.data: dict[str, Any] = {"joined": False, "phases": {}}
        if self.path.exists():
            self.data = json.loads(self.path.read_text())

    def save(self, **updates: Any) -> None:
        self.data.update(updates, updated=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.path)

    def phase(self, name: str, status: str, seconds: float, **extra: Any) -> None:
        self.data.setdefault("phases", {})[name] = {
            "status": status,
            "seconds": round(seconds, 3),
            **extra,
        }
        self.save()


class Agent:
    """One node's agent.

    Args:
        settings: ``Settings``.
        clients: ``bake_node.aws.Clients`` (built from node.yaml when None).
        kubeadm: the adapter (built from settings when None; the benchmark passes an in-process
            stand-in).
    """

    def __init__(
        self, settings: Settings, clients: Clients | None = None, kubeadm: Kubeadm | None = None
    ):
        self.s = settings
        self._clients = clients
        self.kubeadm = kubeadm or Kubeadm(
            settings.kubeadm,
            settings.kubectl,
            dict(settings.kubeadm_env),
            admin_kubeconfig=str(settings.kubernetes_dir / "admin.conf"),
        )
        self.state = State(settings.state_dir)
        self.started = time.time()
        self._ctx: Context | None = None

    # -- the node report (DynamoDB) --------------------------------------------------------
    def report(self, status: str, failed_phase: str | None = None, error: str | None = None):
        """Write this node's report to the cluster's table (``node#<instance id>``).

        Best effort: a node that cannot reach the table cannot join either, and the local
        ``state.json`` keeps the same facts; a failure to report is logged, never raised.
        """
        ctx = self._ctx
        if ctx is None:
            return
        first_kubeadm = min((c.started for c in getattr(self.kubeadm, "calls", [])),
                            default=None)
        item = {
            "pk": {"S": f"node#{ctx.identity.instance_id}"},
            "instance_id": {"S": ctx.identity.instance_id},
            "role": {"S": ctx.config.role},
            "hostname": {"S": ctx.identity.hostname},
            "private_ip": {"S": ctx.identity.private_ip},
            "kubernetes_version": {"S": ctx.kubernetes_version},
            "status": {"S": status},
            "mode": {"S": str(self.state.data.get("mode", ""))},
            "phases": {"S": json.dumps(self.state.data.get("phases", {}), sort_keys=True)},
            "boot_epoch": {"N": f"{boot_epoch():.3f}"},
            "agent_started": {"N": f"{self.started:.3f}"},
            "updated": {"N": f"{time.time():.3f}"},
        }
        if first_kubeadm is not None:
            item["kubeadm_started"] = {"N": f"{first_kubeadm:.3f}"}
        addons = self.state.data.get("addons")
        if addons:  # what this node (the one that ran init) applied: name -> status, error
            item["addons"] = {"S": json.dumps({
                n: {k: r.get(k) for k in ("status", "version", "error", "order") if r.get(k)}
                for n, r in addons.items()}, sort_keys=True)}
        if status == "joined":
            item["joined_at"] = {"N": f"{time.time():.3f}"}
        if failed_phase:
            item["failed_phase"] = {"S": failed_phase}
            item["error"] = {"S": (error or "")[:1000]}
        try:
            ddb.put_item(self.clients(ctx.config).client("dynamodb"), ctx.config.lock_table, item)
        except Exception as exc:  # noqa: BLE001 - see the docstring
            log.warning("could not write the node report to %s: %s", ctx.config.lock_table, exc)

    # -- phases ---------------------------------------------------------------------------
    def run(self) -> str:
        """Run config, bootstrap and post. Returns the mode: ``init``, ``join`` or ``noop``.

        Raises:
            NodeError: any phase failed (recorded in state.json).
        """
        ctx = self._timed("config", self.config_phase)
        self._ctx = ctx
        if (self.state.data.get("joined") and self.state.data.get("mode") == "init"
                and self.state.data.get("phases", {}).get("post", {}).get("status") == "failed"):
            log.info("joined, but the post phase failed last time: applying the add-ons again")
            try:
                self._timed("post", lambda: self.post_phase(ctx, "init"))
            except Exception as exc:
                self.report("failed", "post", str(exc))
                raise
            self.report("joined")
            return "init"
        if self.state.data.get("joined"):
            log.info("already a member of %s: nothing to do", ctx.config.cluster_name)
            self.state.save(last_run="noop: already joined")  # first boot's phases stay
            return "noop"
        phase = "bootstrap"
        try:
            mode = self._timed("bootstrap", lambda: self.bootstrap_phase(ctx))
            phase = "post"
            self._timed("post", lambda: self.post_phase(ctx, mode))
        except Exception as exc:
            self.report("failed", phase, str(exc))
            raise
        self.report("joined")
        if ctx.config.is_control_plane:
            record_certificates(self.clients(ctx.config).client("dynamodb"), ctx,
                                self.s.kubernetes_dir)
        return mode

    def _timed(self, name: str, fn):
        start = time.monotonic()
        log.info("phase %s: start", name)
        try:
            result = fn()
        except Exception as exc:
            self.state.phase(name, "failed", time.monotonic() - start, error=str(exc))
            log.error("phase %s: failed after %.2f s: %s", name, time.monotonic() - start, exc)
            raise
        self.state.phase(name, "done", time.monotonic() - start)
        log.info("phase %s: done in %.2f s", name, time.monotonic() - start)
        return result

    def config_phase(self) -> Context:
        """Load node.yaml and identity; check the region and the Kubernetes version."""
        config = load_config(self.s.config_path)
        identity = discover(self.s.identity_override)
        if identity.region and identity.region != config.region:
            raise ConfigError(
                f"node.yaml region {config.region} differs from this instance's {identity.region}"
            )
        version = config.kubernetes_version
        if not version:
            try:
                version = json.loads(self.s.image_manifest.read_text())["kubernetes_version"]
            except (OSError, ValueError, KeyError):
                raise ConfigError(
                    f"no kubernetesVersion in {self.s.config_path} and none in "
                    f"{self.s.image_manifest}: set kubernetesVersion"
                ) from None
        self.state.save(
            instance_id=identity.instance_id,
            role=config.role,
            cluster=config.cluster_name,
            kubernetes_version=version,
        )
        return Context(config, identity, version)

    def clients(self, config: NodeConfig) -> Clients:
        if self._clients is None:
            self._clients = Clients(config.region, dict(config.endpoints))
        return self._clients

    def bootstrap_phase(self, ctx: Context) -> str:
        """The kubelet's ECR credential provider config (node.yaml ``registry.
        ecrCredentialProvider``: an image without the provider stops here, before any lease or
        kubeadm call), registry mirrors (containerd's hosts.toml), then init or join (see the
        module docstring). Returns ``"init"`` or ``"join"``."""
        self._kubelet_flags(ctx)
        written = write_hosts(ctx.config.registry, self.s.containerd_certs_dir)
        if written:
            log.info("registry mirrors for %s in %s", ", ".join(sorted(
                ctx.config.registry.mirrors)), self.s.containerd_certs_dir)
        if ctx.config.is_control_plane:
            mode = self._control_plane(ctx)
        else:
            self._worker(ctx)
            mode = "join"
        self.state.save(joined=True, mode=mode)
        return mode

    def post_phase(self, ctx: Context, mode: str) -> None:
        """On the node that ran init: ``apply_addons``; nothing on a node that joined."""
        if mode == "init":
            self.apply_addons(ctx)

    def apply_addons(self, ctx: Context) -> dict[str, dict[str, Any]]:
        """Apply ``manifests/cni/<cni>/``, then each add-on node.yaml enables
        (``manifests/addons/<name>/``) in ``bake_node.addons`` order, with this image's images:
        after ``kubeadm init`` (``post_phase``), and again by ``bake-node upgrade-addons`` once
        every control plane runs a new image (its add-on versions). Each is rendered
        (``bake_node.addons.manifest_context``) into ``<state_dir>/manifests/<name>/``, applied
        file by file (``kubectl apply``: unchanged objects stay as they are), and its workloads
        waited for, at most ``ADDON_READY_TIMEOUT`` seconds per add-on. One failing add-on does
        not stop the next; ``state.json`` records each.

        Returns:
            name -> its ``state.json`` record (``status``, ``version``, ``objects``,
            ``workloads``, ``seconds``, ``order``), in apply order.
        Raises:
            NodeError: one or more failed, each named with its first failing object.
        """
        image = self._image_manifest()
        cni = addon_set.cni_settings(kube_proxy_replacement=ctx.config.kube_proxy_replacement,
                                     control_plane_endpoint=ctx.config.control_plane_endpoint)
        steps: list[tuple[str, Path, dict[str, Any], bool]] = [
            (ctx.config.cni, self.s.manifests_dir / "cni" / ctx.config.cni, cni, True)]
        for info, settings in addon_set.ordered({n: dict(s) for n, s in ctx.config.addons}):
            steps.append((info.name, self.s.manifests_dir / "addons" / info.name, settings, False))
        records: dict[str, Any] = {}
        failures = []
        for order, (name, folder, settings, is_cni) in enumerate(steps, 1):
            start = time.monotonic()
            try:
                record = self._apply_addon(ctx, name, folder, settings, image, is_cni)
            except NodeError as exc:
                record = {"status": "failed", "error": str(exc)}
                failures.append(f"{name}: {exc}")
                log.error("add-on %s failed: %s", name, exc)
            record["seconds"] = round(time.monotonic() - start, 3)
            record["order"] = order  # state.json's keys are sorted
            if record["status"] == "ready":
                log.info("add-on %s %s ready in %.1f s (%d objects; %s)", name,
                         record.get("version") or "", record["seconds"], record["objects"],
                         ", ".join(record["workloads"]) or "no workloads")
            records[name] = record
            self.state.save(addons=records)
        if failures:
            raise NodeError("add-ons failed: " + "; ".join(failures))
        return records

    def _image_manifest(self) -> dict[str, Any]:
        """The image manifest (``/etc/bake/image-manifest.json``), ``{}`` when absent."""
        try:
            return json.loads(self.s.image_manifest.read_text())
        except (OSError, ValueError):
            return {}

    def _apply_addon(self, ctx: Context, name: str, folder: Path, settings: dict[str, Any],
                     image: dict[str, Any], is_cni: bool) -> dict[str, Any]:
        """Render, apply and wait for one CNI or add-on; returns its ``state.json`` record
        ``{"status": "ready", "version", "objects", "workloads"}``.

        Raises:
            NodeError: not baked into this image, no manifests, a template or ``kubectl apply``
                failed, or a workload did not roll out within ``ADDON_READY_TIMEOUT`` seconds.
        """
        baked = image.get("addons")
        if isinstance(baked, dict) and name not in baked:  # an image of bake ami --addons ...
            off = ("choose another kubernetesNetwork.cni" if is_cni
                   else f"turn addons.{addon_set.addon(name).key} off")
            raise ConfigError(
                f"not baked into this image ({self.s.image_manifest} lists "
                f"{', '.join(sorted(baked)) or 'no add-ons'}): bake the image with --addons "
                f"including {name}, or {off}")
        images = {i["name"]: i["ref"] for i in image.get("images", [])
                  if isinstance(i, dict) and i.get("group") == name}
        if not images:
            raise ConfigError(
                f"{self.s.image_manifest} lists no image of {name}, so its pods would pull at "
                "boot: use an image baked with it (bake ami --addons)")
        upstream = self._upstream_files(name, image)
        context = addon_set.manifest_context(
            cluster_name=ctx.config.cluster_name, region=ctx.config.region,
            pod_cidr=ctx.config.pod_cidr, kms_key_id=ctx.config.kms_key_id, images=images,
            settings=settings)
        try:
            rendered = addon_set.render_folder(folder, context)
        except Exception as exc:  # jinja2 / YAML errors: the template's, named
            raise ConfigError(f"cannot render the manifests in {folder}: {exc}") from exc
        if not rendered:
            what = "CNI" if is_cni else "add-on"
            raise ConfigError(f"{what} {name!r} has no manifests in {folder}")
        out_dir = self.s.state_dir / "manifests" / name
        out_dir.mkdir(parents=True, exist_ok=True)
        objects = 0
        for path, count in upstream:  # CRDs first: the manifests' objects may need them
            try:
                self.kubeadm.apply(path, server_side=True)
            except NodeError as exc:
                raise NodeError(f"applying {path} failed: {exc}") from exc
            objects += count
        for manifest in rendered:
            path = out_dir / manifest.name
            path.write_text(manifest.text)
            try:
                self.kubeadm.apply(path)
            except NodeError as exc:
                first = manifest.documents[0] if manifest.documents else {}
                raise NodeError(
                    f"applying {path} failed (its first object: {first.get('kind')}/"
                    f"{first.get('metadata', {}).get('name')}): {exc}") from exc
            objects += len(manifest.documents)
        if not is_cni:
            for secret in addon_set.addon(name).generated:
                self._generate_secret(secret, out_dir)
        deadline = time.monotonic() + ADDON_READY_TIMEOUT
        workloads = [w for m in rendered for w in m.workloads()]
        for kind, namespace, wname in workloads:
            try:
                self.kubeadm.rollout_status(kind, namespace, wname,
                                            max(1.0, deadline - time.monotonic()))
            except NodeError as exc:
                raise NodeError(
                    f"{kind.lower()}/{wname} in {namespace} not ready within "
                    f"{ADDON_READY_TIMEOUT:.0f} s: {exc}") from exc
        version = baked.get(name) if isinstance(baked, dict) else None
        return {"status": "ready", "version": version, "objects": objects,
                "workloads": [f"{k.lower()}/{n} in {ns}" for k, ns, n in workloads]}

    def _upstream_files(self, name: str, image: dict[str, Any]) -> list[tuple[Path, int]]:
        """The upstream files the CNI or add-on ``name`` applies first
        (``bake_node.addons.UPSTREAM_FILES``), from the image manifest's ``addon_files``, each
        checked against the SHA-256 the image was baked with.

        Returns:
            ``[(path, number of objects in it)]``; ``[]`` for one that needs none.
        Raises:
            ConfigError: the image manifest lists no such file (an image baked before bake
                carried them, or by an overlay without them), or the file is missing or its
                SHA-256 differs from the manifest's.
        """
        listed = {f.get("name"): f for f in image.get("addon_files", [])
                  if isinstance(f, dict) and f.get("group") == name}
        out = []
        for wanted in addon_set.UPSTREAM_FILES.get(name, ()):
            entry = listed.get(wanted)
            if entry is None:
                raise ConfigError(
                    f"{self.s.image_manifest} lists no {wanted} file of {name} (its "
                    "addon_files), which it applies before its own manifests: use an image "
                    "baked by this bake with it (bake ami --addons)")
            path = self.s.addon_files_dir / name / Path(str(entry.get("path"))).name
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise ConfigError(f"{name}'s {wanted} file {path} is unreadable: "
                                  f"{exc.strerror}") from exc
            if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
                raise ConfigError(
                    f"{path} does not match the SHA-256 {self.s.image_manifest} lists for it: "
                    "the image was changed after it was baked; use a freshly baked image")
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            count = sum(1 for d in yaml.load_all(data, Loader=loader) if d)  # noqa: S506
            out.append((path, count))
        return out

    def _generate_secret(self, secret: addon_set.GeneratedSecret, out_dir: Path) -> None:
        """Create ``secret`` with fresh random values unless it exists (``kubectl create``: a
        re-apply or an upgrade keeps the first one). Its file is written 0600 next to the
        add-on's manifests and removed at once; the values are never logged."""
        data = {**dict(secret.literals),
                **{key: secrets.token_urlsafe(24) for key in secret.random}}
        doc = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
               "metadata": {"name": secret.name, "namespace": secret.namespace,
                            "labels": {"app.kubernetes.io/managed-by": "bake-node"}},
               "stringData": data}
        path = out_dir / f".secret-{secret.name}.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f)
            created = self.kubeadm.create_if_absent(path)
        finally:
            path.unlink(missing_ok=True)
        log.info("secret %s/%s %s", secret.namespace, secret.name,
                 "created with random values" if created else "exists: kept")

    # -- helpers ---------------------------------------------------------------------------
    def _material(self, ctx: Context) -> JoinMaterial:
        c = ctx.config
        return JoinMaterial(self.clients(c).client("ssm"), c.ssm_prefix, c.kms_key_id)

    def token_ttl(self, config: NodeConfig) -> float:
        """Seconds a bootstrap token this agent creates lives: ``Settings.token_ttl`` when set,
        else node.yaml's ``bootstrapTokenTTLSeconds`` (default 1800)."""
        return self.s.token_ttl if self.s.token_ttl is not None else config.bootstrap_token_ttl_s

    def _kubelet_flags(self, ctx: Context) -> dict[str, str]:
        """Kubelet flags beyond kubeadm's: with node.yaml ``registry.ecrCredentialProvider``, the
        image credential provider's (its config written first, ``write_credential_provider``);
        ``{}`` otherwise.

        Raises:
            ConfigError: the provider is on but this image does not carry it.
        """
        if not ctx.config.registry.ecr_credential_provider:
            return {}
        return write_credential_provider(
            ctx.kubernetes_version, self.s.credential_provider_dir,
            self.s.kubernetes_dir / "image-credential-provider" / "config.json")

    def _write_config(self, kind: str, ctx: Context, **values: Any) -> Path:
        c, ident = ctx.config, ctx.identity
        patches = self.s.state_dir / "patches"
        c.kubelet.write_patch(patches)
        flags = self._kubelet_flags(ctx)
        text, _docs = render_config(
            kind,
            ctx.kubernetes_version,
            node_name=ident.hostname,
            advertise_address=ident.private_ip,
            control_plane_endpoint=c.control_plane_endpoint,
            patches_dir=str(patches),
            node_labels=c.kubelet.node_labels(),
            taints=c.kubelet.registration_taints(c.is_control_plane),
            cloud_provider=c.cloud_provider,
            skip_kube_proxy=c.kube_proxy_replacement,
            kubelet_flags=flags,
            **values,
        )
        path = self.s.state_dir / f"kubeadm-{kind}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return path

    def _worker(self, ctx: Context) -> None:
        material = self._material(ctx).wait(
            control_plane=False,
            timeout=self.s.wait_timeout,
            poll=self.s.poll,
            max_poll=self.s.max_poll,
        )
        path = self._write_config(
            "join",
            ctx,
            token=material.token.value,
            ca_hash=material.ca_hash.value,
            control_plane=False,
        )
        try:
            self._reset_half_done_join()
            self.kubeadm.join(path)
        finally:
            path.unlink(missing_ok=True)

    def _reset_half_done_join(self) -> None:
        """Before a join: when an earlier run on this node started one and did not finish
        (``join_started`` in state.json; the unit restarts the agent after a failure), undo
        what it left (``kubeadm reset --force``), since kubeadm's preflight refuses a node that
        already has ``kubelet.conf`` or static pod manifests (kubeadm join docs, "preflight").
        Then record that a join is starting."""
        if self.state.data.get("join_started"):
            log.warning("an earlier join on this node did not finish: kubeadm reset first")
            self.kubeadm.reset()
        self.state.save(join_started=True)

    def _etcd(self, endpoints: list[str]) -> EtcdCtl:
        pki = self.s.kubernetes_dir / "pki"
        tls = {}
        if (pki / "etcd" / "ca.crt").exists():
            tls = {
                "cacert": pki / "etcd" / "ca.crt",
                "cert": pki / "apiserver-etcd-client.crt",
                "key": pki / "apiserver-etcd-client.key",
            }
        return EtcdCtl(endpoints, self.s.etcdctl, **tls)

    def _register_self(self, ctx: Context, members: EtcdMembers) -> None:
        etcd = self._etcd([f"https://{ctx.identity.private_ip}:2379"])
        listed = etcd.members()
        for m in listed:
            if m.name == ctx.identity.hostname:
                members.register(ctx.identity.instance_id, m)
                record_etcd_status(self.clients(ctx.config).client("dynamodb"), ctx, etcd,
                                   listed)
                return
        raise NodeError(f"this node ({ctx.identity.hostname}) is not in the etcd member list")

    @staticmethod
    def _cluster(db, config: NodeConfig) -> dict[str, str | None]:
        """The ``cluster`` item of the lock table as {attribute: string value} ({} if none)."""
        item = ddb.get_item(db, config.lock_table, CLUSTER_KEY)
        return {k: v.get("S") for k, v in item.items()}

    def _control_plane(self, ctx: Context) -> str:
        c, me = ctx.config, ctx.identity.instance_id
        clients = self.clients(c)
        db = clients.client("dynamodb")
        lease = Lease(db, c.lock_table, "control-plane", ttl=self.s.lease_ttl)
        material = self._material(ctx)
        if self._cluster(db, c).get("state") == "initialized":
            # wait for valid material BEFORE taking the lease: rotation needs the lease, so
            # waiting under it for a rotated token would block the rotation itself
            material.wait(
                control_plane=True,
                timeout=self.s.wait_timeout,
                poll=self.s.poll,
                max_poll=self.s.max_poll,
            )
        held = lease.acquire(me, timeout=self.s.wait_timeout, poll=self.s.poll)
        members = EtcdMembers(db, c.lock_table, clients.client("ec2"))
        try:
            with lease.keep_alive(held) as beat:
                cluster = self._cluster(db, c)
                if cluster.get("state") != "initialized":
                    self._init(ctx, lease, held, beat, cluster, material, members)
                    return "init"
                self._join_control_plane(ctx, beat, material, members)
                return "join"
        finally:
            lease.release(held)

    def _init(self, ctx, lease, held, beat, cluster, material, members) -> None:
        c, me = ctx.config, ctx.identity.instance_id
        if cluster.get("init_started_by"):
            log.warning(
                "an init by %s did not finish (lease expired): resetting and taking over",
                cluster["init_started_by"],
            )
            material.delete_all()
            self.kubeadm.reset()
        restoring = {k: {"S": cluster[k]} for k in RESTORE_FIELDS if cluster.get(k)}
        lease.fenced_put(
            held,
            {
                **CLUSTER_KEY,
                "state": {"S": "initializing"},
                "init_started_by": {"S": me},
                "fence": {"N": str(held.fence)},
                **restoring,
            },
        )
        ignore: tuple[str, ...] = ()
        if restoring:
            self._restore(ctx, cluster["restore_snapshot"], members)
            ignore = ("DirAvailable--var-lib-etcd",)
        cert_key = new_certificate_key()
        sans = sorted({c.endpoint_host, ctx.identity.private_ip, ctx.identity.hostname})
        path = self._write_config(
            "init",
            ctx,
            cluster_name=c.cluster_name,
            pod_cidr=c.pod_cidr,
            service_cidr=c.service_cidr,
            cert_sans=sans,
            certificate_key=cert_key,
            init_token=new_token(),
            bootstrap_token_ttl=int(self.token_ttl(c)),
        )
        try:
            self.kubeadm.init(path, ignore_preflight=ignore)
        finally:
            path.unlink(missing_ok=True)
        beat.check()
        issued = time.time()
        token, ca_hash = self.kubeadm.token_create(self.token_ttl(c))
        material.publish(
            Material(
                token=Secret(token, issued + self.token_ttl(c), issued),
                ca_hash=Secret(ca_hash),
                certificate_key=Secret(cert_key, issued + CERT_KEY_TTL, issued),
            )
        )
        admin = Path(self.kubeadm.admin_kubeconfig)
        if not admin.is_file():
            raise ConfigError(f"kubeadm init wrote no {admin}: see the kubeadm init log")
        material.publish_admin_kubeconfig(admin.read_text())
        self._register_self(ctx, members)
        beat.check()
        lease.fenced_put(
            held,
            {
                **CLUSTER_KEY,
                "state": {"S": "initialized"},
                "initialized_by": {"S": me},
                "init_started_by": {"S": me},
                "fence": {"N": str(held.fence)},
                **({"restored_from": restoring["restore_snapshot"]} if restoring else {}),
            },
        )

    def _restore(self, ctx: Context, snapshot_id: str, members: EtcdMembers) -> None:
        """Before a restoring init: the snapshot's certificates and etcd data on this node
        (``bake_node.snapshots.restore``), and the member registry emptied (the members it
        named are gone; the restored cluster has this node only)."""
        c, ident = ctx.config, ctx.identity
        if c.etcd_snapshots is None:
            raise ConfigError(f"a restore from {snapshot_id} is requested but node.yaml has no "
                              "etcdSnapshots: relaunch the cluster with bake >= this version")
        log.warning("restoring etcd from snapshot %s", snapshot_id)
        meta = snapshots.restore(
            self._snapshot_tool(),
            self._snapshot_store(ctx),
            snapshot_id,
            self.s.state_dir / "restore",
            self.s.kubernetes_dir / "pki",
            self.s.etcd_data_dir,
            ident.hostname,
            f"https://{ident.private_ip}:2380",
        )
        for instance_id in {r["instance_id"] for r in members.registry().values()}:
            members.unregister(instance_id)
        self.state.save(restored_from=snapshot_id, restored_revision=meta.get("revision"))

    def _snapshot_tool(self) -> snapshots.SnapshotTool:
        return snapshots.SnapshotTool(self.s.etcdctl, self.s.etcdutl, dict(self.s.kubeadm_env))

    def _snapshot_store(self, ctx: Context) -> snapshots.SnapshotStore:
        c = ctx.config
        assert c.etcd_snapshots is not None
        return snapshots.SnapshotStore(self.clients(c).client("s3"), c.etcd_snapshots,
                                       c.kms_key_id)

    def _join_control_plane(self, ctx, beat, material, members) -> None:
        m = material.wait(
            control_plane=True,
            timeout=self.s.wait_timeout,
            poll=self.s.poll,
            max_poll=self.s.max_poll,
        )
        path = self._write_config(
            "join",
            ctx,
            token=m.token.value,
            ca_hash=m.ca_hash.value,
            control_plane=True,
            certificate_key=m.certificate_key.value,
        )
        try:
            self._reset_half_done_join()
            self.kubeadm.prepare_control_plane(path)
            endpoints = members.client_urls()
            if endpoints:
                result = members.reconcile(self._etcd(endpoints))
                self.state.save(etcd_removed=result.removed)
            beat.check()
            self._match_cluster_version(ctx, material)
            beat.check()
            self.kubeadm.join(path)
        finally:
            path.unlink(missing_ok=True)
        self._register_self(ctx, members)

    def _match_cluster_version(self, ctx: Context, material: JoinMaterial) -> None:
        """Under the lease, before ``kubeadm join``: a control plane of a newer image raises
        the cluster's ClusterConfiguration version to its own (``bake_node.upgrade``, the step
        Cluster API's KubeadmControlPlane takes before scaling up a new-version machine); one
        of an older image, or more than one minor newer, stops here with the reason."""
        text = material.admin_kubeconfig()
        if text is None:
            log.warning("no admin kubeconfig in %s: the cluster's version is not checked",
                        material.admin_kubeconfig_name())
            return
        scratch = upgrade.scratch_dir(self.s.state_dir)
        try:
            kubeconfig = scratch / "admin.conf"
            fd = os.open(kubeconfig, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
            api = upgrade.ClusterApi(self.kubeadm, kubeconfig)
            before = upgrade.raise_cluster_version(api, ctx.kubernetes_version, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if before:
            self.state.save(raised_cluster_version={"from": before,
                                                    "to": "v" + ctx.kubernetes_version})


def record_etcd_status(db, ctx: Context, etcd: EtcdCtl, members=None) -> None:
    """Record the etcd members as this control plane sees them (item ``etcd-status``: every
    member's id, name, URLs, learner flag and health), for ``bake status``. Best effort."""
    try:
        members = members if members is not None else etcd.members()
        listed = [
            {
                "id": m.id,
                "name": m.name,
                "started": m.started,
                "learner": m.is_learner,
                "healthy": etcd.healthy(m),
                "peer_url": (m.peer_urls or ("",))[0],
                "client_url": (m.client_urls or ("",))[0],
            }
            for m in members
        ]
        ddb.put_item(
            db,
            ctx.config.lock_table,
            {
                **ETCD_STATUS_KEY,
                "members": {"S": json.dumps(listed, sort_keys=True)},
                "observed_by": {"S": ctx.identity.instance_id},
                "observed_at": {"N": f"{time.time():.3f}"},
            },
        )
    except Exception as exc:  # noqa: BLE001 - a status record never fails the node
        log.warning("could not record the etcd status: %s", exc)


def record_certificates(db, ctx: Context, kubernetes_dir: Path,
                        renewed_at: float | None = None) -> dict[str, float]:
    """Record this control plane's certificate expiries (item ``certs#<instance id>``: the
    earliest one's name and epoch seconds, every expiry as JSON, when checked and last renewed)
    for ``bake status``. Best effort: returns the expiries ({} when they cannot be read)."""
    try:
        found = certs.expiries(kubernetes_dir)
        if not found:
            return {}
        earliest = min(found, key=lambda k: found[k])
        item = {
            "pk": {"S": f"certs#{ctx.identity.instance_id}"},
            "instance_id": {"S": ctx.identity.instance_id},
            "hostname": {"S": ctx.identity.hostname},
            "earliest": {"S": earliest},
            "earliest_expiry": {"N": f"{found[earliest]:.0f}"},
            "expiries": {"S": json.dumps({k: round(v) for k, v in sorted(found.items())})},
            "checked_at": {"N": f"{time.time():.3f}"},
        }
        if renewed_at is not None:
            item["renewed_at"] = {"N": f"{renewed_at:.3f}"}
        ddb.put_item(db, ctx.config.lock_table, item)
        return found
    except Exception as exc:  # noqa: BLE001 - a status record never fails the node
        log.warning("could not record the certificate expiries: %s", exc)
        return {}

