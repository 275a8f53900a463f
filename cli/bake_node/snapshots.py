"""etcd snapshots: take, verify, upload, keep by a retention policy, and restore on boot.

A snapshot is one object ``s3://<bucket>/<prefix><id>.tar.gz`` with SSE-KMS under the cluster
key, where ``id`` is ``<UTC time, %Y%m%dT%H%M%SZ>-<instance id>``. The archive holds

- ``etcd.db``: ``etcdctl snapshot save`` against this control plane's own member (etcd docs,
  "Disaster recovery": a snapshot is taken from one live member), verified with ``snapshot
  status`` before upload;
- ``pki/``: the certificates and keys every control plane shares (``ca``, ``sa``,
  ``front-proxy-ca``, ``etcd/ca``; kubeadm docs, "Creating Highly Available Clusters with
  kubeadm", manual certificate distribution). The restored etcd holds Secrets, service-account
  tokens and node credentials issued under those keys: a restore with new CAs would orphan
  every kubelet and token, so they travel with the data, encrypted under the cluster key.

Object metadata (S3 user metadata, all strings): ``sha256`` of the archive, ``db-sha256``,
``revision``, ``total-keys``, ``db-bytes``, ``kubernetes-version``, ``taken-by``.

Restore follows the etcd documentation's procedure: the data directory of ONE new member is
made from the snapshot (``snapshot restore`` with that member's name and peer URL only: a new
cluster of one, fresh cluster ID), kubeadm init then starts etcd on it, and the other control
planes join one at a time through the usual ``kubeadm join --control-plane`` (member add, then
start), under the control-plane lease. ``etcdutl`` does status and restore from etcd 3.5 on
(etcd v3.5 CHANGELOG: "etcdutl" takes over the offline ``snapshot`` commands; etcd 3.6 removes
them from etcdctl); with etcd 3.4, which has no etcdutl, etcdctl does them.
"""

from __future__ import annotations

import calendar
import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from bake_node.aws import s3
from bake_node.errors import NodeError

log = logging.getLogger("bake_node.snapshots")

ID_TIME = "%Y%m%dT%H%M%SZ"
SUFFIX = ".tar.gz"
# the certificates every control plane shares (kubeadm: "Manual certificate distribution")
SHARED_PKI = ("ca.crt", "ca.key", "sa.key", "sa.pub", "front-proxy-ca.crt",
              "front-proxy-ca.key", "etcd/ca.crt", "etcd/ca.key")


class SnapshotError(NodeError):
    """A snapshot could not be taken, verified, found or restored."""


@dataclass(frozen=True)
class SnapshotPolicy:
    """``etcdSnapshots`` of node.yaml.

    Attributes:
        bucket: the S3 bucket; ``prefix`` the key prefix (ends with ``/``).
        interval_s: seconds between snapshots of the cluster (one node takes each).
        keep_hourly_h: hours during which the newest snapshot of each hour is kept.
        keep_daily_d: days during which the newest snapshot of each day is kept.
    """

    bucket: str
    prefix: str = "etcd-snapshots/"
    interval_s: int = 1800
    keep_hourly_h: int = 48
    keep_daily_d: int = 30


@dataclass(frozen=True)
class SnapshotRef:
    """A stored snapshot: ``id``, S3 ``key``, ``taken_at`` (epoch seconds), ``size`` (bytes)."""

    id: str
    key: str
    taken_at: float
    size: int = 0


def new_id(instance_id: str, now: float) -> str:
    """``<UTC %Y%m%dT%H%M%SZ>-<instance id>``: sorts by time, names its taker."""
    return f"{time.strftime(ID_TIME, time.gmtime(now))}-{instance_id}"


def parse_id(snapshot_id: str) -> float | None:
    """The epoch seconds a snapshot id was taken at, or None when it is not one."""
    stamp = snapshot_id.split("-", 1)[0]
    try:
        return float(calendar.timegm(time.strptime(stamp, ID_TIME)))
    except ValueError:
        return None


def refs(objects, prefix: str) -> list[SnapshotRef]:
    """Snapshot references from S3 listing entries (``{Key, Size}``), newest first; other
    objects under the prefix are ignored."""
    out = []
    for obj in objects:
        name = obj["Key"][len(prefix):]
        if "/" in name or not name.endswith(SUFFIX):
            continue
        sid = name[: -len(SUFFIX)]
        taken = parse_id(sid)
        if taken is not None:
            out.append(SnapshotRef(sid, obj["Key"], taken, int(obj.get("Size", 0))))
    return sorted(out, key=lambda r: (r.taken_at, r.id), reverse=True)


