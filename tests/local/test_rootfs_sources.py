"""Reading the host's Debian mirror (deb822 and one-line formats) and the rootfs cache key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bake.builders.local.rootfs import (
    AptSource,
    cache_key,
    debian_sources,
    host_apt_sources,
    load_parent_spec,
)
from bake.errors import EnvironmentProblem

DEB822 = """\
Types: deb deb-src
# a comment
URIs: http://mirror.example.internal/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example.internal/debian-security
Suites: bookworm-security
Components: main

Types: deb
Enabled: no
URIs: http://disabled.example.internal/debian
Suites: bookworm
Components: main
"""

ONE_LINE = """\
# deb http://commented.example.internal/debian bookworm main
deb [arch=amd64 signed-by=/k/x.gpg] http://one.example.internal/debian/ bookworm main
deb-src http://one.example.internal/debian bookworm main
"""


def test_deb822_and_one_line_sources(tmp_path: Path) -> None:
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "debian.sources").write_text(DEB822)
    (d / "extra.list").write_text("deb http://list.example.internal/debian bookworm-updates main\n")
    (tmp_path / "sources.list").write_text(ONE_LINE)

    found = host_apt_sources(tmp_path / "sources.list", d)

    assert found == [
        AptSource("http://one.example.internal/debian", "bookworm", ("main",)),
        AptSource("http://mirror.example.internal/debian", "bookworm", ("main", "contrib")),
        AptSource("http://mirror.example.internal/debian", "bookworm-updates", ("main", "contrib")),
        AptSource("http://mirror.example.internal/debian-security", "bookworm-security", ("main",)),
        AptSource("http://list.example.internal/debian", "bookworm-updates", ("main",)),
    ]
    picked = debian_sources("bookworm", found)
    assert picked[0].line() == "deb http://one.example.internal/debian bookworm main"
    assert [s.suite for s in picked] == [
        "bookworm", "bookworm", "bookworm-updates", "bookworm-updates", "bookworm-security"
    ]


def test_no_mirror_for_suite_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("deb http://x.example.internal/ubuntu noble main\n")
    found = host_apt_sources(tmp_path / "sources.list", tmp_path / "missing.d")
    with pytest.raises(EnvironmentProblem, match="no Debian mirror for bookworm"):
        debian_sources("bookworm", found)


def test_another_release_comes_from_the_hosts_debian_mirrors(tmp_path: Path) -> None:
    """A Debian 12 host bakes Debian 13 from the same mirrors (they carry every release)."""
    (tmp_path / "debian.sources").write_text(
        "Types: deb\nURIs: http://deb.example.internal/debian\nSuites: bookworm "
        "bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: "
        "http://deb.example.internal/debian-security\nSuites: bookworm-security\n"
        "Components: main\n")
    found = host_apt_sources(tmp_path / "none.list", tmp_path)
    picked = debian_sources("trixie", found, "trixie-security")
    assert [s.line() for s in picked] == [
        "deb http://deb.example.internal/debian trixie main",
        "deb http://deb.example.internal/debian trixie-updates main",
        "deb http://deb.example.internal/debian-security trixie-security main",
    ]
    spec = load_parent_spec("amd64", "debian-13")
    assert (spec.suite, spec.security_suite) == ("trixie", "trixie-security")


def test_the_debian_12_rootfs_cache_key_is_unchanged_by_the_os_data_files() -> None:
    """Moving the Debian 12 parent spec into image-recipes/os/debian-12.yaml kept its values,
    so rootfs caches made before stay valid."""
    src = [AptSource("http://deb.debian.org/debian", "bookworm", ("main",))]
    assert cache_key(load_parent_spec("amd64"), src, "amd64") == "d04e0ae4865e915f35ea94a5"


def test_parent_spec_and_cache_key() -> None:
    spec = load_parent_spec("amd64")
    assert spec.suite == "bookworm"
    assert {"linux-image-amd64", "systemd-sysv", "cloud-init", "conntrack"} <= set(spec.packages)
    assert "linux-image-arm64" not in spec.packages
    src = [AptSource("http://a.example.internal/debian", "bookworm", ("main",))]
    other = [AptSource("http://b.example.internal/debian", "bookworm", ("main",))]
    key = cache_key(spec, src, "amd64")
    assert key == cache_key(spec, list(src), "amd64")
    assert key != cache_key(spec, other, "amd64")
    assert key != cache_key(load_parent_spec("arm64"), src, "arm64")
    with pytest.raises(EnvironmentProblem, match="amd64 or arm64"):
        load_parent_spec("riscv64")
