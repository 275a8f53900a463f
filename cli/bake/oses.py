"""The operating systems bake bakes, read from their data files ``image-recipes/os/<name>.yaml``
(schema ``bake.os/v1``).

What differs between them lives in those files, not in the component documents: the EC2 Image
Builder parent image (the vendor's public SSM parameter, with its source cited in the file) and,
for the local builder, the suite and package list of the root filesystem that stands in for
that parent image. An OS whose file has no ``local`` section is baked only in EC2 Image Builder;
its ``local_unsupported`` says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import yaml

from bake.errors import UsageError
from bake.templates import list_templates, read_text

SCHEMA = "bake.os/v1"


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
class OsInfo:
    """One OS's data file.

    Attributes:
        name: ``debian-12``; ``family`` (``debian``), ``version`` (``12``), ``codename``.
        parent_image: Image Builder parent image with ``{arch}`` to fill in.
        local: the raw ``local`` section, or None when the local builder cannot bake it.
        local_unsupported: why not, when ``local`` is None.
    """

    name: str
    family: str
    version: str
    codename: str
    parent_image: str
    local: dict[str, Any] | None
    local_unsupported: str = ""

    def parent_image_for(self, arch: str) -> str:
        """The Image Builder parent image for ``arch`` (``ssm:<parameter>`` or an AMI id)."""
        return self.parent_image.format(arch=arch)

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
    """Every OS with a data file, sorted (``("debian-12", "debian-13")``)."""
    return tuple(n.removeprefix("os/").removesuffix(".yaml")
                 for n in list_templates("image-recipes", ".yaml") if n.startswith("os/"))


@cache
def load_os(name: str) -> OsInfo:
    """Read ``image-recipes/os/<name>.yaml``.

    Raises:
        UsageError: no such OS (the message lists the known ones).
    """
    if name not in os_names():
        raise UsageError(f"unknown OS {name!r}; supported: {', '.join(os_names())}")
    data = yaml.safe_load(read_text("image-recipes", f"os/{name}.yaml"))
    if data.get("schema") != SCHEMA or data.get("name") != name:
        raise UsageError(f"image-recipes/os/{name}.yaml is not a {SCHEMA} file for {name}")
    return OsInfo(
        name=name,
        family=data["family"],
        version=str(data["version"]),
        codename=data.get("codename", ""),
        parent_image=data["parent_image"],
        local=data.get("local"),
        local_unsupported=data.get("local_unsupported", ""),
    )
