"""The table's definition, for creating it where no CloudFormation runs (local stack, tests).

It mirrors `Table` in template.yaml; tests check the two agree.
"""

from app.aws import AwsClients
from app.store.keys import OPEN_PK, OPEN_SK
from app.store.table import OPEN_INDEX, TTL_ATTRIBUTE


def table_definition(name: str) -> dict:
    return {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": attribute, "AttributeType": "S"} for attribute in ("pk", "sk", OPEN_PK, OPEN_SK)
        ],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": OPEN_INDEX,
                "KeySchema": [
                    {"AttributeName": OPEN_PK, "KeyType": "HASH"},
                    {"AttributeName": OPEN_SK, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    }


def ensure_table(clients: AwsClients, name: str) -> None:
    dynamodb = clients.client("dynamodb")
    existing = dynamodb.list_tables().get("TableNames", [])
    if name in existing:
        return
    dynamodb.create_table(**table_definition(name))
    dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    dynamodb.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
    )
