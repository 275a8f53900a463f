"""The operating systems bake bakes, read from their data files ``image-recipes/os/<name>.yaml``
(schema ``bake.os/v1``), and their package managers (``image-recipes/package-managers.yaml``,
schema ``bake.package-managers/v1``).

What differs between them lives in those files, not in the component documents: the EC2 Image
Builder parent image (the vendor's public SSM parameter, with its source cited in the file), the
package manager and its shell, the packages that bring kubeadm's tools and the node agent's
Python modules, where the agent's Python package goes, and, for the local builder, the suite and
package list of the root filesystem that stands in for that parent image. An OS whose file has
no ``local`` section is baked only in EC2 Image Builder; its ``local_unsupported`` says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

import yaml

from bake.errors import UsageError
from bake.templates import list_templates, read_text

SCHEMA = "bake.os/v1"
PM_SCHEMA = "bake.package-managers/v1"


@dataclass(frozen=True)
class LocalParent:
    """The local builder's root filesystem of one OS and arch.

    Attributes:
        suite: Debian suite (``bookworm``); ``security_suite`` its security suite.
        variant: mmdebstrap/debootstrap variant (``minbase``).
        components: archive components (``("main",)``).
        packages: packages to include for the arch, sorted.
    """

    suite: str
    security_suite: str
    variant: str
    components: tuple[str, ...]
    packages: tuple[str, ...]


@dataclass(frozen=True)
class PackageManager:
    """The shell of one package manager, as the component documents paste it.

    Attributes:
        name: ``apt`` or ``dnf``.
        installed: exits 0 when the package named by the shell variable ``$pkg`` is installed.
        version: prints the installed version of ``$pkg``.
        refresh: lines run before an install (``apt-get update``), maybe none.
        install: the install command; package names follow it.
        install_files: installs package files already on disk; file names follow it.
        file_package: prints the package name held by the package file ``$file``.
        package_file: glob of its package files (``*.deb``).
        clean: empties its download cache.
        caches: globs under which a clean image holds nothing.
        package_files: glob of downloaded package files (also checked on a launched instance,
            where the indexes may have been refreshed since).
    """

    name: str
    installed: str
    version: str
    refresh: tuple[str, ...]
    install: str
    install_files: str
    file_package: str
    package_file: str
    clean: str
    caches: tuple[str, ...]
    package_files: str


@dataclass(frozen=True)
class OsInfo:
    """One OS's data file.

    Attributes:
        name: ``debian-12``; ``family`` (``debian``), ``version`` (``12``), ``codename``.
        parent_image: Image Builder parent image with ``{arch}`` to fill in.
        package_manager: its package manager.
        tools: ``{command: package}``, the commands kubeadm's preflight checks need.
        python: ``{module: package}``, the modules the node agent imports.
        python_site: the directory on python3's ``sys.path`` the agent's package goes to.
        ssh_unit: OpenSSH server's systemd unit (``ssh.service``; ``sshd.service`` on AL2023).
        local: the raw ``local`` section, or None when the local builder cannot bake it.
        local_unsupported: why not, when ``local`` is None.
        arch_names: the OS's own name of an arch where it differs (AL2023: ``x86_64``).
    """

    name: str
    family: str
    version: str
    codename: str
    parent_image: str
    package_manager: PackageManager
    tools: dict[str, str]
    python: dict[str, str]
    python_site: str
    ssh_unit: str
    local: dict[str, Any] | None
    local_unsupported: str = ""
    arch_names: dict[str, str] = field(default_factory=dict)

    def parent_image_for(self, arch: str) -> str:
        """The Image Builder parent image for ``arch`` (``amd64``/``arm64``): ``ssm:<parameter>``
        or an AMI id, with the arch spelled as the OS spells it."""
        return self.parent_image.format(arch=self.arch_names.get(arch, arch))

    @property
    def packages(self) -> tuple[str, ...]:
        """Every package bake may install from the OS: the tools', then the Python modules'."""
        return tuple(dict.fromkeys([*self.tools.values(), *self.python.values()]))

    def local_parent(self, arch: str) -> LocalParent:
        """The local root filesystem spec for ``arch``.

        Raises:
            UsageError: this OS cannot be bootstrapped by the local builder (one line, why).
        """
        if self.local is None:
            raise UsageError(f"--os {self.name} cannot be baked with --local: "
                             f"{self.local_unsupported} (bake it in EC2 Image Builder: drop "
                             "--local)")
        pkgs = self.local["packages"]
        return LocalParent(
            suite=self.local["suite"],
            security_suite=self.local.get("security_suite", f"{self.local['suite']}-security"),
            variant=self.local.get("variant", "minbase"),
            components=tuple(self.local.get("components", ["main"])),
            packages=tuple(sorted(set(pkgs.get("common", [])) | set(pkgs.get(arch, [])))),
        )


@cache
def os_names() -> tuple[str, ...]:
    """Every OS with a data file, sorted (``("al2023", "debian-12", ...)``)."""
    return tuple(n.removeprefix("os/").removesuffix(".yaml")
                 for n in list_templates("image-recipes", ".yaml") if n.startswith("os/"))


@cache
def load_os(name: str) -> OsInfo:
    """Read ``image-recipes/os/<name>.yaml``.

    Raises:
        UsageError: no such OS (the message lists the known ones), or the file or the package
            manager it names is malformed.
    """
    if name not in os_names():
        raise UsageError(f"unknown OS {name!r}; supported: {', '.join(os_names())}")
    data = yaml.safe_load(read_text("image-recipes", f"os/{name}.yaml"))
    if data.get("schema") != SCHEMA or data.get("name") != name:
        raise UsageError(f"image-recipes/os/{name}.yaml is not a {SCHEMA} file for {name}")
    packages = data["packages"]
    return OsInfo(
        name=name,
        family=data["family"],
        version=str(data["version"]),
        codename=data.get("codename", ""),
        parent_image=data["parent_image"],
        package_manager=package_manager(data["package_manager"]),
        tools=dict(packages["tools"]),
        python=dict(packages["python"]),
        python_site=data["python_site"],
        ssh_unit=data["units"]["ssh"],
        local=data.get("local"),
        local_unsupported=data.get("local_unsupported", ""),
        arch_names=dict(data.get("arch_names", {})),
    )


@cache
def package_manager(name: str) -> PackageManager:
    """Read package manager ``name`` (``apt``/``dnf``) of ``image-recipes/package-managers.yaml``.

    Raises:
        UsageError: the file is not a ``bake.package-managers/v1`` file or has no ``name``.
    """
    data = yaml.safe_load(read_text("image-recipes", "package-managers.yaml"))
    if data.get("schema") != PM_SCHEMA:
        raise UsageError(f"image-recipes/package-managers.yaml is not a {PM_SCHEMA} file")
    if name not in data:
        known = ", ".join(k for k in data if k != "schema")
        raise UsageError(f"unknown package manager {name!r}; image-recipes/package-managers.yaml "
                         f"has {known}")
    pm = data[name]
    return PackageManager(
        name=name,
        installed=pm["installed"],
        version=pm["version"],
        refresh=tuple(pm.get("refresh") or ()),
        install=pm["install"],
        install_files=pm["install_files"],
        file_package=pm["file_package"],
        package_file=pm["package_file"],
        clean=pm["clean"],
        caches=tuple(pm["caches"]),
        package_files=pm["package_files"],
    )
