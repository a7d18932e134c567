"""Local-stack persistence: moto keeps state in memory, so the stack snapshots it to disk.

DynamoDB items are read with Scan and written back with BatchWriteItem — public API calls, in
their raw attribute-value form so types round-trip exactly. KMS key material has no API to
export, so it is read from and restored into moto's in-process backend (the one place berth
touches moto internals). SQS messages are not kept: the sweeper re-sends any dispatched job
whose message was lost, so nothing is lost with them. See docs/decisions.md.
"""

import json
import os
from pathlib import Path

from app import aws

_DYNAMODB_FILE = "dynamodb.jsonl"
_KMS_FILE = "kms.json"


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    with open(temporary, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    temporary.rename(path)


def save(state_dir: Path, table_name: str) -> int:
    """Write the table and KMS keys to `state_dir`; returns the number of items saved."""
    state_dir.mkdir(parents=True, exist_ok=True)
    dynamodb = aws.client("dynamodb")
    lines = []
    request = {"TableName": table_name}
    while True:
        response = dynamodb.scan(**request)
        lines += [json.dumps(item, separators=(",", ":")) for item in response.get("Items", [])]
        if "LastEvaluatedKey" not in response:
            break
        request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
    _write_atomically(state_dir / _DYNAMODB_FILE, "\n".join(lines) + ("\n" if lines else ""))
    _write_atomically(state_dir / _KMS_FILE, json.dumps(_export_kms_keys()))
    return len(lines)


def restore(state_dir: Path, table_name: str) -> int:
    """Load a snapshot into a freshly created table and KMS; returns the number of items loaded."""
    kms_file = state_dir / _KMS_FILE
    if kms_file.exists():
        _import_kms_keys(json.loads(kms_file.read_text()))
    items_file = state_dir / _DYNAMODB_FILE
    if not items_file.exists():
        return 0
    items = [json.loads(line) for line in items_file.read_text().splitlines() if line.strip()]
    dynamodb = aws.client("dynamodb")
    for start in range(0, len(items), 25):
        pending = {table_name: [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]}
        while pending:
            pending = dynamodb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
    return len(items)


def _kms_backend():
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.kms.models import kms_backends

    return kms_backends[DEFAULT_ACCOUNT_ID][aws.client("kms").meta.region_name]


def _export_kms_keys() -> dict:
    backend = _kms_backend()
    keys = [{"id": key.id, "material": key.key_material.hex(), "description": key.description}
            for key in backend.keys.values() if key.key_state == "Enabled"]
    aliases = {alias: key.id for key in backend.keys.values() for alias in key.aliases}
    return {"keys": keys, "aliases": aliases}


def _import_kms_keys(snapshot: dict) -> None:
    backend = _kms_backend()
    kms = aws.client("kms")
    for saved in snapshot.get("keys", []):
        if saved["id"] in backend.keys:
            continue
        created = kms.create_key(Description=saved["description"])["KeyMetadata"]["KeyId"]
        key = backend.keys.pop(created)
        key.arn = key.arn.replace(created, saved["id"])
        key.id = saved["id"]
        key.key_material = bytes.fromhex(saved["material"])
        backend.keys[saved["id"]] = key
    for alias, key_id in snapshot.get("aliases", {}).items():
        if key_id in backend.keys and not backend.alias_exists(alias):
            kms.create_alias(AliasName=alias, TargetKeyId=key_id)
