"""The table's items on disk, kept continuously by the AWS stand-in's own process (app.local.aws_server).

moto keeps state in memory. Every DynamoDB request that may change something is noted: the keys
of the items a keyed write (PutItem, UpdateItem, DeleteItem, BatchWriteItem, TransactWriteItems)
names, or "anything" for any other request that is not a read. A writer thread writes the file
`interval` seconds after the first unsaved change, so a burst of writes costs one file and a change
is on disk within about a second. It reads again only the items that changed (the whole table
after an "anything") and keeps the other lines as they were, so a write costs what changed plus
copying the file, not a pass over every item. The file is one JSON object per line, each item in
DynamoDB's attribute-value form (types round-trip exactly), written with app.files.write_private
(0600, atomic). When the stack goes (Ctrl-C, or a SIGKILL that closes this process's stdin) the
server stops taking requests and writes what is left, so only a kill of this process itself can
lose the last second. See docs/decisions.md ("Local persistence: the AWS stand-in writes the table
within a second of a change").

Items are read straight from moto's backend under moto_fidelity's lock, so the file is one
instant of the table (a transaction whole or not at all); putting them back on start uses the
backend too. With kms_state and moto_fidelity this is where berth touches moto internals: the
backend's write methods and `get_keys_value`, `Table.items`, the items' attribute values
(`DynamoType`), the handler's `call_action`.

KMS keys are kept beside it (app.local.kms_state). SQS messages are not kept: the sweeper re-sends
any dispatched job whose message was lost, and claims fence duplicates.
"""

import base64
import functools
import inspect
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

from moto.core import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import DynamoDBBackend, dynamodb_backends
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler

from app.files import write_private
from app.local import moto_fidelity

SNAPSHOT_FILE = "dynamodb.jsonl"

logger = logging.getLogger("berth.local.snapshot")

Key = tuple[DynamoType, DynamoType | None]  # an item's hash and range key values

# Requests that change nothing.
READ_ONLY_ACTIONS = frozenset({
    "GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems", "DescribeTable", "ListTables",
    "DescribeTimeToLive", "DescribeContinuousBackups", "ListTagsOfResource", "DescribeLimits", "DescribeEndpoints",
    "ListBackups", "DescribeBackup", "ListGlobalTables", "DescribeGlobalTable", "ListExports", "ListImports",
})
# Requests whose changes the backend methods below note item by item (BatchWriteItem calls
# put_item and delete_item). Any other request that is not a read counts as "anything changed":
# the worst a wrong guess costs is one pass over the table.
KEYED_ACTIONS = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
KEYED_METHODS = {"put_item": "item_attrs", "update_item": "key", "delete_item": "key"}  # method: its key argument


class Changes(Protocol):
    def item_changed(self, table_name: str, key: Key) -> None: ...

    def anything_changed(self) -> None: ...


@dataclass(frozen=True)
class Saved:
    items: int
    bytes: int
    read: int  # items read again (all of them when `whole`)
    whole: bool
    seconds: float  # the whole write
    locked_seconds: float  # of which DynamoDB requests waited (the items read under the lock)


