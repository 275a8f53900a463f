"""bake-node: the agent that turns a booted bake image into a member of a kubeadm cluster.

It runs on the node (installed into the image by its own component) in three phases:
``config`` (read and validate /etc/bake/node.yaml and the instance identity), ``bootstrap``
(leader lease in DynamoDB, then ``kubeadm init`` or ``join`` with join material from SSM) and
``post`` (CNI and add-on manifests, join-material rotation). It must not import ``bake`` (the
CLI side): on a node only python3, boto3, PyYAML and Jinja2 from Debian are present.
"""

__version__ = "0.1.0"
