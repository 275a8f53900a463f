"""bake: immutable Kubernetes node images and self-joining kubeadm clusters on AWS.

The package is layered: ``bake.commands`` (click parsing only) calls service functions
(``bake.catalog``, ``bake.render``, ``bake.ami``, ...) that take frozen option objects and
injected AWS wrappers from ``bake.aws``. Templates are data loaded by ``bake.templates``.
"""

__version__ = "0.1.0"