def track_changes(changes: Changes) -> None:
    """Tell `changes` what every DynamoDB request may have changed, after it is applied and before
    it is answered (so an acknowledged write is always noted)."""
    for name, key_argument in KEYED_METHODS.items():
        _note_keys(name, key_argument, changes)
    transact_write_items = DynamoDBBackend.transact_write_items

    @functools.wraps(transact_write_items)
    def noting_transaction(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        try:
            transact_write_items(backend, transact_items)
        finally:
            for entry in transact_items:
                operation, request = next(iter(entry.items()))
                if operation != "ConditionCheck":
                    _note(backend, request.get("TableName"), request.get("Item" if operation == "Put" else "Key"),
                          changes)

    call_action = DynamoHandler.call_action

    @functools.wraps(call_action)
    def noting_anything(handler: DynamoHandler, *args, **kwargs):
        try:
            return call_action(handler, *args, **kwargs)
        finally:
            if handler._get_action() not in READ_ONLY_ACTIONS | KEYED_ACTIONS:
                changes.anything_changed()

    # Patching moto's classes in place is the point, as in moto_fidelity.
    setattr(DynamoDBBackend, "transact_write_items", noting_transaction)  # noqa: B010
    setattr(DynamoHandler, "call_action", noting_anything)  # noqa: B010


def _note_keys(name: str, key_argument: str, changes: Changes) -> None:
    method = getattr(DynamoDBBackend, name)
    signature = inspect.signature(method)

    @functools.wraps(method)
    def noting(backend: DynamoDBBackend, *args, **kwargs):
        try:
            return method(backend, *args, **kwargs)
        finally:
            arguments = signature.bind_partial(backend, *args, **kwargs).arguments
            _note(backend, arguments.get("table_name"), arguments.get(key_argument), changes)

    setattr(DynamoDBBackend, name, noting)


def _note(backend: DynamoDBBackend, table_name: str | None, attributes: dict | None, changes: Changes) -> None:
    try:
        key = backend.get_keys_value(backend.get_table(table_name), attributes)  # type: ignore[arg-type]
    except Exception:  # a request moto could not key is one it did not apply; unless it did: read everything
        changes.anything_changed()
    else:
        changes.item_changed(table_name, key)  # type: ignore[arg-type]


class TableSnapshot:
    """One table kept in `path`: `restore()` once, then `start()` to keep it, `close()` at the end.
    It is told what changed through `item_changed` and `anything_changed` (app.local.aws_server)."""

    def __init__(self, path: Path, table_name: str, region: str, interval: float):
        self.path = path
        self.table_name = table_name
        self.region = region
        self.interval = interval
        self._condition = threading.Condition()  # guards the three below
        self._pending = False  # a change not yet on disk
        self._changed: set[Key] = set()
        self._anything = True  # the first write reads the whole table
        self._lines: dict[Key, str] = {}  # the file as last written, line by item
        self._closing = threading.Event()
        self._writing = threading.Lock()  # one write at a time, in order
        self._writer: threading.Thread | None = None

    @property
    def _backend(self) -> DynamoDBBackend:
        return dynamodb_backends[DEFAULT_ACCOUNT_ID][self.region]

    def restore(self) -> int:
        """Put the saved items into the (new, empty) table; returns how many."""
        if not self.path.exists():
            return 0
        count = 0
        with self.path.open() as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{self.path}, line {number}: not a saved item ({exc.msg})") from None
                self._backend.put_item(self.table_name, item)
                count += 1
        return count

    def start(self) -> None:
        """Keep the file current from now on."""
        self._writer = threading.Thread(target=self._write_changes, name="table-snapshot", daemon=True)
        self._writer.start()

    def item_changed(self, table_name: str, key: Key) -> None:
        if table_name == self.table_name:
            with self._condition:
                self._changed.add(key)
                self._wake()

    def anything_changed(self) -> None:
        with self._condition:
            self._anything = True
            self._wake()

    def save(self, whole: bool = False) -> Saved:
        """Write the table now; with `whole`, reading every item again."""
        with self._writing:
            started = time.perf_counter()
            try:
                with moto_fidelity.exclusive():  # copied, so they are serialised after the lock is let go
                    with self._condition:
                        whole = whole or self._anything
                        changed, self._changed, self._anything, self._pending = self._changed, set(), False, False
                    table = self._backend.get_table(self.table_name)
                    read = ({key: _attributes(item) for key, item in _keyed_items(table)} if whole
                            else {key: _attributes(_find(table, key)) for key in changed})
                locked = time.perf_counter() - started
                if whole:
                    self._lines = {}
                for key, attributes in read.items():
                    if attributes is None:
                        self._lines.pop(key, None)
                    else:
                        self._lines[key] = json.dumps(attributes, separators=(",", ":")) + "\n"
                content = "".join(self._lines.values()).encode()
                write_private(self.path, content)
            except BaseException:
                self.anything_changed()  # what was taken is not on disk: the next write reads everything
                raise
            return Saved(items=len(self._lines), bytes=len(content), read=len(read), whole=whole,
                         seconds=time.perf_counter() - started, locked_seconds=locked)

    def close(self) -> Saved | None:
        """Stop the writer and write what it had not (call once no request can come any more)."""
        self._closing.set()
        with self._condition:
            self._condition.notify()
        if self._writer is not None:
            self._writer.join()
        with self._condition:
            pending = self._pending
        return self.save() if pending else None

    def _wake(self) -> None:
        self._pending = True
        self._condition.notify()

    def _write_changes(self) -> None:
        while True:
            with self._condition:
                while not (self._pending or self._closing.is_set()):
                    self._condition.wait()
            if self._closing.wait(self.interval):  # the changes of the next `interval` go in the same write
                return
            try:
                self.save()
            except Exception:
                logger.exception("could not write the table snapshot; retrying")


# moto's Table.items maps a hash key to the item, or (with a range key) to a dict of items by range key.


def _keyed_items(table: Table) -> Iterator[tuple[Key, Item]]:
    for hash_key, partition in table.items.items():
        if table.has_range_key:
            for range_key, item in partition.items():
                yield (hash_key, range_key), item
        else:
            yield (hash_key, None), cast(Item, partition)


def _find(table: Table, key: Key) -> Item | None:
    """The item, or None; without Table.get_item, whose defaultdict lookup adds empty partitions."""
    hash_key, range_key = key
    found: Any = table.items.get(hash_key)
    return found.get(range_key) if table.has_range_key and found is not None else found


def _attributes(item: Item | None) -> dict | None:
    return None if item is None else {name: _attribute(value) for name, value in item.attrs.items()}


def _attribute(value: DynamoType) -> dict:
    """An attribute value as DynamoDB's JSON carries it (binary in base64), in new containers.
    moto keeps binary as it came off the wire (base64 text) or, after some operations, as bytes."""
    kind, inner = value.type, value.value
    if kind == "M":
        return {"M": {name: _attribute(nested) for name, nested in inner.items()}}
    if kind == "L":
        return {"L": [_attribute(nested) for nested in inner]}
    if kind == "B":
        return {"B": _base64(inner)}
    if kind == "BS":
        return {"BS": [_base64(element) for element in inner]}
    if kind in ("SS", "NS"):
        return {kind: list(inner)}
    return {kind: inner}  # S, N (text), BOOL, NULL: immutable


def _base64(value: str | bytes) -> str:
    return value if isinstance(value, str) else base64.b64encode(value).decode("ascii")

