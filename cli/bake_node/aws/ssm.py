"""The SSM Parameter Store calls of the agent (join material). Every function takes the boto3
client first. Values are SecureStrings under the cluster's KMS key; they are never logged."""

from __future__ import annotations

from typing import Any

from bake_node.aws import call


def put_secure_string(
    client: Any, name: str, value: str, kms_key_id: str, description: str, tier: str = "Standard"
) -> None:
    """Write ``name`` as a SecureString encrypted with ``kms_key_id``, overwriting.

    Args:
        tier: ``Standard`` (values up to 4 KB), ``Advanced`` (8 KB) or ``Intelligent-Tiering``
            (Parameter Store picks Advanced only when the value needs it; SSM API reference,
            PutParameter ``Tier``).
    """
    call(
        "ssm:PutParameter",
        client.put_parameter,
        Name=name,
        Value=value,
        Type="SecureString",
        KeyId=kms_key_id,
        Overwrite=True,
        Description=description,
        **({"Tier": tier} if tier != "Standard" else {}),
    )


def get_decrypted(client: Any, names: list[str]) -> dict[str, str]:
    """``{name: decrypted value}`` of the parameters among ``names`` that exist (one
    ``GetParameters`` call, at most 10 names: the API's limit)."""
    out = call("ssm:GetParameters", client.get_parameters, Names=names, WithDecryption=True)
    return {p["Name"]: p["Value"] for p in out["Parameters"]}


def delete_parameters(client: Any, names: list[str]) -> None:
    """Delete the parameters among ``names`` that exist (missing ones are not an error)."""
    call("ssm:DeleteParameters", client.delete_parameters, Names=names)
