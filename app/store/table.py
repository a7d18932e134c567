"""The single DynamoDB table: conditional writes, versions, TTL filtering, opaque cursors.

Repositories (the other modules of `app.store`) own the key layout; this module knows only
items. Every update bumps `version`, and callers may require the version they read, so a lost
race surfaces as `ConditionFailed` instead of a silent overwrite. Items whose `expires_epoch`
has passed are invisible: moto never deletes by TTL and AWS may take 48 hours to.
"""

import base64
import binascii
import json
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from app import aws
from app.errors import BadRequest, ConditionFailed
from app.store.codec import decode_item, encode, encode_item

TTL_ATTRIBUTE = "expires_epoch"
OPEN_INDEX = "open"  # sparse index over unfinished work: system scope (sweeper, dispatch), never a tenant query
KEY_ATTRIBUTES = ("pk", "sk")


def _now() -> int:
    return int(time.time())


def _is_live(item: dict, now: int | None = None) -> bool:
    expires = item.get(TTL_ATTRIBUTE)
    return expires is None or expires > (now or _now())


def _condition_failed(error: Exception) -> bool:
    code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
    return code in ("ConditionalCheckFailedException", "TransactionCanceledException")


@dataclass
class Expression:
    """Accumulates placeholder names and values for one request."""

    names: dict[str, str] = field(default_factory=dict)
    values: dict[str, dict] = field(default_factory=dict)

    def name(self, attribute: str) -> str:
        placeholder = f"#n{len(self.names)}"
        self.names[placeholder] = attribute
        return placeholder

    def value(self, value: Any) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = encode(value)
        return placeholder

    def apply(self, request: dict) -> dict:
        if self.names:
            request["ExpressionAttributeNames"] = self.names
        if self.values:
            request["ExpressionAttributeValues"] = self.values
        return request


@dataclass
class Condition:
    """A conjunction of attribute tests, rendered with placeholders."""

    equals: dict[str, Any] = field(default_factory=dict)
    not_equals: dict[str, Any] = field(default_factory=dict)
    in_: dict[str, Iterable[Any]] = field(default_factory=dict)
    exists: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    below: dict[str, Any] = field(default_factory=dict)
    above: dict[str, Any] = field(default_factory=dict)

    def render(self, expr: Expression) -> str | None:
        parts = [f"{expr.name(k)} = {expr.value(v)}" for k, v in self.equals.items()]
        parts += [f"{expr.name(k)} <> {expr.value(v)}" for k, v in self.not_equals.items()]
        for k, options in self.in_.items():
            placeholders = ", ".join(expr.value(v) for v in options)
            parts.append(f"{expr.name(k)} IN ({placeholders})")
        parts += [f"attribute_exists({expr.name(k)})" for k in self.exists]
        parts += [f"attribute_not_exists({expr.name(k)})" for k in self.missing]
        parts += [f"{expr.name(k)} < {expr.value(v)}" for k, v in self.below.items()]
        parts += [f"{expr.name(k)} > {expr.value(v)}" for k, v in self.above.items()]
        return " AND ".join(parts) if parts else None


@dataclass
class Page:
    items: list[dict]
    cursor: str | None


