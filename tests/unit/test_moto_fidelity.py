"""The local stack's patches to moto's DynamoDB: transactions roll back item by item, without
copying the table, and concurrent requests through the threaded server do not race."""

import copy
import threading

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from app.local import moto_fidelity
from app.store.schema import table_definition
from app.store.table import OPEN_INDEX


@pytest.fixture
def dynamodb(aws_resources):
    moto_fidelity.install()
    moto_fidelity.install()  # idempotent
    return boto3.client("dynamodb", region_name="us-east-1"), aws_resources.table_name


def _item(sk: str, **attributes) -> dict:
    return {"pk": {"S": "WS#a"}, "sk": {"S": sk}, **{k: {"S": v} for k, v in attributes.items()}}


def _key(sk: str) -> dict:
    return {"pk": {"S": "WS#a"}, "sk": {"S": sk}}


def _open_items(client, table: str, open_pk: str = "OPEN") -> list[str]:
    response = client.query(TableName=table, IndexName=OPEN_INDEX, KeyConditionExpression="open_pk = :p",
                            ExpressionAttributeValues={":p": {"S": open_pk}})
    return sorted(item["sk"]["S"] for item in response["Items"])


def _get(client, table: str, sk: str) -> dict | None:
    return client.get_item(TableName=table, Key=_key(sk)).get("Item")


def test_a_transaction_applies_every_item(dynamodb):
    client, table = dynamodb
    client.put_item(TableName=table, Item=_item("J#1", status="queued", open_pk="OPEN", open_sk="1"))
    client.put_item(TableName=table, Item=_item("J#gone"))
    client.transact_write_items(TransactItems=[
        {"Update": {"TableName": table, "Key": _key("J#1"), "UpdateExpression": "SET #s = :r REMOVE open_pk",
                    "ConditionExpression": "#s = :q", "ExpressionAttributeNames": {"#s": "status"},
                    "ExpressionAttributeValues": {":r": {"S": "running"}, ":q": {"S": "queued"}}}},
        {"Put": {"TableName": table, "Item": _item("J#2", open_pk="OPEN", open_sk="2"),
                 "ConditionExpression": "attribute_not_exists(pk)"}},
        {"Delete": {"TableName": table, "Key": _key("J#gone")}},
    ])
    assert _get(client, table, "J#1")["status"] == {"S": "running"}
    assert _get(client, table, "J#gone") is None
    assert _open_items(client, table) == ["J#2"]


