"""The one adapter through which the agent calls kubeadm and kubectl, and the config renderer.

``Kubeadm`` runs the binaries (a stand-in replaces them in tests, by path) and parses what they
print: ``kubeadm token create --print-join-command`` (``kubeadm join <endpoint> --token <t>
--discovery-token-ca-cert-hash sha256:<hex>``) and ``kubeadm init phase upload-certs
--upload-certs`` (the certificate key on the last line). ``render_config`` renders
InitConfiguration + ClusterConfiguration or JoinConfiguration from the one template
``bake_node/templates/kubeadm.yaml.j2`` with the data of its config API version
(``API_VERSIONS``): v1beta3 for Kubernetes 1.30, v1beta4 for 1.31 and later (kubeadm config API
docs: v1beta4 is the default from 1.31), with the
control-plane endpoint's host in ``apiServer.certSANs``. Secrets only travel in files of mode
0600 that are deleted after use, never on the command line or in logs.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import subprocess
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from bake_node.errors import KubeadmError

log = logging.getLogger("bake_node.kubeadm")


#: What differs, in the config bake renders, between the kubeadm config API versions (kubeadm
#: config API reference, v1beta4 "Changes since v1beta3": ``extraArgs`` and ``kubeletExtraArgs``
#: became lists of ``name``/``value`` pairs instead of maps). One template reads these.
API_VERSIONS: dict[str, dict[str, Any]] = {
    "v1beta3": {"extra_args_as_list": False},
    "v1beta4": {"extra_args_as_list": True},
}


def api_version(kubernetes_version: str) -> str:
    """``"v1beta3"`` for 1.30 (and older), ``"v1beta4"`` for 1.31 and later."""
    minor = int(kubernetes_version.lstrip("v").split(".")[1])
    return "v1beta3" if minor <= 30 else "v1beta4"


def render_config(kind: str, kubernetes_version: str, **context: Any) -> tuple[str, list[dict]]:
    """Render a kubeadm config file.

    Args:
        kind: ``"init"`` (InitConfiguration + ClusterConfiguration) or ``"join"``.
        kubernetes_version: e.g. ``"1.30.12"``; picks the config API version.
        context: template values (``node_name``, ``advertise_address``,
            ``control_plane_endpoint``, and per kind: ``cluster_name``, ``pod_cidr``,
            ``service_cidr``, ``cert_sans``, ``certificate_key``, ``init_token`` and
            ``bootstrap_token_ttl`` (seconds) for the token ``kubeadm init`` creates /
            ``token``, ``ca_hash``, ``control_plane``). Optional for both: ``patches_dir``
            (kubeadm's patches directory: this node's KubeletConfiguration patch),
            ``node_labels`` (``k=v,...``), ``taints`` (``nodeRegistration.taints``; None
            keeps kubeadm's default) and ``cloud_provider`` (``"external"``: kubelet's
            ``--cloud-provider=external``, kubeadm docs "Cloud provider integrations", for an
            external cloud controller manager) and ``kubelet_flags`` (more kubelet flags,
            name -> value: the image credential provider's); for ``init``,
            ``skip_kube_proxy`` (True: the InitConfiguration's ``skipPhases:
            [addon/kube-proxy]``, kubeadm reference "kubeadm init phases", so the CNI's
            kube-proxy replacement serves Services).

    Returns:
        ``(text, documents)``: the rendered YAML and its parsed documents.

    Raises:
        jinja2.UndefinedError: a value is missing (StrictUndefined).
    """
    version = api_version(kubernetes_version)
    source = resources.files("bake_node.templates").joinpath("kubeadm.yaml.j2")
    env = _environment()
    for optional in ("patches_dir", "taints", "cloud_provider"):
        context.setdefault(optional, None)
    context.setdefault("node_labels", "")
    context.setdefault("kubelet_flags", {})
    context.setdefault("skip_kube_proxy", False)
    text = env.from_string(source.read_text()).render(
        kind=kind, kubernetes_version="v" + kubernetes_version.lstrip("v"),
        api_version=version, **API_VERSIONS[version], **context
    )
    text = text.lstrip("\n")
    docs = [d for d in yaml.safe_load_all(text) if d]
    return text, docs


def _environment():
    """The agent's one Jinja2 environment: StrictUndefined (a missing value raises), blocks
    trimmed, ``tojson`` quoting values as JSON (valid YAML)."""
    import jinja2

    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["tojson"] = _tojson
    return env


def render_manifest(source: Path, **context: Any) -> tuple[str, list[dict]]:
    """Render a baked manifest template (``manifests/**/<name>.yaml.j2``) with the cluster's
    values, e.g. ``pod_cidr`` for the CNI.

    Returns:
        ``(text, documents)``: the rendered YAML and its parsed (non-empty) documents.
    Raises:
        jinja2.UndefinedError: the template needs a value not given (StrictUndefined).
        yaml.YAMLError: the rendered text is not YAML.
    """
    return render_manifest_text(source.read_text(), **context)


def render_manifest_text(template: str, **context: Any) -> tuple[str, list[dict]]:
    """``render_manifest`` of a template's text (``bake render addons`` reads the templates
    from the bake package); same returns and errors."""
    text = _environment().from_string(template).render(**context)
    return text, [d for d in yaml.safe_load_all(text) if d]


def _tojson(value: Any) -> str:
    """JSON-quote a template value (valid YAML); a missing value raises ``UndefinedError``."""
    import json

    import jinja2

    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises UndefinedError naming the missing value
    return json.dumps(value)


def new_token() -> str:
    """A fresh bootstrap token ``[a-z0-9]{6}.[a-z0-9]{16}`` (kubeadm token docs)."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    pick = lambda n: "".join(secrets.choice(alphabet) for _ in range(n))  # noqa: E731
    return f"{pick(6)}.{pick(16)}"


