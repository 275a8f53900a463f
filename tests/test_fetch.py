"""``bake.fetch.fetch_verified``: the one download-and-verify of bake stage and the local builder.

Served from 127.0.0.1 (``http.server``) and from ``file://`` paths.
"""

from __future__ import annotations

import hashlib

import pytest

from bake.errors import ArtifactError
from bake.fetch import DigestMismatch, FetchFailed, fetch_verified

PAYLOAD = b"kubelet stand-in\n" * 1000
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def served(http_files):
    """``http://127.0.0.1:<port>`` serving ``kubelet`` (``tests.support.fixtures.http_files``)."""
    http_files.add("kubelet", PAYLOAD)
    return http_files.url


def _left(directory):
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_pinned_file_lands_with_its_digest(served, tmp_path):
    dest = tmp_path / "out" / "kubelet"
    assert fetch_verified(f"{served}/kubelet", dest, SHA.upper()) == SHA
    assert dest.read_bytes() == PAYLOAD
    assert _left(dest.parent) == ["kubelet"]  # no part file


def test_a_different_file_is_never_written(served, tmp_path):
    dest = tmp_path / "out" / "kubelet"
    with pytest.raises(DigestMismatch) as err:
        fetch_verified(f"{served}/kubelet", dest, "0" * 64)
    assert (err.value.expected, err.value.actual) == ("0" * 64, SHA)
    assert isinstance(err.value, ArtifactError)
    assert _left(dest.parent) == []


def test_http_error_names_the_status(served, tmp_path):
    with pytest.raises(FetchFailed) as err:
        fetch_verified(f"{served}/no-such-file", tmp_path / "x", SHA)
    assert err.value.reason == "HTTP 404"
    assert not (tmp_path / "x").exists()


def test_file_urls_and_schemes(tmp_path):
    source = tmp_path / "kubelet"
    source.write_bytes(PAYLOAD)
    assert fetch_verified(source.as_uri(), tmp_path / "copy", None) == SHA
    with pytest.raises(FetchFailed, match="only http, https URLs are supported"):
        fetch_verified(source.as_uri(), tmp_path / "copy2", SHA, schemes=("http", "https"))
    with pytest.raises(FetchFailed) as err:
        fetch_verified((tmp_path / "missing").as_uri(), tmp_path / "copy3", SHA)
    assert "No such file" in err.value.reason
