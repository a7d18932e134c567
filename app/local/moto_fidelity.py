"""Three fixes to moto's DynamoDB for the local stack, which serves it from a threaded server.

- moto's backend is not thread-safe: concurrent requests raced (a transaction's table copy
  failed with "dictionary changed size during iteration", a GSI query racing an update with a
  KeyError), and each race was an HTTP 500. DynamoDB makes each item write atomic; one
  process-wide lock around every DynamoDB request and backend call gives moto the same.
- TransactWriteItems deep-copied every table it touched, to roll back on failure, so a
  transaction cost time in proportion to the table: seconds at thousands of items. It keeps
  moto's own implementation here but rolls back only the items the transaction names.
- Every Query read the whole table, sorted by key through DynamoType's Python operators, then
  kept the items of the partition (or of the index) it asked for: most of a Query's cost, growing
  with the table (why job creation slowed as the local table filled). DynamoDB reads one
  partition. Here a Query on the table reads only its partition, and a Query on an index reads
  the items unsorted (it sorts what matches itself); a Scan, which pages in key order, gets the
  same order as before from each key's plain value, read once per item, which is exactly what
  DynamoType compares.

Patched on the classes, so it holds for every backend and survives moto's resets.
"""

import copy
import functools
import inspect
import threading

from moto.dynamodb import models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler

_lock = threading.RLock()
_install_lock = threading.Lock()


def install() -> None:
    """Patch moto's DynamoDB in place; idempotent."""
    with _install_lock:
        if getattr(DynamoDBBackend, "_berth_fidelity", False):
            return
        # Patching moto's classes and module in place is this module's purpose: setattr says so.
        setattr(models, "copy", _CopyKeepingTables())  # noqa: B010
        setattr(DynamoDBBackend, "transact_write_items",  # noqa: B010
                _restoring_items(DynamoDBBackend.transact_write_items))
        for name, attribute in list(vars(DynamoDBBackend).items()):
            if inspect.isfunction(attribute) and not name.startswith("_"):
                setattr(DynamoDBBackend, name, _serialised(attribute))
        # Responses serialise the live items a backend call returned after it returns, and
        # TransactGetItems and BatchGetItem read item by item: the whole request holds the lock.
        setattr(DynamoHandler, "call_action", _serialised(DynamoHandler.call_action))  # noqa: B010
        setattr(Table, "query", _reading_only_what_it_needs(Table.query))  # noqa: B010
        setattr(Table, "all_items", _all_items)  # noqa: B010
        setattr(DynamoDBBackend, "_berth_fidelity", True)  # noqa: B010


def exclusive() -> threading.RLock:
    """The lock every DynamoDB request holds: hold it to read the backend as one instant."""
    return _lock


def _serialised(function):
    @functools.wraps(function)
    def locked(*args, **kwargs):
        with _lock:
            return function(*args, **kwargs)

    return locked


_query_reading = threading.local()  # the Query running on this thread: (table, its partition's key or None)


def _reading_only_what_it_needs(query):
    signature = inspect.signature(query)

    @functools.wraps(query)
    def reading(table, *args, **kwargs):
        arguments = signature.bind(table, *args, **kwargs).arguments
        partition = None if arguments.get("index_name") else arguments.get("hash_key")
        _query_reading.current = (table, partition)
        try:
            return query(table, *args, **kwargs)
        finally:
            _query_reading.current = None

    return reading


def _all_items(table: Table) -> list:
    """What moto's Table.all_items returns, as far as its caller needs it (see the module's docstring)."""
    reading_table, partition = getattr(_query_reading, "current", None) or (None, None)
    if reading_table is table:
        if partition is None:
            return _unsorted(table.items.values(), table)
        return _unsorted([table.items[partition]] if partition in table.items else [], table)
    items = _unsorted(table.items.values(), table)
    if table.range_key_attr:
        return sorted(items, key=lambda item: (item.hash_key.cast_value, item.range_key.cast_value))
    return sorted(items, key=lambda item: item.hash_key.cast_value)


def _unsorted(partitions, table: Table) -> list:
    if not table.range_key_attr:
        return list(partitions)
    return [item for partition in partitions for item in partition.values()]


class _CopyKeepingTables:
    """What moto.dynamodb.models sees as `copy`. Its one deep copy of a Table is
    transact_write_items' backup (moto 5.2.5, models/__init__.py:613); handing back the table
    itself makes that backup free and moto's restore of it a no-op, and `_restoring_items`
    rolls back instead."""

    def __getattr__(self, name):
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value, memo=None):
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)


def _restoring_items(transact_write_items):
    @functools.wraps(transact_write_items)
    def restoring(backend, transact_items):
        before = _snapshot(backend, transact_items)
        try:
            transact_write_items(backend, transact_items)
        except Exception:
            _restore(before)
            raise

    return restoring


def _snapshot(backend, transact_items) -> dict:
    """Each item the transaction names as it is now (None if absent), by table and key."""
    items = {}
    for entry in transact_items:
        try:
            op_type, op = next(iter(entry.items()))
            table = backend.get_table(op["TableName"])
            hash_key, range_key = backend.get_keys_value(table, op["Item"] if op_type == "Put" else op["Key"])
        except Exception:  # an operation moto cannot key is one it cannot apply
            continue
        if (table.name, hash_key, range_key) not in items:
            items[table.name, hash_key, range_key] = (
                table, copy.deepcopy(table.get_item(hash_key, range_key)),
                len(table.stream_shard.items) if table.stream_shard else None)
    return items


def _restore(before: dict) -> None:
    # Straight into table.items, as moto's restored table copy was: GSIs are computed from
    # it, and the stream keeps none of the undone writes.
    for (_, hash_key, range_key), (table, item, stream_length) in before.items():
        container, key = (table.items[hash_key], range_key) if table.has_range_key else (table.items, hash_key)
        if item is None:
            container.pop(key, None)
        else:
            container[key] = item
        if stream_length is not None:
            del table.stream_shard.items[stream_length:]