def new_certificate_key() -> str:
    """A fresh certificate key: 32 random bytes as hex (``kubeadm certs certificate-key``)."""
    return secrets.token_hex(32)


@dataclass
class Call:
    """One finished kubeadm/kubectl call: ``argv``, start/end epoch seconds."""

    argv: list[str]
    started: float
    ended: float


@dataclass
class Kubeadm:
    """Runs kubeadm/kubectl.

    Args:
        kubeadm: the kubeadm executable; ``kubectl`` the kubectl executable.
        env: extra environment for both (stand-ins read their test root from it).
        admin_kubeconfig: the admin.conf kubectl uses on control planes.
    """

    kubeadm: str = "kubeadm"
    kubectl: str = "kubectl"
    env: dict[str, str] = field(default_factory=dict)
    admin_kubeconfig: str = "/etc/kubernetes/admin.conf"
    calls: list[Call] = field(default_factory=list)

    def _run(self, argv: list[str], timeout: float = 900.0) -> str:
        started = time.time()
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env={**os.environ, **self.env}
        )
        self.calls.append(Call(argv, started, time.time()))
        if proc.returncode != 0:
            tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
            raise KubeadmError(f"{' '.join(argv[:3])} failed ({proc.returncode}): {tail[0]}")
        return proc.stdout

    def seconds(self) -> float:
        """Total seconds spent inside kubeadm/kubectl so far (the benchmark subtracts it)."""
        return sum(c.ended - c.started for c in self.calls)

    def init(self, config: Path, ignore_preflight: tuple[str, ...] = ()) -> None:
        """``kubeadm init --config <file> --upload-certs``, with
        ``--ignore-preflight-errors=<checks>`` when ``ignore_preflight`` names any (a restore
        passes ``DirAvailable--var-lib-etcd``: its etcd data directory is already there)."""
        argv = [self.kubeadm, "init", "--config", str(config), "--upload-certs"]
        if ignore_preflight:
            argv.append("--ignore-preflight-errors=" + ",".join(ignore_preflight))
        self._run(argv)

    def join(self, config: Path) -> None:
        """``kubeadm join --config <file>``."""
        self._run([self.kubeadm, "join", "--config", str(config)])

    def prepare_control_plane(self, config: Path) -> None:
        """Download the shared certificates and make this node's (including the etcd client
        certificate the pre-join reconcile uses): ``kubeadm join phase control-plane-prepare
        download-certs`` then ``certs``."""
        for phase in ("download-certs", "certs"):
            self._run(
                [
                    self.kubeadm,
                    "join",
                    "phase",
                    "control-plane-prepare",
                    phase,
                    "--config",
                    str(config),
                ]
            )

    def renew_certificates(self) -> None:
        """``kubeadm certs renew all``: this control plane's leaf certificates and kubeconfig
        client certificates, renewed for another year (the static pods must restart after)."""
        self._run([self.kubeadm, "certs", "renew", "all"])

    def reset(self) -> None:
        """``kubeadm reset --force``: undo a half-done init or join on this node."""
        self._run([self.kubeadm, "reset", "--force"])

    def token_create(self, ttl: float) -> tuple[str, str]:
        """Create a bootstrap token valid ``ttl`` seconds.

        Returns:
            ``(token, "sha256:<hex>")`` parsed from ``--print-join-command``.
        """
        out = self._run(
            [self.kubeadm, "token", "create", "--print-join-command", "--ttl", f"{int(ttl)}s"]
        )
        token = re.search(r"--token\s+(\S+)", out)
        ca_hash = re.search(r"--discovery-token-ca-cert-hash\s+(sha256:[0-9a-f]{64})", out)
        if not token or not ca_hash:
            raise KubeadmError("kubeadm token create printed no join command")
        return token.group(1), ca_hash.group(1)

    def upload_certs(self) -> str:
        """Re-upload control-plane certificates under a new key; returns the key (hex)."""
        out = self._run([self.kubeadm, "init", "phase", "upload-certs", "--upload-certs"])
        keys = re.findall(r"\b[0-9a-f]{64}\b", out)
        if not keys:
            raise KubeadmError("kubeadm init phase upload-certs printed no certificate key")
        return keys[-1]

    def run_kubectl(self, args: list[str], kubeconfig: str | None = None,
                    timeout: float = 900.0) -> str:
        """``kubectl --kubeconfig <file> <args>`` (default file: ``admin_kubeconfig``); returns
        stdout.

        Raises:
            KubeadmError: kubectl exited non-zero (its last line in the message).
        """
        return self._run([self.kubectl, "--kubeconfig", kubeconfig or self.admin_kubeconfig,
                          *args], timeout=timeout)

    def apply(self, manifest: Path, server_side: bool = False) -> None:
        """``kubectl --kubeconfig <admin.conf> apply -f <manifest>``.

        Args:
            manifest: the file to apply.
            server_side: apply on the server (``--server-side --force-conflicts
                --field-manager=bake-node``): for large objects such as CRDs, whose client-side
                ``last-applied-configuration`` annotation would pass the API's 256 KiB limit on
                annotations (Kubernetes docs, "Server-Side Apply").
        Raises:
            KubeadmError: kubectl failed.
        """
        flags = ["--server-side", "--force-conflicts", "--field-manager=bake-node"] \
            if server_side else []
        self._run(
            [self.kubectl, "--kubeconfig", self.admin_kubeconfig, "apply", *flags, "-f",
             str(manifest)]
        )

    def create_if_absent(self, manifest: Path) -> bool:
        """``kubectl --kubeconfig <admin.conf> create -f <manifest>``, where an object that
        exists already is left as it is (kubectl's "AlreadyExists"): for objects made once, such
        as a generated password, that ``apply`` would overwrite.

        Returns:
            True when created, False when it existed.
        Raises:
            KubeadmError: kubectl failed otherwise.
        """
        try:
            self._run([self.kubectl, "--kubeconfig", self.admin_kubeconfig, "create", "-f",
                       str(manifest)])
        except KubeadmError as exc:
            # kubectl prints the API's reason: 'Error from server (AlreadyExists): ...'
            if "(AlreadyExists)" in str(exc):
                return False
            raise
        return True

    def rollout_status(self, kind: str, namespace: str, name: str, timeout_s: float) -> None:
        """``kubectl rollout status <kind>/<name> -n <namespace> --timeout=<s>s``: wait until a
        Deployment, DaemonSet or StatefulSet has its pods updated and available.

        Raises:
            KubeadmError: not rolled out within ``timeout_s`` seconds, or absent.
        """
        seconds = max(1, int(timeout_s))
        self._run(
            [self.kubectl, "--kubeconfig", self.admin_kubeconfig, "rollout", "status",
             f"{kind.lower()}/{name}", "-n", namespace, f"--timeout={seconds}s"],
            timeout=seconds + 60,
        )
