"""The local stack's table snapshot, read from and written back into moto's backend: every
attribute type comes back as it was, the file is private, and changes reach it within the interval."""

import stat
import time

import boto3
import pytest

from app.local.snapshot import TableSnapshot
from app.store.schema import ensure_table

ITEMS = [
    {"pk": {"S": "WS#a"}, "sk": {"S": "JOB#1"}, "n": {"N": "42"}, "price": {"N": "0.125"}, "ok": {"BOOL": True},
     "none": {"NULL": True}, "blob": {"B": b"\x00\xffbinary"}, "tags": {"SS": ["a", "b"]}, "sizes": {"NS": ["1", "2"]},
     "payload": {"M": {"model": {"S": "berth-demo/tiny-llama"}, "files": {"L": [{"N": "7"}, {"S": "x"},
                                                                                  {"M": {"deep": {"BOOL": False}}}]}}}},
    {"pk": {"S": "WS#a"}, "sk": {"S": "EV#0000000001"}, "message": {"S": "résumé ✓"},
     "blobs": {"BS": [b"\x01", b"\x02"]}},
    {"pk": {"S": "WS#b"}, "sk": {"S": "WORKSPACE"}, "open_jobs": {"N": "0"}, "open_pk": {"S": "OPEN"}},
]


@pytest.fixture
def table(aws_resources):
    client = boto3.client("dynamodb", region_name="us-east-1")
    for item in ITEMS:
        client.put_item(TableName=aws_resources.table_name, Item=item)
    return client, aws_resources.table_name


def _scan(client, table_name: str) -> list[dict]:
    return sorted(client.scan(TableName=table_name)["Items"], key=lambda item: (item["pk"]["S"], item["sk"]["S"]))


def test_a_saved_table_comes_back_item_for_item_and_type_for_type(table, tmp_path):
    client, table_name = table
    before = _scan(client, table_name)
    snapshot = TableSnapshot(tmp_path / "state" / "dynamodb.jsonl", table_name, "us-east-1", interval=1.0)
    saved = snapshot.save()
    assert saved.items == 3 and saved.bytes == snapshot.path.stat().st_size
    assert stat.S_IMODE(snapshot.path.stat().st_mode) == 0o600

    client.delete_table(TableName=table_name)  # a new stand-in: an empty table of the same shape
    ensure_table(boto3.Session(region_name="us-east-1"), table_name)
    assert _scan(client, table_name) == []
    assert snapshot.restore() == 3
    assert _scan(client, table_name) == before


def test_a_change_reaches_the_file_within_the_interval_and_the_last_one_at_close(table, tmp_path):
    client, table_name = table
    snapshot = TableSnapshot(tmp_path / "dynamodb.jsonl", table_name, "us-east-1", interval=0.2)
    snapshot.start()
    client.put_item(TableName=table_name, Item={"pk": {"S": "WS#c"}, "sk": {"S": "USER#1"}})
    snapshot.changed()
    deadline = time.monotonic() + 10
    while not (snapshot.path.exists() and "USER#1" in snapshot.path.read_text()):
        assert time.monotonic() < deadline, "the change never reached the file"
        time.sleep(0.05)

    client.put_item(TableName=table_name, Item={"pk": {"S": "WS#c"}, "sk": {"S": "USER#2"}})
    snapshot.changed()
    assert snapshot.close() is not None  # written at once, not after the interval
    assert "USER#2" in snapshot.path.read_text()
    assert snapshot.close() is None  # nothing left to write


def test_a_damaged_snapshot_is_refused_with_its_line_rather_than_half_restored(table, tmp_path):
    _, table_name = table
    path = tmp_path / "dynamodb.jsonl"
    path.write_text('{"pk": {"S": "WS#a"}, "sk": {"S": "X"}}\n{"pk": {"S": "WS#a"\n')
    with pytest.raises(ValueError, match="line 2"):
        TableSnapshot(path, table_name, "us-east-1", interval=1.0).restore()