def expired(snapshots: list[SnapshotRef], now: float, policy: SnapshotPolicy) -> list[SnapshotRef]:
    """The snapshots the retention policy no longer keeps.

    Kept: the newest of all; the newest of each UTC hour taken within ``keep_hourly_h`` hours
    of ``now``; the newest of each UTC day within ``keep_daily_d`` days (the grandfather-father
    scheme of etcd-manager's and Velero's schedules). Everything else is returned, oldest last.
    """
    keep: set[str] = set()
    ordered = sorted(snapshots, key=lambda r: (r.taken_at, r.id), reverse=True)
    if ordered:
        keep.add(ordered[0].id)
    seen_hours: set[int] = set()
    seen_days: set[int] = set()
    for ref in ordered:
        age = now - ref.taken_at
        hour, day = int(ref.taken_at // 3600), int(ref.taken_at // 86400)
        if age <= policy.keep_hourly_h * 3600 and hour not in seen_hours:
            seen_hours.add(hour)
            keep.add(ref.id)
        if age <= policy.keep_daily_d * 86400 and day not in seen_days:
            seen_days.add(day)
            keep.add(ref.id)
    return [r for r in ordered if r.id not in keep]


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class SnapshotTool:
    """The etcd snapshot commands.

    Args:
        etcdctl: the etcdctl executable (``snapshot save``, and status/restore with etcd 3.4).
        etcdutl: the etcdutl executable; when it is not found, etcdctl does status/restore.
        env: extra environment for both.
        timeout: seconds per command.
    """

    etcdctl: str = "etcdctl"
    etcdutl: str = "etcdutl"
    env: dict[str, str] | None = None
    timeout: float = 300.0

    def _offline(self) -> str:
        return self.etcdutl if shutil.which(self.etcdutl) else self.etcdctl

    def _run(self, argv: list[str]) -> str:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout,
                              env={**os.environ, "ETCDCTL_API": "3", **(self.env or {})})
        if proc.returncode != 0:
            tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
            raise SnapshotError(f"{Path(argv[0]).name} {' '.join(argv[1:3])} failed: {tail[0]}")
        return proc.stdout

    def save(self, endpoint: str, tls: dict[str, Path], dest: Path) -> None:
        """``etcdctl snapshot save`` from the one member at ``endpoint`` into ``dest``."""
        argv = [self.etcdctl, "--endpoints", endpoint]
        for flag, path in sorted(tls.items()):
            argv += [f"--{flag}", str(path)]
        self._run(argv + ["snapshot", "save", str(dest)])

    def status(self, db: Path) -> dict[str, int]:
        """``snapshot status -w json``: ``{hash, revision, totalKey, totalSize}`` (bytes).

        Raises:
            SnapshotError: the file is not a valid snapshot (the check before upload/restore).
        """
        out = self._run([self._offline(), "snapshot", "status", str(db), "-w", "json"])
        try:
            data = json.loads(out)
            return {k: int(data[k]) for k in ("hash", "revision", "totalKey", "totalSize")}
        except (ValueError, KeyError, TypeError):
            raise SnapshotError(f"snapshot status of {db} printed no status") from None

    def restore(self, db: Path, data_dir: Path, name: str, peer_url: str) -> None:
        """``snapshot restore`` into ``data_dir`` as the one member ``name`` at ``peer_url``."""
        self._run([self._offline(), "snapshot", "restore", str(db), "--data-dir", str(data_dir),
                   "--name", name, "--initial-cluster", f"{name}={peer_url}",
                   "--initial-advertise-peer-urls", peer_url])


def make_bundle(db: Path, pki_dir: Path, dest: Path) -> None:
    """Write ``dest`` (tar.gz): ``etcd.db`` and ``pki/<SHARED_PKI>`` (mode 0600 file).

    Raises:
        SnapshotError: a shared certificate is missing from ``pki_dir``.
    """
    missing = [n for n in SHARED_PKI if not (pki_dir / n).is_file()]
    if missing:
        raise SnapshotError(f"{pki_dir} lacks {', '.join(missing)}: not a control plane's PKI")
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
        tar.add(db, arcname="etcd.db")
        for name in SHARED_PKI:
            tar.add(pki_dir / name, arcname=f"pki/{name}")


def open_bundle(bundle: Path, workdir: Path, pki_dir: Path) -> Path:
    """Unpack a snapshot archive: the shared certificates into ``pki_dir`` (keys 0600), the
    database into ``workdir/etcd.db``; returns that path. Only the expected members are read.

    Raises:
        SnapshotError: the archive lacks a member or is not a gzip tar.
    """
    wanted = {"etcd.db": workdir / "etcd.db",
              **{f"pki/{n}": pki_dir / n for n in SHARED_PKI}}
    try:
        with tarfile.open(bundle, mode="r:gz") as tar:
            names = set(tar.getnames())
            missing = sorted(set(wanted) - names)
            if missing:
                raise SnapshotError(f"snapshot archive lacks {', '.join(missing)}")
            for member, dest in wanted.items():
                data = tar.extractfile(member)
                if data is None:
                    raise SnapshotError(f"snapshot archive member {member} is not a file")
                dest.parent.mkdir(parents=True, exist_ok=True)
                mode = 0o600 if dest.suffix == ".key" or member == "etcd.db" else 0o644
                fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(io.BufferedReader(data), out)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise SnapshotError(f"cannot read snapshot archive {bundle}: {exc}") from None
    return wanted["etcd.db"]


