"""etcd snapshots: the retention policy, and the round trip against REAL etcd (Debian's
etcd-server 3.4, three members on 127.0.0.1) and S3 in the embedded AWS: write keys, snapshot,
upload, destroy every member, restore one from the snapshot, re-add the others one at a time
(etcd docs, "Disaster recovery"), read the keys back from each."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from bake_node import snapshots
from bake_node.aws import Clients
from bake_node.snapshots import SnapshotError, SnapshotPolicy, SnapshotRef, SnapshotStore

HOUR, DAY = 3600, 86400


def _refs(now: float, ages_h: list[float]) -> list[SnapshotRef]:
    return [SnapshotRef(snapshots.new_id(f"i-{n}", now - a * HOUR), f"k{n}", now - a * HOUR)
            for n, a in enumerate(ages_h)]


def test_retention_keeps_newest_per_hour_for_two_days_and_per_day_for_thirty():
    now = 1_780_000_000.0 - (1_780_000_000 % DAY) + 12 * HOUR  # noon UTC
    every_half_hour = [i / 2 for i in range(0, 24 * 40)]  # 40 days of snapshots, every 30 min
    stored = _refs(now, every_half_hour)
    gone = {r.id for r in snapshots.expired(stored, now, SnapshotPolicy("b"))}
    kept = [r for r in stored if r.id not in gone]
    recent = [r for r in kept if now - r.taken_at <= 48 * HOUR]
    assert len(recent) == 49  # one per hour for 48 h (both ends of the window)
    assert len({int(r.taken_at // HOUR) for r in recent}) == len(recent)
    older = [r for r in kept if now - r.taken_at > 48 * HOUR]
    assert {int(r.taken_at // DAY) for r in older} == {int(r.taken_at // DAY) for r in older
                                                       if now - r.taken_at <= 30 * DAY}
    assert len({int(r.taken_at // DAY) for r in older}) == len(older)
    assert all(now - r.taken_at <= 30 * DAY for r in kept)


def test_retention_always_keeps_the_newest_even_when_old():
    now = 1_780_000_000.0
    stored = _refs(now, [24 * 90, 24 * 91])
    assert [r.key for r in snapshots.expired(stored, now, SnapshotPolicy("b"))] == ["k1"]


def test_ids_parse_and_other_objects_are_ignored():
    sid = snapshots.new_id("i-0abc", 1_780_000_000)
    assert snapshots.parse_id(sid) == 1_780_000_000
    listed = snapshots.refs([{"Key": f"etcd-snapshots/{sid}.tar.gz", "Size": 5},
                             {"Key": "etcd-snapshots/notes.txt"},
                             {"Key": "etcd-snapshots/nested/x.tar.gz"}], "etcd-snapshots/")
    assert [(r.id, r.size) for r in listed] == [(sid, 5)]


def _etcdctl(endpoints, *args, check=True, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        proc = subprocess.run(["etcdctl", "--endpoints", ",".join(endpoints), *args],
                              capture_output=True, text=True,
                              env={**os.environ, "ETCDCTL_API": "3"})
        if proc.returncode == 0 or not check:
            return proc
        if time.monotonic() > deadline:
            raise AssertionError(f"etcdctl {' '.join(args)}: {proc.stderr}")
        time.sleep(0.5)


def _start(tmp: Path, name: str, data: Path, client: str, peer: str, initial: str, state: str):
    return subprocess.Popen(
        ["etcd", "--name", name, "--data-dir", str(data), "--listen-client-urls", client,
         "--advertise-client-urls", client, "--listen-peer-urls", peer,
         "--initial-advertise-peer-urls", peer, "--initial-cluster", initial,
         "--initial-cluster-state", state, "--log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=open(tmp / f"{name}.log", "w"))


@pytest.fixture
def store(aws):
    s3 = Clients("us-east-1", {"s3": aws.endpoint}).client("s3")
    s3.create_bucket(Bucket="bake-demo-snapshots")
    kms = Clients("us-east-1", {"kms": aws.endpoint}).client("kms")
    key = kms.create_key(Description="bake-demo")["KeyMetadata"]["KeyId"]
    return SnapshotStore(s3, SnapshotPolicy("bake-demo-snapshots"), key)


def _pki(root: Path) -> Path:
    for name in snapshots.SHARED_PKI:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"{name} of the old cluster\n")
    return root


@pytest.mark.slow
def test_snapshot_destroy_restore_readd_members_and_read_keys_back(etcd3, store, tmp_path):
    from tests.conftest import free_port

    for i in range(50):
        _etcdctl(etcd3.endpoints, "put", f"/registry/demo/key-{i}", f"value-{i}")
    tool = snapshots.SnapshotTool()
    sid = snapshots.new_id("i-0aaa", time.time())
    meta = snapshots.take(tool, store, etcd3.endpoints[0], {}, _pki(tmp_path / "pki-old"),
                          tmp_path / "work", sid, {"taken-by": "i-0aaa"})
    assert int(meta["total-keys"]) >= 50 and meta["sha256"]
    assert not list((tmp_path / "work").iterdir())  # nothing left on the node's disk
    head = store.s3.head_object(Bucket=store.policy.bucket, Key=store.key(sid))
    assert head["ServerSideEncryption"] == "aws:kms"
    assert [r.id for r in store.list()] == [sid]

    for name in list(etcd3.members):  # every member is gone, with its data
        etcd3.stop(name)
    assert _etcdctl(etcd3.endpoints, "endpoint", "health", check=False).returncode != 0

    names = ["new-a", "new-b", "new-c"]
    ports = {n: (free_port(), free_port()) for n in names}
    urls = {n: (f"http://127.0.0.1:{c}", f"http://127.0.0.1:{p}") for n, (c, p) in ports.items()}
    pki_new = tmp_path / "pki-new"
    restored = snapshots.restore(tool, store, sid, tmp_path / "restore", pki_new,
                                 tmp_path / "new-a", "new-a", urls["new-a"][1])
    assert restored["sha256"] == meta["sha256"]
    assert (pki_new / "ca.key").read_text() == "ca.key of the old cluster\n"
    assert oct((pki_new / "ca.key").stat().st_mode & 0o777) == "0o600"
    procs = [_start(tmp_path, "new-a", tmp_path / "new-a", *urls["new-a"],
                    f"new-a={urls['new-a'][1]}", "new")]
    try:
        _etcdctl([urls["new-a"][0]], "endpoint", "health")
        initial = [f"new-a={urls['new-a'][1]}"]
        for n in names[1:]:  # re-added one at a time, as kubeadm join does
            _etcdctl([urls["new-a"][0]], "member", "add", n, f"--peer-urls={urls[n][1]}")
            initial.append(f"{n}={urls[n][1]}")
            procs.append(_start(tmp_path, n, tmp_path / n, *urls[n], ",".join(initial),
                                "existing"))
            _etcdctl([urls[n][0]], "endpoint", "health")
        for n in names:
            got = _etcdctl([urls[n][0]], "get", "/registry/demo/key-42", "--print-value-only")
            assert got.stdout.strip() == "value-42", n
        keys = _etcdctl([urls["new-b"][0]], "get", "/registry/demo/", "--prefix",
                        "--keys-only").stdout.split()
        assert len(keys) == 50
        listed = _etcdctl([urls["new-c"][0]], "member", "list").stdout
        assert all(n in listed for n in names) and "etcd-a" not in listed
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=20)


def test_restore_refuses_a_corrupt_download_and_an_unknown_id(store, tmp_path):
    bundle = tmp_path / "b.tar.gz"
    bundle.write_bytes(b"not what was stored")
    store.upload("20261205T100000Z-i-0bad", bundle, {"sha256": "0" * 64})
    with pytest.raises(SnapshotError, match="SHA-256"):
        snapshots.restore(snapshots.SnapshotTool(), store, "20261205T100000Z-i-0bad",
                          tmp_path / "w", tmp_path / "pki", tmp_path / "data", "n",
                          "http://127.0.0.1:1")
    with pytest.raises(SnapshotError, match="no snapshot 20261205T110000Z-i-0none in s3://"):
        snapshots.restore(snapshots.SnapshotTool(), store, "20261205T110000Z-i-0none",
                          tmp_path / "w", tmp_path / "pki", tmp_path / "data", "n",
                          "http://127.0.0.1:1")
    assert not (tmp_path / "data").exists() and not (tmp_path / "pki").exists()


def test_restore_refuses_a_data_dir_with_data(store, tmp_path):
    (tmp_path / "data" / "member").mkdir(parents=True)
    with pytest.raises(SnapshotError, match="not empty: a restore needs a fresh control plane"):
        snapshots.restore(snapshots.SnapshotTool(), store, "x", tmp_path / "w",
                          tmp_path / "pki", tmp_path / "data", "n", "http://127.0.0.1:1")


def test_prune_deletes_only_what_the_policy_drops(store, tmp_path):
    now = time.time()
    bundle = tmp_path / "b"
    bundle.write_bytes(b"x")
    hour = now - now % HOUR  # two in this UTC hour, one 100 h ago
    ids = [snapshots.new_id("i-1", t) for t in (hour + 1, hour, hour - 100 * HOUR)]
    for sid in ids:
        store.upload(sid, bundle, {"sha256": "x"})
    (store.s3.put_object(Bucket=store.policy.bucket, Key="etcd-snapshots/README", Body=b"keep"))
    deleted = store.prune(now)
    assert deleted == [ids[1]]  # same hour as a newer one; 100 h old is that day's newest
    keys = {o["Key"] for o in store.s3.list_objects_v2(Bucket=store.policy.bucket)["Contents"]}
    assert keys == {store.key(ids[0]), store.key(ids[2]), "etcd-snapshots/README"}
