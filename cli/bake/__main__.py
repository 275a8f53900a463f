"""Allow ``python -m bake`` as well as the ``bake`` console script."""

from bake.main import main

main()
