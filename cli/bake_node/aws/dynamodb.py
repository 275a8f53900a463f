"""The DynamoDB calls of the agent: the lock table (leases, the cluster item, etcd records,
node reports). Every function takes the boto3 client first.

Conditional writes are DynamoDB's own (``ConditionExpression``; ``TransactWriteItems`` with a
``ConditionCheck``, DynamoDB developer guide "Condition expressions" and "Transactions"): a
failed condition is a return value here, not an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bake_node.aws import call, error_code

Item = dict[str, Any]  # a DynamoDB attribute-value map, e.g. {"pk": {"S": "lease#cp"}}


def create_table_if_missing(client: Any, name: str) -> None:
    """Create the lock table (``pk`` string hash key, on-demand) unless it exists, then wait
    until it is ACTIVE (botocore's ``table_exists`` waiter)."""
    try:
        call(
            "dynamodb:CreateTable",
            client.create_table,
            TableName=name,
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
    except Exception as exc:  # noqa: BLE001 - only "already exists" is expected
        if error_code(exc) != "ResourceInUseException":
            raise
    client.get_waiter("table_exists").wait(TableName=name)


def get_item(client: Any, table: str, key: Item) -> Item:
    """The item at ``key`` (strongly consistent read), ``{}`` when there is none."""
    out = call("dynamodb:GetItem", client.get_item, TableName=table, Key=key, ConsistentRead=True)
    return out.get("Item", {})


def put_item(client: Any, table: str, item: Item) -> None:
    """Write ``item`` (replacing the item with its key)."""
    call("dynamodb:PutItem", client.put_item, TableName=table, Item=item)


def delete_item(client: Any, table: str, key: Item) -> None:
    """Delete the item at ``key`` (no error when there is none)."""
    call("dynamodb:DeleteItem", client.delete_item, TableName=table, Key=key)


def scan_prefix(client: Any, table: str, prefix: str) -> Iterator[Item]:
    """Every item whose ``pk`` begins with ``prefix`` (all pages of a filtered ``Scan``)."""
    pages = client.get_paginator("scan").paginate(
        TableName=table,
        FilterExpression="begins_with(pk, :p)",
        ExpressionAttributeValues={":p": {"S": prefix}},
    )
    iterator = iter(pages)
    while (page := call("dynamodb:Scan", next, iterator, None)) is not None:
        yield from page["Items"]


def update_if(
    client: Any,
    table: str,
    key: Item,
    *,
    update: str,
    condition: str,
    values: Item,
    names: dict[str, str] | None = None,
) -> Item | None:
    """``UpdateItem`` only when ``condition`` holds.

    Returns:
        the item's attributes after the update (``ReturnValues=ALL_NEW``), or ``None`` when the
        condition failed (``ConditionalCheckFailedException``) and nothing was written.
    """
    try:
        out = call(
            "dynamodb:UpdateItem",
            client.update_item,
            TableName=table,
            Key=key,
            UpdateExpression=update,
            ConditionExpression=condition,
            ExpressionAttributeValues=values,
            **({"ExpressionAttributeNames": names} if names else {}),
            ReturnValues="ALL_NEW",
        )
    except Exception as exc:  # noqa: BLE001
        if error_code(exc) == "ConditionalCheckFailedException":
            return None
        raise
    return out.get("Attributes", {})


def put_if(
    client: Any,
    table: str,
    item: Item,
    *,
    check_key: Item,
    condition: str,
    values: Item,
    names: dict[str, str] | None = None,
) -> bool:
    """Put ``item`` atomically with a condition on another item (``check_key``), in one
    ``TransactWriteItems``.

    Returns:
        ``True`` when written; ``False`` when the condition failed
        (``TransactionCanceledException``) and nothing was written.
    """
    check: dict[str, Any] = {
        "TableName": table,
        "Key": check_key,
        "ConditionExpression": condition,
        "ExpressionAttributeValues": values,
    }
    if names:
        check["ExpressionAttributeNames"] = names
    try:
        call(
            "dynamodb:TransactWriteItems",
            client.transact_write_items,
            TransactItems=[{"ConditionCheck": check}, {"Put": {"TableName": table, "Item": item}}],
        )
    except Exception as exc:  # noqa: BLE001
        if error_code(exc) == "TransactionCanceledException":
            return False
        raise
    return True
