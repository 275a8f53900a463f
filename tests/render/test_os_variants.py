"""One set of component documents, one data file per OS (issue 13): the OS-specific steps of
each OS, rendered from its data file and run with bash against a stand-in parent image.

The stand-ins are this project's (``dpkg-query``/``apt-get`` for the apt OSes, ``rpm``/``dnf``
for AL2023): they answer "installed" for a given set and record what they were asked. They prove
the rendered shell asks the right package manager for the right package names, and nothing
more; the Ubuntu and AL2023 images themselves were never built on this machine (no access to
their archives), as docs/render.md says.
"""

from __future__ import annotations

import subprocess
from dataclasses import replace

import pytest
import yaml

from bake.catalog import load_catalog, resolve
from bake.oses import load_os, os_names
from bake.render import RenderOptions, render_image_documents

MIRROR = "http://127.0.0.1:8999"


@pytest.fixture(scope="module")
def release():
    return resolve(load_catalog(), "1.30.12", "amd64")


def _script(docs, component: str, step: str) -> str:
    doc = next(d for d in docs.components if d.name == component)
    for phase in doc.data["phases"]:
        for s in phase["steps"]:
            if s["name"] == step:
                return "\n".join(s["inputs"]["commands"])
    raise AssertionError(f"no step {step} in {component}")


def _parent_image(tmp_path, manager: str, commands: set[str], modules: set[str]) -> dict:
    """A PATH whose parent image has ``commands`` and python3 ``modules``; the package
    manager's stand-ins record each call in ``<tmp>/calls``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    record = f'echo "$(basename "$0") $*" >> {calls}'
    stand_ins = {
        # python3 -c 'import <module>'
        "python3": f'm="${{2#import }}"; for p in {" ".join(modules) or "none"}; do '
                   '[ "$p" = "$m" ] && exit 0; done; exit 1',
    }
    for tool in commands:
        stand_ins[tool] = "exit 0"
    if manager == "apt":
        stand_ins |= {"apt-get": record, "dpkg-query": "exit 1"}
    else:
        stand_ins |= {"dnf": record, "rpm": "exit 1"}
    for tool, body in stand_ins.items():
        (bin_dir / tool).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / tool).chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin"}


@pytest.mark.parametrize("os_name", os_names())
def test_missing_tools_and_modules_are_installed_with_the_os_package_manager(
    release, tmp_path, os_name
):
    """A parent image with iptables and yaml only: the step installs the OS's packages for
    conntrack, boto3 and jinja2, with its own package manager, in one call, then cleans."""
    info = load_os(os_name)
    docs = render_image_documents(replace(release, os=os_name), RenderOptions(mirror=MIRROR))
    script = _script(docs, "bake-os-prep", "EnsureOsPackages")
    env = _parent_image(tmp_path, info.package_manager.name, {"iptables"}, {"yaml"})
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    wanted = [info.tools["conntrack"], info.python["boto3"], info.python["jinja2"]]
    calls = (tmp_path / "calls").read_text().splitlines()
    if info.package_manager.name == "apt":
        assert calls == ["apt-get update",
                         f"apt-get install -y --no-install-recommends {' '.join(wanted)}",
                         "apt-get clean"]
    else:
        assert calls == [f"dnf install -y --setopt=install_weak_deps=False {' '.join(wanted)}",
                         "dnf clean all"]


@pytest.mark.parametrize("os_name", os_names())
def test_a_complete_parent_image_installs_nothing(release, tmp_path, os_name):
    info = load_os(os_name)
    docs = render_image_documents(replace(release, os=os_name), RenderOptions(mirror=MIRROR))
    script = _script(docs, "bake-os-prep", "EnsureOsPackages")
    env = _parent_image(tmp_path, info.package_manager.name, set(info.tools), set(info.python))
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "calls").exists()


def test_al2023_names_its_own_packages_and_paths(release):
    """What differs on AL2023, from its data file: dnf and rpm, Fedora's package names, the
    python3.9 site-packages, dnf's cache, the x86_64 parent image parameter."""
    docs = render_image_documents(replace(release, os="al2023"), RenderOptions(mirror=MIRROR))
    texts = {d.name: d.text for d in docs.components}
    assert "missing+=(iptables-nft)" in texts["bake-os-prep"]
    assert "missing+=(conntrack-tools)" in texts["bake-os-prep"]
    assert "missing+=(python3-pyyaml)" in texts["bake-os-prep"]
    assert "dnf clean all" in texts["bake-hygiene"]
    assert "rm -rf /var/cache/dnf/*" in texts["bake-hygiene"]
    assert not any("apt-get" in t or "dpkg" in t for t in texts.values())
    recipe = yaml.safe_load(docs.recipe.text)
    assert recipe["parentImage"].endswith("al2023-ami-kernel-default-x86_64")


def test_local_build_of_an_os_it_cannot_bootstrap_is_one_line(run_bake):
    """`bake ami --local` bootstraps Debian root filesystems only: Ubuntu and AL2023 say so in
    one line (exit 2) before anything is built."""
    for os_name in ("ubuntu-24.04", "al2023"):
        result = run_bake("ami", "--k8s", "1.30", "--os", os_name, "--local")
        assert result.exit_code == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert lines[-1].startswith(f"bake: error: --os {os_name} cannot be baked with --local: "
                                    "the local builder bootstraps Debian only"), result.stderr
        assert "Traceback" not in result.stderr


def test_first_boot_ssh_keys_are_ordered_before_the_os_openssh_unit(release):
    """AL2023 packages OpenSSH's server as sshd.service, Debian and Ubuntu as ssh.service (the
    OS data files' units.ssh): the first-boot key unit is required by the right one."""
    for os_name, unit in (("debian-12", "ssh.service"), ("ubuntu-24.04", "ssh.service"),
                          ("al2023", "sshd.service")):
        docs = render_image_documents(replace(release, os=os_name), RenderOptions(mirror=MIRROR))
        hygiene = next(d for d in docs.components if d.name == "bake-hygiene").text
        assert f"Before={unit}\n" in hygiene and f"RequiredBy={unit}\n" in hygiene
        assert f"/etc/systemd/system/{unit}.requires/bake-ssh-host-keys.service" in hygiene
