"""The local stack's table snapshot, read from and written back into moto's backend: every
attribute type comes back as it was, the file is private, changes reach it within the interval, and
a write that reads only the items the requests named leaves the same file as a pass over the table."""

import stat
import subprocess
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
    snapshot.anything_changed()
    deadline = time.monotonic() + 10
    while not (snapshot.path.exists() and "USER#1" in snapshot.path.read_text()):
        assert time.monotonic() < deadline, "the change never reached the file"
        time.sleep(0.05)

    client.put_item(TableName=table_name, Item={"pk": {"S": "WS#c"}, "sk": {"S": "USER#2"}})
    snapshot.anything_changed()
    assert snapshot.close() is not None  # written at once, not after the interval
    assert "USER#2" in snapshot.path.read_text()
    assert snapshot.close() is None  # nothing left to write


def test_a_damaged_snapshot_is_refused_with_its_line_rather_than_half_restored(table, tmp_path):
    _, table_name = table
    path = tmp_path / "dynamodb.jsonl"
    path.write_text('{"pk": {"S": "WS#a"}, "sk": {"S": "X"}}\n{"pk": {"S": "WS#a"\n')
    with pytest.raises(ValueError, match="line 2"):
        TableSnapshot(path, table_name, "us-east-1", interval=1.0).restore()


def test_writing_only_what_requests_named_leaves_the_file_a_whole_pass_would(tmp_path):
    """Every kind of write, through the real AWS stand-in process, as the stack runs it."""
    from botocore.exceptions import ClientError

    from app.local.aws_server import AwsServerProcess
    from app.local.stack import PROJECT_ROOT, free_port

    server = AwsServerProcess(free_port(), tmp_path, "us-east-1", PROJECT_ROOT)
    server.start(subprocess.Popen)
    try:
        session = boto3.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1")
        endpoint = f"http://127.0.0.1:{server.port}"
        client = session.client("dynamodb", endpoint_url=endpoint)
        ensure_table(_Clients(session, endpoint), "berth")
        for item in ITEMS:
            client.put_item(TableName="berth", Item=item)
        server.keep_table("berth", interval=3600)  # nothing is written but what the test asks for
        assert server.save(whole=True)["read"] == 3

        key = {"pk": {"S": "WS#a"}, "sk": {"S": "JOB#1"}}
        client.put_item(TableName="berth", Item={"pk": {"S": "WS#d"}, "sk": {"S": "A"}, "n": {"N": "1"}})
        client.update_item(TableName="berth", Key=key, UpdateExpression="SET payload.files[0] = :v, n = n + :one",
                           ExpressionAttributeValues={":v": {"N": "8"}, ":one": {"N": "1"}})
        client.delete_item(TableName="berth", Key={"pk": {"S": "WS#b"}, "sk": {"S": "WORKSPACE"}})
        client.batch_write_item(RequestItems={"berth": [
            {"PutRequest": {"Item": {"pk": {"S": "WS#d"}, "sk": {"S": "B"}}}},
            {"DeleteRequest": {"Key": {"pk": {"S": "WS#d"}, "sk": {"S": "A"}}}}]})
        client.transact_write_items(TransactItems=[
            {"Put": {"TableName": "berth", "Item": {"pk": {"S": "WS#d"}, "sk": {"S": "C"}}}},
            {"Update": {"TableName": "berth", "Key": {"pk": {"S": "WS#d"}, "sk": {"S": "B"}},
                        "UpdateExpression": "SET seen = :t", "ExpressionAttributeValues": {":t": {"BOOL": True}}}},
            {"ConditionCheck": {"TableName": "berth", "Key": key, "ConditionExpression": "attribute_exists(pk)"}}])
        with pytest.raises(ClientError):  # rolled back: the put must not reach the file
            client.transact_write_items(TransactItems=[
                {"Put": {"TableName": "berth", "Item": {"pk": {"S": "WS#d"}, "sk": {"S": "D"}}}},
                {"Delete": {"TableName": "berth", "Key": key, "ConditionExpression": "attribute_not_exists(pk)"}}])
        with pytest.raises(ClientError):
            client.put_item(TableName="berth", Item={"pk": {"S": "WS#d"}, "sk": {"S": "C"}},
                            ConditionExpression="attribute_not_exists(pk)")
        written = server.save()
        assert not written["whole"] and written["read"] == 6  # the items named (D, rolled back, too), once each
        file = (tmp_path / "dynamodb.jsonl").read_text()
        assert sorted(file.splitlines()) == sorted(_lines_of(_scan(client, "berth")))

        assert server.save(whole=True)["read"] == 4  # a pass over the table's 4 items: the same lines
        assert sorted((tmp_path / "dynamodb.jsonl").read_text().splitlines()) == sorted(file.splitlines())

        client.execute_statement(Statement="UPDATE berth SET note = 'partiql' WHERE pk = 'WS#d' AND sk = 'C'")
        assert server.save()["whole"]  # a request that names no keys: the whole table is read again
        assert "partiql" in (tmp_path / "dynamodb.jsonl").read_text()
        assert sorted((tmp_path / "dynamodb.jsonl").read_text().splitlines()) == sorted(
            _lines_of(_scan(client, "berth")))
    finally:
        server.stop()


class _Clients:
    def __init__(self, session, endpoint: str):
        self.session, self.endpoint = session, endpoint

    def client(self, name: str):
        return self.session.client(name, endpoint_url=self.endpoint)


def _lines_of(items: list[dict]) -> list[str]:
    """Scan's items as the file holds them (binary in base64)."""
    import base64
    import json

    def plain(value):
        if isinstance(value, bytes):
            return base64.b64encode(value).decode("ascii")
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    return [json.dumps(plain(item), separators=(",", ":")) for item in items]
