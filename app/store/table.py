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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from app.aws import AwsClients
from app.errors import BadRequest, ConditionFailed
from app.store.codec import decode_item, encode, encode_item
from app.store.keys import OPEN_PK, OPEN_SK

Item = TypeVar("Item")
Other = TypeVar("Other")

TTL_ATTRIBUTE = "expires_epoch"
OPEN_INDEX = "open"  # sparse index over unfinished work: system scope (sweeper, dispatch), never a tenant query


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
    below_or_missing: dict[str, Any] = field(default_factory=dict)  # a counter not yet made counts as zero

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
        for k, v in self.below_or_missing.items():
            name = expr.name(k)
            parts.append(f"(attribute_not_exists({name}) OR {name} < {expr.value(v)})")
        return " AND ".join(parts) if parts else None


@dataclass
class Page(Generic[Item]):
    """One page of a listing and the opaque cursor to the next (None: the last page)."""

    items: list[Item]
    cursor: str | None

    def map(self, convert: Callable[[Item], "Other"]) -> "Page[Other]":
        return Page([convert(item) for item in self.items], self.cursor)


class Table:
    def __init__(self, name: str, clients: AwsClients):
        self.name = name
        self._clients = clients

    @property
    def _client(self) -> Any:
        return self._clients.client("dynamodb")

    def status(self) -> str:
        """The table's status (`ACTIVE`, ...); raises the AWS error when it cannot be described."""
        return self._client.describe_table(TableName=self.name)["Table"]["TableStatus"]

    # --- reads -----------------------------------------------------------------------------

    def get(self, pk: str, sk: str, *, consistent: bool = True) -> dict | None:
        raw = self._client.get_item(
            TableName=self.name, Key=encode_item({"pk": pk, "sk": sk}), ConsistentRead=consistent
        ).get("Item")
        if raw is None:
            return None
        item = decode_item(raw)
        return item if _is_live(item) else None

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
    ) -> Page[dict]:
        """Items of one partition in sort-key order: all, within a prefix, after a key
        (exclusive), or within an inclusive `between` range.

        With `limit`, returns at most that many live items and a cursor to continue from.
        """
        key_attr = OPEN_PK if index else "pk"
        sort_attr = OPEN_SK if index else "sk"
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

    # --- writes: each is a Write rendered once, alone or in a transaction ---------------------

    def put(self, item: dict, *, must_not_exist: bool = False, condition: Condition | None = None) -> dict:
        write = Write.put(item, must_not_exist=must_not_exist, condition=condition)
        self._apply(self._client.put_item, write)
        return write.item or {}

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
        if expect_version is not None:
            condition = replace(condition or Condition(), equals={**(condition.equals if condition else {}),
                                                                   "version": expect_version})
        write = Write.update(pk, sk, set=set, add=add, remove=tuple(remove), condition=condition)
        response = self._apply(self._client.update_item, write, ReturnValues="ALL_NEW")
        return decode_item(response["Attributes"])

    def increment(self, pk: str, sk: str, *, add: dict[str, int | float], set: dict[str, Any]) -> None:
        """Create-or-add counters in one atomic write (no version: counters commute)."""
        self._client.update_item(**Write.increment(pk, sk, add=add, set=set).body(self.name))

    def delete(self, pk: str, sk: str, *, condition: Condition | None = None) -> bool:
        """Delete an item; False when it was not there (or the condition did not hold)."""
        try:
            self._apply(self._client.delete_item, Write.delete(pk, sk, condition=condition, must_exist=True))
            return True
        except ConditionFailed:
            return False

    def _apply(self, call: Any, write: "Write", **extra: Any) -> dict:
        try:
            return call(**write.body(self.name), **extra)
        except Exception as error:
            if _condition_failed(error):
                raise ConditionFailed() from error
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
    """One write, alone (`Table.put/update/delete`) or an element of a transaction: a put
    (optionally only-if-new), an update (of an existing item, bumping `version`), a counter
    increment (create-or-add, unversioned) or a delete."""

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
    versioned: bool = True

    @classmethod
    def put(cls, item: dict, *, must_not_exist: bool = False, condition: Condition | None = None) -> "Write":
        return cls("put", item["pk"], item["sk"], item={"version": 1, **item}, must_not_exist=must_not_exist,
                   condition=condition)

    @classmethod
    def update(cls, pk: str, sk: str, *, set: dict | None = None, add: dict | None = None,
               remove: tuple[str, ...] = (), condition: Condition | None = None) -> "Write":
        return cls("update", pk, sk, set=set, add=add, condition=condition, must_exist=True, remove=remove)

    @classmethod
    def increment(cls, pk: str, sk: str, *, add: dict, set: dict | None = None,
                  condition: Condition | None = None) -> "Write":
        """Create-or-add counters (no version: counters commute), within `condition` if given."""
        return cls("update", pk, sk, set=set, add=add, condition=condition, versioned=False)

    @classmethod
    def delete(cls, pk: str, sk: str, *, condition: Condition | None = None, must_exist: bool = False) -> "Write":
        return cls("delete", pk, sk, condition=condition, must_exist=must_exist)

    def body(self, table: str) -> dict:
        """The request: PutItem/UpdateItem/DeleteItem parameters, or one TransactWriteItems element's."""
        expr = Expression()
        conditions = []
        if self.must_not_exist:
            conditions.append(f"attribute_not_exists({expr.name('pk')})")
        if self.must_exist:
            conditions.append(f"attribute_exists({expr.name('pk')})")
        extra = self.condition.render(expr) if self.condition else None
        if extra:
            conditions.append(extra)
        body: dict[str, Any] = {"TableName": table}
        if self.kind == "put":
            body["Item"] = encode_item(self.item or {})
        else:
            body["Key"] = encode_item({"pk": self.pk, "sk": self.sk})
        if self.kind == "update":
            body["UpdateExpression"] = self._update_expression(expr)
        if conditions:
            body["ConditionExpression"] = " AND ".join(conditions)
        return expr.apply(body)

    def _update_expression(self, expr: Expression) -> str:
        assignments = [f"{expr.name(k)} = {expr.value(v)}" for k, v in (self.set or {}).items()]
        additions = [f"{expr.name('version')} {expr.value(1)}"] if self.versioned else []
        additions += [f"{expr.name(k)} {expr.value(v)}" for k, v in (self.add or {}).items()]
        clauses = []
        if assignments:
            clauses.append("SET " + ", ".join(assignments))
        if additions:
            clauses.append("ADD " + ", ".join(additions))
        if self.remove:
            clauses.append("REMOVE " + ", ".join(expr.name(k) for k in self.remove))
        return " ".join(clauses)

    def render(self, table: str) -> dict:
        """This write as an element of TransactWriteItems."""
        return {{"put": "Put", "update": "Update", "delete": "Delete"}[self.kind]: self.body(table)}
