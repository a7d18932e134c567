"""The table's items on disk, kept continuously by the AWS stand-in's own process (app.local.aws_server).

moto keeps state in memory. Every DynamoDB request that may change something marks the table
changed; a writer thread writes the whole table `interval` seconds after the first unsaved change,
so a burst of writes costs one file and a change is on disk within about a second. The file is one
JSON object per line, each item in DynamoDB's attribute-value form (types round-trip exactly),
written with app.files.write_private (0600, atomic). When the stack goes (Ctrl-C, or a SIGKILL that
closes this process's stdin) the server stops taking requests and writes what is left, so only a
kill of this process itself can lose the last second. See docs/decisions.md, "Local persistence".

Reading the items straight from moto's backend (under moto_fidelity's lock, so the file is one
instant of the table, transactions whole) costs a fraction of a Scan through HTTP; so does putting
them back on start. With kms_state and moto_fidelity this is where berth touches moto internals:
the items' attribute values (`DynamoType`), the backend's `put_item`, the handler's `call_action`.

KMS keys are kept beside it (app.local.kms_state). SQS messages are not kept: the sweeper re-sends
any dispatched job whose message was lost, and claims fence duplicates.
"""

import base64
import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from moto.core import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import DynamoDBBackend, dynamodb_backends
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler

from app.files import write_private
from app.local import moto_fidelity

SNAPSHOT_FILE = "dynamodb.jsonl"

logger = logging.getLogger("berth.local.snapshot")

# Requests that change nothing. Anything else (an unknown action included) counts as a change:
# the worst a wrong guess costs is one needless write.
READ_ONLY_ACTIONS = frozenset({
    "GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems", "DescribeTable", "ListTables",
    "DescribeTimeToLive", "DescribeContinuousBackups", "ListTagsOfResource", "DescribeLimits", "DescribeEndpoints",
    "ListBackups", "DescribeBackup", "ListGlobalTables", "DescribeGlobalTable", "ListExports", "ListImports",
})


@dataclass(frozen=True)
class Saved:
    items: int
    bytes: int
    seconds: float  # the whole write
    locked_seconds: float  # of which DynamoDB requests waited (the items read under the lock)


def track_changes(on_change: Callable[[], None]) -> None:
    """Call `on_change` after every DynamoDB request that may have changed something (after it is
    applied and before it is answered, so an acknowledged write is always marked)."""
    call_action = DynamoHandler.call_action

    @functools.wraps(call_action)
    def tracking(handler: DynamoHandler, *args, **kwargs):
        try:
            return call_action(handler, *args, **kwargs)
        finally:
            if handler._get_action() not in READ_ONLY_ACTIONS:
                on_change()

    setattr(DynamoHandler, "call_action", tracking)  # noqa: B010  (patching moto is the point)


class TableSnapshot:
    """One table kept in `path`: `restore()` once, then `start()` to keep it, `close()` at the end."""

    def __init__(self, path: Path, table_name: str, region: str, interval: float):
        self.path = path
        self.table_name = table_name
        self.region = region
        self.interval = interval
        self._condition = threading.Condition()
        self._pending = False  # a change not yet on disk
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

    def changed(self) -> None:
        with self._condition:
            self._pending = True
            self._condition.notify()

    def save(self) -> Saved:
        """Write the table now."""
        with self._writing:
            started = time.perf_counter()
            with moto_fidelity.exclusive():  # copied, so they are serialised after the lock is let go
                table = self._backend.get_table(self.table_name)
                items = [{name: _attribute(value) for name, value in item.attrs.items()} for item in _items(table)]
            locked = time.perf_counter() - started
            text = "".join(json.dumps(item, separators=(",", ":")) + "\n" for item in items)
            write_private(self.path, text)
            return Saved(items=len(items), bytes=len(text), seconds=time.perf_counter() - started,
                         locked_seconds=locked)

    def close(self) -> Saved | None:
        """Stop the writer and write what it had not (call once no request can come any more)."""
        self._closing.set()
        with self._condition:
            self._condition.notify()
        if self._writer is not None:
            self._writer.join()
        with self._condition:
            pending, self._pending = self._pending, False
        return self.save() if pending else None

    def _write_changes(self) -> None:
        while True:
            with self._condition:
                while not (self._pending or self._closing.is_set()):
                    self._condition.wait()
            if self._closing.wait(self.interval):  # the changes of the next `interval` go in the same write
                return
            with self._condition:
                self._pending = False
            try:
                self.save()
            except Exception:
                logger.exception("could not write the table snapshot; retrying")
                self.changed()


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


def _items(table: Table) -> Iterator:
    for partition in table.items.values():
        if table.has_range_key:
            yield from partition.values()
        else:
            yield partition