def test_a_failed_condition_restores_the_items_already_written(dynamodb):
    client, table = dynamodb
    existing = _item("J#1", status="queued", open_pk="OPEN", open_sk="1")
    client.put_item(TableName=table, Item=existing)
    client.put_item(TableName=table, Item=_item("J#taken", owner="someone"))
    with pytest.raises(ClientError) as raised:
        client.transact_write_items(TransactItems=[
            {"Update": {"TableName": table, "Key": _key("J#1"), "UpdateExpression": "SET #s = :r REMOVE open_pk",
                        "ExpressionAttributeNames": {"#s": "status"},
                        "ExpressionAttributeValues": {":r": {"S": "running"}}}},
            {"Put": {"TableName": table, "Item": _item("J#taken", owner="me"),
                     "ConditionExpression": "attribute_not_exists(pk)",
                     "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}},
            {"Put": {"TableName": table, "Item": _item("J#new", open_pk="OPEN", open_sk="2")}},
        ])
    error = raised.value.response
    assert error["Error"]["Code"] == "TransactionCanceledException"
    assert [reason["Code"] for reason in error["CancellationReasons"]] == ["None", "ConditionalCheckFailed", "None"]
    assert error["CancellationReasons"][1]["Item"] == _item("J#taken", owner="someone")
    assert _get(client, table, "J#1") == existing
    assert _get(client, table, "J#taken") == _item("J#taken", owner="someone")
    assert _get(client, table, "J#new") is None
    assert _open_items(client, table) == ["J#1"]  # the index is what it was: J#1 back, J#2 not in


def test_a_rejected_transaction_restores_what_it_wrote_before_the_rejection(dynamodb):
    client, table = dynamodb
    with pytest.raises(ClientError) as raised:
        client.transact_write_items(TransactItems=[
            {"Put": {"TableName": table, "Item": _item("J#1", open_pk="OPEN", open_sk="1")}},
            {"Delete": {"TableName": table, "Key": _key("J#1")}},
        ])
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert "multiple operations on one item" in raised.value.response["Error"]["Message"]
    assert _get(client, table, "J#1") is None
    assert _open_items(client, table) == []


def test_a_transaction_does_not_copy_the_table(dynamodb, monkeypatch):
    from moto.dynamodb.models.table import Table

    client, table = dynamodb
    for start in range(0, 2000, 25):
        client.batch_write_item(RequestItems={table: [
            {"PutRequest": {"Item": _item(f"X#{n:04}", open_pk="OPEN", open_sk=str(n))}}
            for n in range(start, start + 25)]})
    table_copies = []
    deepcopy = copy.deepcopy

    def counting(value, memo=None):
        if isinstance(value, Table):
            table_copies.append(value.name)
        return deepcopy(value, memo)

    monkeypatch.setattr(copy, "deepcopy", counting)
    client.transact_write_items(TransactItems=[
        {"Update": {"TableName": table, "Key": _key("X#0001"), "UpdateExpression": "REMOVE open_pk"}},
        {"Put": {"TableName": table, "Item": _item("Y#1")}},
    ])
    with pytest.raises(ClientError):
        client.transact_write_items(TransactItems=[
            {"Delete": {"TableName": table, "Key": _key("X#0002")}},
            {"ConditionCheck": {"TableName": table, "Key": _key("X#0003"),
                                "ConditionExpression": "attribute_not_exists(pk)"}},
        ])
    assert table_copies == []
    assert _get(client, table, "X#0002") is not None
    assert len(_open_items(client, table)) == 1999


def test_concurrent_requests_through_the_threaded_server_do_not_race():
    import httpx
    from moto.server import ThreadedMotoServer

    from app.local.stack import free_port

    moto_fidelity.install()
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()

    def make_client():  # no retries: a 500 must fail the test, not be retried away
        return boto3.client("dynamodb", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing",
                            config=Config(retries={"total_max_attempts": 1}))

    def work(worker: int) -> None:
        own, open_pk = make_client(), f"OPEN#{worker}"
        try:
            for n in range(38):
                sk = f"J#{worker}-{n}"
                if n % 3 == 0:
                    own.transact_write_items(TransactItems=[
                        {"Put": {"TableName": table, "Item": _item(sk, open_pk=open_pk, open_sk=sk)}},
                        {"Update": {"TableName": table, "Key": _key("COUNTER"), "UpdateExpression": "ADD n :one",
                                    "ExpressionAttributeValues": {":one": {"N": "1"}}}},
                    ])
                elif n % 3 == 1:
                    own.put_item(TableName=table, Item=_item(sk, open_pk=open_pk, open_sk=sk))
                else:
                    assert len(_open_items(own, table, open_pk)) == n - n // 3  # every write so far
        except Exception as error:
            errors.append(error)

    client, table, errors = make_client(), "fidelity-concurrency", []
    try:
        client.create_table(**{**table_definition(table), "TableName": table})
        client.put_item(TableName=table, Item={**_key("COUNTER"), "n": {"N": "0"}})
        threads = [threading.Thread(target=work, args=(worker,)) for worker in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert client.get_item(TableName=table, Key=_key("COUNTER"))["Item"]["n"] == {"N": str(8 * 13)}
        assert all(len(_open_items(client, table, f"OPEN#{worker}")) == 26 for worker in range(8))
    finally:
        httpx.post(f"http://127.0.0.1:{port}/moto-api/reset", timeout=10)  # moto's state is the process's
        server.stop()


def test_index_queries_keep_moto_order_without_comparing_dynamo_types(dynamodb, monkeypatch):
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    client, table = dynamodb
    client.create_table(TableName="numbers", BillingMode="PAY_PER_REQUEST",
                        KeySchema=[{"AttributeName": "h", "KeyType": "HASH"}, {"AttributeName": "r", "KeyType": "RANGE"}],
                        AttributeDefinitions=[{"AttributeName": "h", "AttributeType": "S"},
                                              {"AttributeName": "r", "AttributeType": "N"}])
    for hash_key, range_key in [("b", "10"), ("a", "9"), ("b", "-1.5"), ("a", "100"), ("c", "0"), ("a", "20")]:
        client.put_item(TableName="numbers", Item={"h": {"S": hash_key}, "r": {"N": range_key}})
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    numbers = dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].get_table("numbers")
    expected = sorted((item for by_hash in numbers.items.values() for item in by_hash.values()),
                      key=lambda item: (item.hash_key, item.range_key))  # moto's own order
    compared = []
    monkeypatch.setattr(DynamoType, "__lt__", lambda self, other: compared.append(1) or NotImplemented)
    in_order = Table.all_items(numbers)
    assert [(i.hash_key.value, i.range_key.value) for i in in_order] == \
        [(i.hash_key.value, i.range_key.value) for i in expected] == \
        [("a", "9"), ("a", "20"), ("a", "100"), ("b", "-1.5"), ("b", "10"), ("c", "0")]
    assert compared == []  # sorted on plain values

    for n in range(30):  # and an index query still finds its partition's items, in range-key order
        client.put_item(TableName=table, Item=_item(f"J#{n:02d}", open_pk="OPEN" if n % 3 else "OTHER",
                                                    open_sk=f"{30 - n:02d}"))
    response = client.query(TableName=table, IndexName=OPEN_INDEX, KeyConditionExpression="open_pk = :p",
                            ExpressionAttributeValues={":p": {"S": "OPEN"}})
    assert [item["open_sk"]["S"] for item in response["Items"]] == sorted(
        f"{30 - n:02d}" for n in range(30) if n % 3)


def test_a_query_reads_its_partition_and_pages_as_moto_does(dynamodb, monkeypatch):
    from moto.dynamodb.models.dynamo_type import DynamoType

    client, table = dynamodb
    for n in range(300):  # a crowd in another partition
        client.put_item(TableName=table, Item={"pk": {"S": "WS#crowd"}, "sk": {"S": f"J#{n:03d}"}})
    for n in (3, 1, 2):
        client.put_item(TableName=table, Item=_item(f"E#{n}"))
    equality_checks = []
    original_eq = DynamoType.__eq__
    monkeypatch.setattr(DynamoType, "__eq__",
                        lambda self, other: equality_checks.append(1) or original_eq(self, other))
    first = client.query(TableName=table, KeyConditionExpression="pk = :p AND begins_with(sk, :e)",
                         ExpressionAttributeValues={":p": {"S": "WS#a"}, ":e": {"S": "E#"}}, Limit=2)
    assert [item["sk"]["S"] for item in first["Items"]] == ["E#1", "E#2"]
    assert len(equality_checks) < 20  # the crowd's 300 items were never looked at
    rest = client.query(TableName=table, KeyConditionExpression="pk = :p AND begins_with(sk, :e)",
                        ExpressionAttributeValues={":p": {"S": "WS#a"}, ":e": {"S": "E#"}},
                        ExclusiveStartKey=first["LastEvaluatedKey"])
    assert [item["sk"]["S"] for item in rest["Items"]] == ["E#3"]
    newest = client.query(TableName=table, KeyConditionExpression="pk = :p", ScanIndexForward=False, Limit=1,
                          ExpressionAttributeValues={":p": {"S": "WS#crowd"}})
    assert newest["Items"][0]["sk"]["S"] == "J#299"


def test_an_index_query_pages_through_every_match_in_order(dynamodb):
    client, table = dynamodb
    for n in range(40):
        client.put_item(TableName=table, Item=_item(f"J#{n:02d}", open_pk="OPEN" if n % 2 else "OTHER",
                                                    open_sk=f"{n % 7}-{n:02d}"))
    seen, start = [], {}
    while True:
        page = client.query(TableName=table, IndexName=OPEN_INDEX, KeyConditionExpression="open_pk = :p",
                            ExpressionAttributeValues={":p": {"S": "OPEN"}}, Limit=6, **start)
        seen += [item["open_sk"]["S"] for item in page["Items"]]
        if "LastEvaluatedKey" not in page:
            break
        start = {"ExclusiveStartKey": page["LastEvaluatedKey"]}
    assert seen == sorted(f"{n % 7}-{n:02d}" for n in range(40) if n % 2)
