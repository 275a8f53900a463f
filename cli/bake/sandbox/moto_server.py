"""The embedded AWS's server: moto's, with bake's CloudFormation compatibility patches.

``bake sandbox start`` runs ``python -m bake.sandbox.moto_server -H 127.0.0.1 -p PORT``: the
patches of ``bake.sandbox.compat`` (moto's documented CloudFormation gaps, docs/launch.md) are
applied, then moto's own server starts with the given arguments.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """Apply the compatibility patches, then run ``moto.server.main(argv)``."""
    from moto import server

    from bake.sandbox import compat

    compat.apply()
    server.main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