class Table:
    def __init__(self, name: str):
        self.name = name

    @property
    def _client(self):
        return aws.client("dynamodb")

    # --- reads -----------------------------------------------------------------------------

    def get(self, pk: str, sk: str, *, consistent: bool = True) -> dict | None:
        raw = self._client.get_item(
            TableName=self.name, Key=encode_item({"pk": pk, "sk": sk}), ConsistentRead=consistent
        ).get("Item")
        if raw is None:
            return None
        item = decode_item(raw)
        return item if _is_live(item) else None

    def get_many(self, keys: list[tuple[str, str]]) -> list[dict]:
        found: list[dict] = []
        now = _now()
        for start in range(0, len(keys), 100):
            pending = {
                self.name: {
                    "Keys": [encode_item({"pk": pk, "sk": sk}) for pk, sk in keys[start : start + 100]],
                    "ConsistentRead": True,
                }
            }
            while pending:
                response = self._client.batch_get_item(RequestItems=pending)
                found += [decode_item(raw) for raw in response["Responses"].get(self.name, [])]
                pending = response.get("UnprocessedKeys") or {}
        return [item for item in found if _is_live(item, now)]

    def query(
        self,
        pk: str,
        *,
        prefix: str | None = None,
        after: str | None = None,
        between: tuple[str, str] | None = None,
        newest_first: bool = False,
        limit: int | None = None,
        cursor: str | None = None,
        where: Condition | None = None,
        index: str | None = None,
        consistent: bool = True,
    ) -> Page:
        """Items of one partition in sort-key order: all, within a prefix, after a key
        (exclusive), or within an inclusive `between` range.

        With `limit`, returns at most that many live items and a cursor to continue from.
        """
        key_attr = "open_pk" if index else "pk"
        sort_attr = "open_sk" if index else "sk"
        expr = Expression()
        key_condition = f"{expr.name(key_attr)} = {expr.value(pk)}"
        if between is not None:
            low, high = between
            key_condition += f" AND {expr.name(sort_attr)} BETWEEN {expr.value(low)} AND {expr.value(high)}"
        elif after is not None:
            key_condition += f" AND {expr.name(sort_attr)} > {expr.value(after)}"
        elif prefix:
            key_condition += f" AND begins_with({expr.name(sort_attr)}, {expr.value(prefix)})"
        request: dict[str, Any] = {
            "TableName": self.name,
            "KeyConditionExpression": key_condition,
            "ScanIndexForward": not newest_first,
        }
        if index:
            request["IndexName"] = index
        else:
            request["ConsistentRead"] = consistent
        filter_expression = where.render(expr) if where else None
        if filter_expression:
            request["FilterExpression"] = filter_expression
        expr.apply(request)
        if cursor:
            request["ExclusiveStartKey"] = self._decode_cursor(cursor, key_attr, pk)

        items: list[dict] = []
        now = _now()
        while True:
            if limit is not None:
                request["Limit"] = max(limit - len(items), 1) if not filter_expression else max(limit, 25)
            response = self._client.query(**request)
            for raw in response.get("Items", []):
                item = decode_item(raw)
                if _is_live(item, now):
                    items.append(item)
            last_key = response.get("LastEvaluatedKey")
            if limit is not None and len(items) >= limit:
                if len(items) > limit:
                    items = items[:limit]
                    last = items[-1]
                    keys = (key_attr, sort_attr, "pk", "sk")
                    last_key = encode_item({k: last[k] for k in dict.fromkeys(keys) if k in last})
                return Page(items, self._encode_cursor(last_key) if last_key else None)
            if not last_key:
                return Page(items, None)
            request["ExclusiveStartKey"] = last_key

    # --- writes ----------------------------------------------------------------------------

    def put(self, item: dict, *, must_not_exist: bool = False, condition: Condition | None = None) -> dict:
        item = {"version": 1, **item}
        request: dict[str, Any] = {"TableName": self.name, "Item": encode_item(item)}
        expr = Expression()
        parts = []
        if must_not_exist:
            parts.append(f"attribute_not_exists({expr.name('pk')})")
        if condition:
            rendered = condition.render(expr)
            if rendered:
                parts.append(rendered)
        if parts:
            request["ConditionExpression"] = " AND ".join(parts)
            expr.apply(request)
        try:
            self._client.put_item(**request)
        except Exception as error:
            if _condition_failed(error):
                raise ConditionFailed() from error
            raise
        return item

    def update(
        self,
        pk: str,
        sk: str,
        *,
        set: dict[str, Any] | None = None,
        add: dict[str, int | float] | None = None,
        remove: Iterable[str] = (),
        expect_version: int | None = None,
        condition: Condition | None = None,
    ) -> dict:
        """Apply changes to an existing item and return it as it now is."""
        expr = Expression()
        assignments = [f"{expr.name(k)} = {expr.value(v)}" for k, v in (set or {}).items()]
        version = expr.name("version")
        additions = [f"{version} {expr.value(1)}"]
        additions += [f"{expr.name(k)} {expr.value(v)}" for k, v in (add or {}).items()]
        update_expression = ""
        if assignments:
            update_expression += "SET " + ", ".join(assignments) + " "
        update_expression += "ADD " + ", ".join(additions)
        removals = [expr.name(k) for k in remove]
        if removals:
            update_expression += " REMOVE " + ", ".join(removals)
        conditions = [f"attribute_exists({expr.name('pk')})"]
        if expect_version is not None:
            conditions.append(f"{version} = {expr.value(expect_version)}")
        if condition:
            rendered = condition.render(expr)
            if rendered:
                conditions.append(rendered)
        request = expr.apply(
            {
                "TableName": self.name,
                "Key": encode_item({"pk": pk, "sk": sk}),
                "UpdateExpression": update_expression,
                "ConditionExpression": " AND ".join(conditions),
                "ReturnValues": "ALL_NEW",
            }
        )
        try:
            response = self._client.update_item(**request)
        except Exception as error:
            if _condition_failed(error):
                raise ConditionFailed() from error
            raise
        return decode_item(response["Attributes"])

    def increment(self, pk: str, sk: str, *, add: dict[str, int | float], set: dict[str, Any]) -> None:
        """Create-or-add counters in one atomic write (no version: counters commute)."""
        expr = Expression()
        additions = ", ".join(f"{expr.name(k)} {expr.value(v)}" for k, v in add.items())
        assignments = ", ".join(f"{expr.name(k)} = {expr.value(v)}" for k, v in set.items())
        request = expr.apply(
            {
                "TableName": self.name,
                "Key": encode_item({"pk": pk, "sk": sk}),
                "UpdateExpression": f"ADD {additions}" + (f" SET {assignments}" if assignments else ""),
            }
        )
        self._client.update_item(**request)

    def delete(self, pk: str, sk: str, *, condition: Condition | None = None) -> bool:
        """Delete an item; False when it was not there (or the condition did not hold)."""
        expr = Expression()
        rendered = f"attribute_exists({expr.name('pk')})"
        extra = condition.render(expr) if condition else None
        if extra:
            rendered += " AND " + extra
        request = expr.apply(
            {"TableName": self.name, "Key": encode_item({"pk": pk, "sk": sk}), "ConditionExpression": rendered}
        )
        try:
            self._client.delete_item(**request)
            return True
        except Exception as error:
            if _condition_failed(error):
                return False
            raise

    def transact(self, writes: list["Write"]) -> None:
        """All-or-nothing writes; any failed condition raises ConditionFailed."""
        try:
            self._client.transact_write_items(TransactItems=[w.render(self.name) for w in writes])
        except Exception as error:
            if _condition_failed(error):
                reasons = getattr(error, "response", {}).get("CancellationReasons", [])
                failed = tuple(i for i, reason in enumerate(reasons) if reason.get("Code") == "ConditionalCheckFailed")
                raise ConditionFailed(failed=failed) from error
            raise

    def batch_put(self, items: list[dict]) -> None:
        for start in range(0, len(items), 25):
            pending = {self.name: [{"PutRequest": {"Item": encode_item(i)}} for i in items[start : start + 25]]}
            while pending:
                response = self._client.batch_write_item(RequestItems=pending)
                pending = response.get("UnprocessedItems") or {}

    def delete_expired(self, now: int | None = None) -> int:
        """Delete items whose TTL has passed, as DynamoDB's TTL process does in AWS (moto never
        does). Only the local stack calls it; a condition keeps an item renewed meanwhile."""
        now = now or _now()
        expired = [item for item in self.scan_all() if item.get(TTL_ATTRIBUTE) is not None
                   and item[TTL_ATTRIBUTE] <= now]
        deleted = 0
        for item in expired:
            deleted += self.delete(item["pk"], item["sk"], condition=Condition(below={TTL_ATTRIBUTE: now + 1}))
        return deleted

    def scan_all(self) -> list[dict]:
        """Every stored item, expired ones included (snapshots of the local stack)."""
        items: list[dict] = []
        request: dict[str, Any] = {"TableName": self.name}
        while True:
            response = self._client.scan(**request)
            items += [decode_item(raw) for raw in response.get("Items", [])]
            if "LastEvaluatedKey" not in response:
                return items
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    # --- cursors ---------------------------------------------------------------------------

    @staticmethod
    def _encode_cursor(last_key: dict) -> str:
        plain = {k: v["S"] for k, v in last_key.items()}
        return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode().rstrip("=")

    @staticmethod
    def _decode_cursor(cursor: str, key_attr: str, pk: str) -> dict:
        try:
            padded = cursor + "=" * (-len(cursor) % 4)
            plain = json.loads(base64.urlsafe_b64decode(padded.encode()))
            if not isinstance(plain, dict) or plain.get(key_attr) != pk:
                raise ValueError("cursor belongs to another listing")
            return {k: {"S": str(v)} for k, v in plain.items()}
        except (ValueError, binascii.Error, UnicodeDecodeError) as error:
            raise BadRequest("invalid pagination cursor") from error


