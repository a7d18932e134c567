"""Local-stack persistence: moto keeps state in memory, so the stack snapshots it to disk.

DynamoDB items are read with Scan and written back with BatchWriteItem — public API calls, in
their raw attribute-value form so types round-trip exactly. KMS keys are kept by the AWS
stand-in's process itself (app.local.kms_state), in the same directory. SQS messages are not
kept: the sweeper re-sends any dispatched job whose message was lost, so nothing is lost with
them. See docs/decisions.md.
"""

import json
import os
from pathlib import Path

from app.aws import AwsClients

_DYNAMODB_FILE = "dynamodb.jsonl"


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` whole, flushed to disk: a crash leaves the old file or the new one."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    with open(temporary, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    temporary.rename(path)


def save(clients: AwsClients, state_dir: Path, table_name: str) -> int:
    """Write the table to `state_dir`; returns the number of items saved."""
    state_dir.mkdir(parents=True, exist_ok=True)
    dynamodb = clients.client("dynamodb")
    lines = []
    request: dict = {"TableName": table_name}
    while True:
        response = dynamodb.scan(**request)
        lines += [json.dumps(item, separators=(",", ":")) for item in response.get("Items", [])]
        if "LastEvaluatedKey" not in response:
            break
        request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
    write_atomically(state_dir / _DYNAMODB_FILE, "\n".join(lines) + ("\n" if lines else ""))
    return len(lines)


def restore(clients: AwsClients, state_dir: Path, table_name: str) -> int:
    """Load a snapshot into a freshly created table; returns the number of items loaded."""
    items_file = state_dir / _DYNAMODB_FILE
    if not items_file.exists():
        return 0
    items = [json.loads(line) for line in items_file.read_text().splitlines() if line.strip()]
    dynamodb = clients.client("dynamodb")
    for start in range(0, len(items), 25):
        pending = {table_name: [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]}
        while pending:
            pending = dynamodb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
    return len(items)