class SnapshotStore:
    """The cluster's snapshots in S3.

    Args:
        s3client: boto3 S3 client; ``policy`` the ``SnapshotPolicy``; ``kms_key_id`` the
            cluster key (SSE-KMS).
    """

    def __init__(self, s3client, policy: SnapshotPolicy, kms_key_id: str):
        self.s3, self.policy, self.kms_key_id = s3client, policy, kms_key_id

    def key(self, snapshot_id: str) -> str:
        """The object key of ``snapshot_id``."""
        return f"{self.policy.prefix}{snapshot_id}{SUFFIX}"

    def list(self) -> list[SnapshotRef]:
        """Every stored snapshot, newest first."""
        return refs(s3.list_objects(self.s3, self.policy.bucket, self.policy.prefix),
                    self.policy.prefix)

    def upload(self, snapshot_id: str, bundle: Path, metadata: dict[str, str]) -> None:
        """Store ``bundle`` as ``snapshot_id`` with ``metadata`` (SSE-KMS)."""
        s3.put_file(self.s3, self.policy.bucket, self.key(snapshot_id), bundle,
                    self.kms_key_id, metadata)

    def fetch(self, snapshot_id: str, dest: Path) -> dict[str, str]:
        """Download ``snapshot_id`` to ``dest`` and check its SHA-256 against its metadata.

        Returns:
            the object's metadata.

        Raises:
            SnapshotError: no such snapshot, or the download does not match its SHA-256.
        """
        meta = s3.head(self.s3, self.policy.bucket, self.key(snapshot_id))
        if meta is None:
            raise SnapshotError(f"no snapshot {snapshot_id} in s3://{self.policy.bucket}/"
                                f"{self.policy.prefix}")
        meta = s3.download(self.s3, self.policy.bucket, self.key(snapshot_id), dest)
        got = sha256_file(dest)
        if got != meta.get("sha256"):
            raise SnapshotError(f"snapshot {snapshot_id} downloaded with SHA-256 {got}, its "
                                f"metadata says {meta.get('sha256')}: not restoring it")
        return meta

    def prune(self, now: float) -> list[str]:
        """Delete what the retention policy no longer keeps; returns the deleted ids."""
        gone = expired(self.list(), now, self.policy)
        if gone:
            s3.delete(self.s3, self.policy.bucket, [r.key for r in gone])
        return [r.id for r in gone]


def take(tool: SnapshotTool, store: SnapshotStore, endpoint: str, tls: dict[str, Path],
         pki_dir: Path, workdir: Path, snapshot_id: str, extra: dict[str, str]) -> dict[str, str]:
    """Save, verify, bundle and upload one snapshot; the local files are removed after.

    Args:
        endpoint: this member's client URL; ``tls`` etcdctl's ``cacert``/``cert``/``key``.
        pki_dir: ``/etc/kubernetes/pki``; ``workdir`` a private scratch directory.
        extra: more metadata (``kubernetes-version``, ``taken-by``).

    Returns:
        the metadata stored with it.

    Raises:
        SnapshotError: etcdctl failed, or the saved file is not a valid snapshot.
    """
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    db, bundle = workdir / "etcd.db", workdir / f"{snapshot_id}{SUFFIX}"
    try:
        tool.save(endpoint, tls, db)
        status = tool.status(db)
        make_bundle(db, pki_dir, bundle)
        meta = {"sha256": sha256_file(bundle), "db-sha256": sha256_file(db),
                "revision": str(status["revision"]), "total-keys": str(status["totalKey"]),
                "db-bytes": str(db.stat().st_size), **extra}
        store.upload(snapshot_id, bundle, meta)
        return meta
    finally:
        for path in (db, bundle, workdir / f"{db.name}.part"):
            path.unlink(missing_ok=True)


def restore(tool: SnapshotTool, store: SnapshotStore, snapshot_id: str, workdir: Path,
            pki_dir: Path, data_dir: Path, name: str, peer_url: str) -> dict[str, str]:
    """Make this node the first member of a cluster restored from ``snapshot_id``.

    Downloads and checks the archive (SHA-256), writes the shared certificates into
    ``pki_dir``, checks the database (``snapshot status``, and its SHA-256 against the
    metadata), and restores it into ``data_dir`` as member ``name`` at ``peer_url``.

    Returns:
        the snapshot's metadata.

    Raises:
        SnapshotError: not found, corrupt, or ``data_dir`` already holds data.
    """
    if data_dir.exists() and any(data_dir.iterdir()):
        raise SnapshotError(f"{data_dir} is not empty: a restore needs a fresh control plane")
    if data_dir.exists():
        data_dir.rmdir()  # etcdutl refuses an existing data directory
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    bundle = workdir / f"{snapshot_id}{SUFFIX}"
    try:
        meta = store.fetch(snapshot_id, bundle)
        db = open_bundle(bundle, workdir, pki_dir)
        if meta.get("db-sha256") and sha256_file(db) != meta["db-sha256"]:
            raise SnapshotError(f"snapshot {snapshot_id}: etcd.db does not match its SHA-256")
        tool.status(db)
        tool.restore(db, data_dir, name, peer_url)
        return meta
    finally:
        bundle.unlink(missing_ok=True)
        (workdir / "etcd.db").unlink(missing_ok=True)