@dataclass
class Write:
    """One element of a transaction: a put (optionally only-if-new), an update or a delete."""

    kind: str
    pk: str
    sk: str
    item: dict | None = None
    set: dict[str, Any] | None = None
    add: dict[str, int | float] | None = None
    condition: Condition | None = None
    must_not_exist: bool = False
    must_exist: bool = False
    remove: tuple[str, ...] = ()

    @classmethod
    def put(cls, item: dict, *, must_not_exist: bool = False, condition: Condition | None = None) -> "Write":
        return cls("put", item["pk"], item["sk"], item={"version": 1, **item}, must_not_exist=must_not_exist,
                   condition=condition)

    @classmethod
    def update(cls, pk: str, sk: str, *, set: dict | None = None, add: dict | None = None,
               remove: tuple[str, ...] = (), condition: Condition | None = None) -> "Write":
        return cls("update", pk, sk, set=set, add=add, condition=condition, must_exist=True, remove=remove)

    @classmethod
    def increment(cls, pk: str, sk: str, *, add: dict, set: dict | None = None) -> "Write":
        """Create-or-add counters (no condition: counters commute)."""
        return cls("update", pk, sk, set=set, add=add)

    @classmethod
    def delete(cls, pk: str, sk: str, *, condition: Condition | None = None) -> "Write":
        return cls("delete", pk, sk, condition=condition)

    @classmethod
    def check(cls, pk: str, sk: str, condition: Condition) -> "Write":
        return cls("check", pk, sk, condition=condition, must_exist=True)

    def render(self, table: str) -> dict:
        expr = Expression()
        conditions = []
        if self.must_not_exist:
            conditions.append(f"attribute_not_exists({expr.name('pk')})")
        if self.must_exist:
            conditions.append(f"attribute_exists({expr.name('pk')})")
        extra = self.condition.render(expr) if self.condition else None
        if extra:
            conditions.append(extra)
        key = encode_item({"pk": self.pk, "sk": self.sk})
        if self.kind == "put":
            body: dict[str, Any] = {"TableName": table, "Item": encode_item(self.item or {})}
        elif self.kind == "update":
            assignments = [f"{expr.name(k)} = {expr.value(v)}" for k, v in (self.set or {}).items()]
            additions = [f"{expr.name('version')} {expr.value(1)}"]
            additions += [f"{expr.name(k)} {expr.value(v)}" for k, v in (self.add or {}).items()]
            update_expression = ("SET " + ", ".join(assignments) + " " if assignments else "")
            update_expression += "ADD " + ", ".join(additions)
            if self.remove:
                update_expression += " REMOVE " + ", ".join(expr.name(k) for k in self.remove)
            body = {"TableName": table, "Key": key, "UpdateExpression": update_expression}
        else:
            body = {"TableName": table, "Key": key}
        if conditions:
            body["ConditionExpression"] = " AND ".join(conditions)
        expr.apply(body)
        name = {"put": "Put", "update": "Update", "delete": "Delete", "check": "ConditionCheck"}[self.kind]
        return {name: body}
