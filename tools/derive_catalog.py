#!/usr/bin/env python3
"""Derive bake's shipped release catalog from kubespray's checksum tables.

Usage: python tools/derive_catalog.py ../shared/data/upstream > cli/bake/data/catalog.yaml

Reads the kubespray checksum files under ../shared/data/upstream (see its README for their
commits) and writes bake's own format: only the artifacts and versions bake pins, for amd64 and
arm64. The version pairings (crictl, containerd, runc, CNI plugins per Kubernetes minor) and the
kubeadm image tags are bake's choices, written below with their sources.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ARCHES = ("amd64", "arm64")

# k8s minor -> (source file, crictl, containerd, runc, cni-plugins, images at the minor's .0)
# The etcd client (etcdctl, for the node agent) is the release of the minor's etcd image tag
# (ETCD_CLIENT below): same 3.x line as the server kubeadm runs.
# Image tags are what kubeadm itself pulls: `kubeadm config images list --kubernetes-version vX.Y.Z`
# prints them, from cmd/kubeadm/app/constants/constants.go of the release branch at the tag:
# SupportedEtcdVersion[minor] (the etcd tag), CoreDNSVersion, PauseVersion. The build proves them:
# bake-images' validate phase runs the baked kubeadm's `config images list` and fails on any
# difference (a real kubeadm on a real mirror; the local demo's stand-in answers from this catalog).
# Sources per minor (kubernetes/kubernetes pull requests and the release notes they carry):
#   1.30.0: etcd 3.5.12-0, coredns v1.11.1, pause 3.9 (release-1.30 constants at v1.30.0).
#   1.31.0: etcd 3.5.15-0 (#126240 before the 1.31 freeze), coredns v1.11.1, pause 3.10.
#   1.32.0: etcd 3.5.16-0 (DefaultEtcdVersion/SupportedEtcdVersion[32] on release-1.32),
#           coredns v1.11.3 (coredns/deployment#303: "kubeadm v1.32 still uses coredns v1.11.3").
#   1.33.0: etcd 3.5.21-0 (#131144; "release-1.33 is at .21", #134779), coredns v1.12.0
#           (coredns/deployment#306 citing v1.33.0 build/dependencies.yaml), pause 3.10.
#   1.34.0: etcd 3.6.4-0, coredns v1.12.1, pause 3.10.1 (release-1.34 constants at v1.34.0).
#   1.35.0: etcd 3.6.6-0 (#135271, merged for 1.35), coredns v1.13.1, pause 3.10.1.
#   1.36.0: etcd 3.6.8-0 (the 3.6.9/3.6.10 bumps, #137956 and #138392, waited for the 1.36
#           thaw, i.e. landed after v1.36.0), coredns v1.13.1, pause 3.10.1.
MINORS = {
    "1.30": (
        "kubespray-checksums-2025-05-08.yml",
        "1.30.1",
        "1.7.27",
        "1.2.6",
        "1.4.1",
        {"pause": "3.9", "etcd": "3.5.12-0", "coredns": "v1.11.1"},
    ),
    "1.31": (
        "kubespray-checksums-2025-05-08.yml",
        "1.31.1",
        "1.7.27",
        "1.2.6",
        "1.4.1",
        {"pause": "3.10", "etcd": "3.5.15-0", "coredns": "v1.11.1"},
    ),
    "1.32": (
        "kubespray-checksums-2025-05-08.yml",
        "1.32.0",
        "1.7.27",
        "1.2.6",
        "1.4.1",
        {"pause": "3.10", "etcd": "3.5.16-0", "coredns": "v1.11.3"},
    ),
    "1.33": (
        "kubespray-checksums-2026-04-17.yml",
        "1.33.0",
        "2.1.7",
        "1.3.5",
        "1.7.1",
        {"pause": "3.10", "etcd": "3.5.21-0", "coredns": "v1.12.0"},
    ),
    "1.34": (
        "kubespray-checksums-2026-08-21.yml",
        "1.34.0",
        "2.1.9",
        "1.3.6",
        "1.7.1",
        {"pause": "3.10.1", "etcd": "3.6.4-0", "coredns": "v1.12.1"},
    ),
    "1.35": (
        "kubespray-checksums-2026-08-21.yml",
        "1.35.0",
        "2.2.7",
        "1.4.3",
        "1.8.0",
        {"pause": "3.10.1", "etcd": "3.6.6-0", "coredns": "v1.13.1"},
    ),
    "1.36": (
        "kubespray-checksums-2026-08-21.yml",
        "1.36.0",
        "2.3.4",
        "1.4.3",
        "1.9.1",
        {"pause": "3.10.1", "etcd": "3.6.8-0", "coredns": "v1.13.1"},
    ),
}


# the etcd release whose etcdctl is baked, per minor: the version of the .0 etcd image tag
ETCD_CLIENT = {m: tags["etcd"].split("-")[0] for m, (*_, tags) in MINORS.items()}


def _from(minor: str, first: int, last: int, tags: dict[str, str]) -> dict[str, dict[str, str]]:
    return {f"{minor}.{p}": dict(tags) for p in range(first, last + 1)}


# Per-patch changes of kubeadm's image set within a minor: (minor, first patch, last patch, tags).
# Later rows win. Patch releases are monthly (none in October 2025); a cherry-pick lands in the
# first patch release after it merged.
#   1.30.5, 1.31.1: coredns v1.11.3 (#126449, cherry-picked as #126796 and siblings in Aug-Sep
#       2024: "This really should've shipped in 1.31 but it was available too late").
#   1.30.5: etcd 3.5.15-0 (cherry-pick #126395 of #126240 to release-1.30, merged 2024-09-04).
#       The 3.5.16 and 3.5.17 cherry-picks to release-1.30/1.31 were closed unmerged (#127955,
#       #129673, #129676), so both stay at 3.5.15-0 through the patches pinned here.
#   1.32.10, 1.33.6: etcd 3.5.24-0 (#134861's cherry-picks #135019 and #135018, merged
#       2025-11-03, released in the November 2025 patches).
#   1.34.8, 1.35.5, 1.36.1: etcd 3.6.10-0 (#138392, merged 2026-04 after the 1.36 thaw; release
#       note "for supported control plane versions v1.34, v1.35, and v1.36"), then
#   1.34.9, 1.35.6, 1.36.2: etcd 3.6.11-0 (#138746, merged 2026-05, same note). These two rows
#       are inferred from the release notes and merge dates; the validate phase checks them.
IMAGE_CHANGES = [
    ("1.30", 5, 99, {"coredns": "v1.11.3", "etcd": "3.5.15-0"}),
    ("1.31", 1, 99, {"coredns": "v1.11.3"}),
    ("1.32", 10, 99, {"etcd": "3.5.24-0"}),
    ("1.33", 6, 99, {"etcd": "3.5.24-0"}),
    ("1.34", 8, 8, {"etcd": "3.6.10-0"}),
    ("1.34", 9, 99, {"etcd": "3.6.11-0"}),
    ("1.35", 5, 5, {"etcd": "3.6.10-0"}),
    ("1.35", 6, 99, {"etcd": "3.6.11-0"}),
    ("1.36", 1, 1, {"etcd": "3.6.10-0"}),
    ("1.36", 2, 99, {"etcd": "3.6.11-0"}),
]


def image_overrides(minor: str, patches: list[str]) -> dict[str, dict[str, str]]:
    """``{patch: {tag: value}}`` for the patches of ``minor`` whose image set differs from .0."""
    out: dict[str, dict[str, str]] = {}
    for row_minor, first, last, tags in IMAGE_CHANGES:
        if row_minor != minor:
            continue
        for version, values in _from(minor, first, last, tags).items():
            if version in patches:
                out.setdefault(version, {}).update(values)
    return dict(sorted(out.items(), key=lambda kv: int(kv[0].split(".")[2])))


TABLES = {  # bake artifact -> kubespray table
    "kubeadm": "kubeadm_checksums",
    "kubelet": "kubelet_checksums",
    "kubectl": "kubectl_checksums",
    "crictl": "crictl_checksums",
    "containerd": "containerd_archive_checksums",
    "runc": "runc_checksums",
    "cni-plugins": "cni_binary_checksums",
    "etcd": "etcd_binary_checksums",
}


# Add-ons baked with each minor: their version, and the images that version runs (what the
# image stages, imports and pins beside kubeadm's set; manifests/<add-on>/ refers to them by
# name through the image manifest, flannel's by the same refs).
#   flannel v0.25.6: flannel-io/flannel release v0.25.6, Documentation/kube-flannel.yml at the
#   tag (images docker.io/flannel/flannel:v0.25.6 and flannel-cni-plugin:v1.5.1-flannel2; the
#   release notes list no Kubernetes minimum above 1.20, and it runs on 1.30-1.36 here).
#   metrics-server v0.7.2: kubernetes-sigs/metrics-server release v0.7.2 (README "Compatibility
#   Matrix": 0.7.x supports Kubernetes 1.19+; image registry.k8s.io/metrics-server/metrics-server).
#   local-path-provisioner v0.0.30: rancher/local-path-provisioner release v0.0.30 (README:
#   Kubernetes v1.12+; image docker.io/rancher/local-path-provisioner; its helper pod runs
#   busybox, pinned here to docker.io/library/busybox:1.36.1 so nothing is pulled at boot).
#   cluster-autoscaler: kubernetes/autoscaler README "Releases": use the Cluster Autoscaler
#   line of the control plane's minor (1.30.x with Kubernetes 1.30); bake pins each line's
#   first release (v<minor>.0, registry.k8s.io/autoscaling/cluster-autoscaler); a later patch
#   goes in a catalog overlay (addons.cluster-autoscaler and its addon_releases entry).
#   aws-cloud-controller-manager: kubernetes/cloud-provider-aws README "Compatibility with
#   Kubernetes": the CCM minor matches the cluster's; bake pins each line's first release
#   (v<minor>.0, registry.k8s.io/provider-aws/cloud-controller-manager), as for the autoscaler.
#   aws-ebs-csi-driver v1.32.0: kubernetes-sigs/aws-ebs-csi-driver release v1.32.0 (CHANGELOG;
#   its docs/install.md "Kubernetes version compatibility": 1.20+), the driver image from
#   public.ecr.aws/ebs-csi-driver, and the kubernetes-csi sidecars of that release's manifests
#   (deploy/kubernetes/base at the tag) from registry.k8s.io/sig-storage: external-provisioner
#   v5.0.1, external-attacher v4.6.1, external-resizer v1.11.1, livenessprobe v2.13.0,
#   node-driver-registrar v2.11.0.
#   cilium: cilium/cilium Documentation/network/kubernetes/compatibility.rst at v1.18.14 lists
#   1.30, 1.31, 1.32 and 1.33 as e2e tested, so those minors get v1.18.14; 1.34-1.36 get the
#   next line, v1.19.4 (its patch as named by its release notes; its compatibility page was not
#   reachable here, so check it before relying on 1.35 and 1.36). Images quay.io/cilium/cilium
#   and quay.io/cilium/operator-generic at the same tag (the Helm chart's image and
#   operator.image); no envoy, hubble or certgen image: bake's manifest turns those off.
#   monitoring: bake's bundle, named by its Prometheus release, v2.54.1 (prometheus/prometheus
#   release v2.54.1, image quay.io/prometheus/prometheus), with node-exporter v1.8.2
#   (prometheus/node_exporter release, quay.io/prometheus/node-exporter), kube-state-metrics
#   v2.13.0 (kubernetes/kube-state-metrics README "Compatibility matrix": built against
#   client-go 1.30; it lists and watches GA APIs only, registry.k8s.io/kube-state-metrics) and
#   Grafana 11.2.0 (grafana/grafana release v11.2.0, docker.io/grafana/grafana). The same for
#   every minor; a newer kube-state-metrics for a newer minor goes in an overlay.
#   ingress-nginx: kubernetes/ingress-nginx README "Supported Versions table" at its last
#   release commit (2026-03-19, "Release controller v1.15.1/v1.14.5/v1.13.9"): v1.14.5 is
#   e2e-tested on 1.30-1.34 and v1.15.1 on 1.31-1.35, so 1.30 gets v1.14.5 and 1.31 on get
#   v1.15.1. The project is retired (README "Ingress NGINX Retirement": no releases or
#   security fixes after March 2026), so no release names 1.36: it gets v1.15.1 untested.
#   Image registry.k8s.io/ingress-nginx/controller at the tag (deploy/static/provider/*/
#   deploy.yaml at controller-v1.15.1 and -v1.14.5); no kube-webhook-certgen: bake's manifest
#   runs without the admission webhook.
#   calico: the newest Calico each kubespray table (the same as the Kubernetes checksums) pins
#   for the minors it covers: v3.29.3 with 1.30-1.32 (commit 1c4b18b08, 2025-05-08), v3.30.7 with
#   1.33 (commit d068ae541) and v3.31.7 with 1.34-1.36 (commit 46dbdd399); check Calico's
#   "System requirements" page of the line before relying on a pairing. Images quay.io/calico/
#   node, cni and kube-controllers at the tag (manifests/calico.yaml at the tag). Its CRDs are one
#   upstream file, manifests/crds.yaml at the tag, fetched from raw.githubusercontent.com as
#   kubespray does (calico_crds_download_url) and checked against kubespray's
#   calico_crds_checksums (2026-08-21 table, which holds 3.29.x-3.31.x): ADDON_FILES.
ADDONS_EVERY_MINOR = {
    "aws-ebs-csi-driver": "v1.32.0",
    "flannel": "v0.25.6",
    "metrics-server": "v0.7.2",
    "local-path-provisioner": "v0.0.30",
    "monitoring": "v2.54.1",
}
CILIUM_1_18, CILIUM_1_19 = "v1.18.14", "v1.19.4"
INGRESS_NGINX_1_14, INGRESS_NGINX_1_15 = "v1.14.5", "v1.15.1"
CALICO_3_29, CALICO_3_30, CALICO_3_31 = "v3.29.3", "v3.30.7", "v3.31.7"
#: add-on -> the upstream files each version needs beside its images: name -> (URL, the
#: upstream table and key holding its SHA-256); derive() reads the SHA-256 from that table
ADDON_FILES = {
    "calico": {
        version: {"crds": (
            f"https://raw.githubusercontent.com/projectcalico/calico/{version}/manifests/crds.yaml",
            "kubespray-checksums-2026-08-21.yml", "calico_crds_checksums")}
        for version in (CALICO_3_29, CALICO_3_30, CALICO_3_31)
    },
}
ADDON_RELEASES = {
    "aws-ebs-csi-driver": {
        "v1.32.0": {
            "images": {
                "aws-ebs-csi-driver": "public.ecr.aws/ebs-csi-driver/aws-ebs-csi-driver:v1.32.0",
                "csi-provisioner": "registry.k8s.io/sig-storage/csi-provisioner:v5.0.1",
                "csi-attacher": "registry.k8s.io/sig-storage/csi-attacher:v4.6.1",
                "csi-resizer": "registry.k8s.io/sig-storage/csi-resizer:v1.11.1",
                "livenessprobe": "registry.k8s.io/sig-storage/livenessprobe:v2.13.0",
                "csi-node-driver-registrar":
                    "registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.11.0",
            }
        }
    },
    "flannel": {
        "v0.25.6": {
            "images": {
                "flannel": "docker.io/flannel/flannel:v0.25.6",
                "flannel-cni-plugin": "docker.io/flannel/flannel-cni-plugin:v1.5.1-flannel2",
            }
        }
    },
    "metrics-server": {
        "v0.7.2": {
            "images": {
                "metrics-server": "registry.k8s.io/metrics-server/metrics-server:v0.7.2",
            }
        }
    },
    "monitoring": {
        "v2.54.1": {
            "images": {
                "prometheus": "quay.io/prometheus/prometheus:v2.54.1",
                "node-exporter": "quay.io/prometheus/node-exporter:v1.8.2",
                "kube-state-metrics":
                    "registry.k8s.io/kube-state-metrics/kube-state-metrics:v2.13.0",
                "grafana": "docker.io/grafana/grafana:11.2.0",
            }
        }
    },
    "local-path-provisioner": {
        "v0.0.30": {
            "images": {
                "local-path-provisioner": "docker.io/rancher/local-path-provisioner:v0.0.30",
                "busybox": "docker.io/library/busybox:1.36.1",
            }
        }
    },
    "aws-cloud-controller-manager": {
        f"v{minor}.0": {
            "images": {
                "aws-cloud-controller-manager":
                    f"registry.k8s.io/provider-aws/cloud-controller-manager:v{minor}.0",
            }
        }
        for minor in MINORS
    },
    "cilium": {
        version: {
            "images": {
                "cilium": f"quay.io/cilium/cilium:{version}",
                "cilium-operator": f"quay.io/cilium/operator-generic:{version}",
            }
        }
        for version in (CILIUM_1_18, CILIUM_1_19)
    },
    "ingress-nginx": {
        version: {
            "images": {
                "ingress-nginx-controller": f"registry.k8s.io/ingress-nginx/controller:{version}",
            }
        }
        for version in (INGRESS_NGINX_1_14, INGRESS_NGINX_1_15)
    },
    "calico": {
        version: {
            "images": {
                "calico-node": f"quay.io/calico/node:{version}",
                "calico-cni": f"quay.io/calico/cni:{version}",
                "calico-kube-controllers": f"quay.io/calico/kube-controllers:{version}",
            }
        }
        for version in (CALICO_3_29, CALICO_3_30, CALICO_3_31)
    },
    "cluster-autoscaler": {
        f"v{minor}.0": {
            "images": {
                "cluster-autoscaler":
                    f"registry.k8s.io/autoscaling/cluster-autoscaler:v{minor}.0",
            }
        }
        for minor in MINORS
    },
}


def addons(minor: str) -> dict[str, str]:
    """The add-ons baked with ``minor``: name -> version (a key of ``ADDON_RELEASES[name]``)."""
    cilium = CILIUM_1_18 if minor in ("1.30", "1.31", "1.32", "1.33") else CILIUM_1_19
    ingress = INGRESS_NGINX_1_14 if minor == "1.30" else INGRESS_NGINX_1_15
    calico = (CALICO_3_29 if minor in ("1.30", "1.31", "1.32") else
              CALICO_3_30 if minor == "1.33" else CALICO_3_31)
    per_minor = {"cluster-autoscaler": f"v{minor}.0", "aws-cloud-controller-manager": f"v{minor}.0",
                 "cilium": cilium, "ingress-nginx": ingress, "calico": calico}
    return dict(sorted({**ADDONS_EVERY_MINOR, **per_minor}.items()))


def addon_releases(upstream: Path) -> dict:
    """``ADDON_RELEASES`` with each version's ``files`` (``ADDON_FILES``): name -> {url,
    sha256}, the SHA-256 read from the upstream table that pins it (the version without v)."""
    out = {name: {v: dict(r) for v, r in versions.items()} for name, versions in
           ADDON_RELEASES.items()}
    for addon, versions in ADDON_FILES.items():
        for version, files in versions.items():
            out[addon][version]["files"] = {
                name: {"url": url, "sha256": _sha(
                    yaml.safe_load((upstream / table).read_text())[key], "no_arch",
                    version.lstrip("v"))}
                for name, (url, table, key) in files.items()}
    return out


def _sha(table: dict, arch: str, version: str) -> str:
    value = table[arch][version]
    return str(value).removeprefix("sha256:")


def derive(upstream: Path) -> dict:
    data = {
        name: yaml.safe_load((upstream / name).read_text())
        for name in {m[0] for m in MINORS.values()}
    }
    sha: dict[str, dict[str, dict[str, str]]] = {name: {} for name in TABLES}
    kubernetes = {}
    for minor, (src, crictl, containerd, runc, cni, images) in MINORS.items():
        d = data[src]
        patches = sorted(
            (v for v in d["kubeadm_checksums"]["amd64"] if v.startswith(minor + ".")),
            key=lambda v: int(v.split(".")[2]),
        )
        for v in patches:
            for name in ("kubeadm", "kubelet", "kubectl"):
                sha[name][v] = {a: _sha(d[TABLES[name]], a, v) for a in ARCHES}
        for name, v in (
            ("crictl", crictl),
            ("containerd", containerd),
            ("runc", runc),
            ("cni-plugins", cni),
            ("etcd", ETCD_CLIENT[minor]),
        ):
            sha[name][v] = {a: _sha(d[TABLES[name]], a, v) for a in ARCHES}
        entry = {
            "crictl": crictl,
            "containerd": {"source": "release", "version": containerd},
            "runc": {"source": "release", "version": runc},
            "cni-plugins": cni,
            "etcd": ETCD_CLIENT[minor],
            # cloud-provider-aws's line of the minor (README "Compatibility with Kubernetes"),
            # as for the cloud controller; no SHA-256 is shipped for it (upstream publishes
            # none bake can cite): an overlay that pins one bakes it (catalog OPTIONAL_ARTIFACTS)
            "ecr-credential-provider": f"{minor}.0",
            "images": images,
            "addons": addons(minor),
        }
        overrides = image_overrides(minor, patches)
        if overrides:
            entry["image_overrides"] = overrides
        kubernetes[minor] = entry
    return {
        "schema": "bake.catalog/v1",
        "kubernetes": kubernetes,
        "addon_releases": addon_releases(upstream),
        "checksums": {k: dict(sorted(v.items())) for k, v in sha.items()},
    }


HEADER = """\
# bake release catalog (format bake.catalog/v1), generated by tools/derive_catalog.py.
#
# Source of the SHA-256 values: kubernetes-sigs/kubespray checksum tables,
#   roles/kubespray-defaults/defaults/main/checksums.yml at commit 1c4b18b08
#   (2025-05-08: 1.30-1.32) and at commit d068ae541 (2026-04-17: 1.33), and
#   roles/kubespray_defaults/vars/main/checksums.yml at commit 46dbdd399 (2026-08-21: 1.34-1.36),
# which record the hashes of the upstream release files: kubeadm/kubelet/kubectl from the
# Kubernetes release bucket, crictl, containerd, runc and CNI plugins from their GitHub releases.
# Image tags: kubeadm's own image set per patch (cmd/kubeadm/app/constants on each release branch;
# sources per minor and per patch in tools/derive_catalog.py), checked at build time against the
# baked kubeadm's `kubeadm config images list`. Add-ons (addons per minor, addon_releases): the
# version of each add-on baked with the minor and the images it runs (sources in
# tools/derive_catalog.py, ADDON_RELEASES); an add-on's upstream files (Calico's CRDs) with the
# SHA-256 kubespray pins for them (calico_crds_checksums, 2026-08-21 table; ADDON_FILES).
# ecr-credential-provider (per minor): the version only. No SHA-256 is shipped for it (upstream
# publishes none bake can cite), so it is baked only when an overlay pins checksums for it.
# Download URLs and install paths are in bake/catalog/model.py (ARTIFACT_SPECS).
#
# Add a release without a new bake: write an overlay in this format holding only what is new
# (e.g. checksums.kubeadm["1.30.13"], kubelet, kubectl) and pass it with --catalog FILE.
"""


def main() -> None:
    upstream = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/upstream")
    sys.stdout.write(HEADER)
    sys.stdout.write(yaml.safe_dump(derive(upstream), sort_keys=False, width=120))


if __name__ == "__main__":
    main()
