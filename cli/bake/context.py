"""Global options shared by every command, as one frozen value passed down explicitly.

Nothing here reads or writes process-wide state except reading ``BAKE_DATA_DIR`` once when the
options are built; services receive a ``GlobalOptions`` instead of looking anything up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def default_data_dir() -> Path:
    """Return the user's bake data dir: ``$BAKE_DATA_DIR`` or platformdirs' user data dir.

    Returns:
        an absolute path (not created here), e.g. ``~/.local/share/bake`` on Linux.
    """
    env = os.environ.get("BAKE_DATA_DIR")
    if env:
        return Path(env).expanduser().resolve()
    from platformdirs import user_data_dir

    return Path(user_data_dir("bake", appauthor=False))


@dataclass(frozen=True)
class GlobalOptions:
    """Options given before the sub-command.

    Attributes:
        debug: show tracebacks and debug logs.
        endpoint_url: AWS endpoint override for every client (``None``: boto3 decides, which
            includes its own handling of ``AWS_ENDPOINT_URL``).
        region: AWS region, or ``None`` for the standard chain.
        profile: named profile from the shared config files, or ``None``.
        data_dir: where bake keeps caches, local images and sandbox state.
    """

    debug: bool = False
    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    data_dir: Path = Path(".bake")
