"""Thin DynamoDB wrapper for ``bake status``: the node agents' reports in the cluster table.

Items are returned as plain ``{attribute: str | float}`` (``S`` and ``N`` values only: the
agent writes nothing else). Shapes: DynamoDB API reference, Scan and GetItem.
"""

from __future__ import annotations

from typing import Any

from bake.aws.errors import call


def _plain(item: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in item.items():
        if "S" in value:
            out[key] = value["S"]
        elif "N" in value:
            out[key] = float(value["N"])
    return out


def items_with_prefix(client: Any, table: str, prefix: str) -> list[dict[str, Any]]:
    """Every item whose ``pk`` starts with ``prefix`` (a paginated, filtered Scan)."""
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "TableName": table,
        "FilterExpression": "begins_with(pk, :p)",
        "ExpressionAttributeValues": {":p": {"S": prefix}},
        "ConsistentRead": True,
    }
    while True:
        resp = call("dynamodb:Scan", client.scan, **kwargs)
        items += [_plain(i) for i in resp.get("Items", [])]
        if not resp.get("LastEvaluatedKey"):
            return items
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def item(client: Any, table: str, pk: str) -> dict[str, Any] | None:
    """The item with key ``pk``, or ``None``."""
    resp = call("dynamodb:GetItem", client.get_item, TableName=table,
                Key={"pk": {"S": pk}}, ConsistentRead=True)
    return _plain(resp["Item"]) if "Item" in resp else None


def put_strings(client: Any, table: str, item: dict[str, str]) -> None:
    """Write ``item`` (every attribute a string; ``pk`` the key), replacing the item with that
    key (``dynamodb:PutItem``)."""
    call("dynamodb:PutItem", client.put_item, TableName=table,
         Item={k: {"S": v} for k, v in item.items()})
