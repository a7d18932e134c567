"""Opaque pagination cursors: a listing's last key, encoded for the client, and checked on its way
back, so a tampered cursor (keys missing or added, values that are not strings, another tenant's
partition, a key outside the listing's range) is a 400 and never a query DynamoDB would refuse."""

import base64
import binascii
import json

from app.errors import BadRequest


def encode_cursor(last_key: dict) -> str:
    """A listing's last key (DynamoDB's `LastEvaluatedKey`, string attributes) as a cursor."""
    plain = {name: value["S"] for name, value in last_key.items()}
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode().rstrip("=")


def start_key(cursor: str, *, names: tuple[str, ...], partition_attr: str, partition: str, sort_attr: str,
              prefix: str | None, after: str | None, between: tuple[str, str] | None) -> dict:
    """The `ExclusiveStartKey` a cursor holds for a query of `partition` over a sort-key range (as
    `Table.query` states it): exactly the key attributes `names`, all non-empty strings."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        plain = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:
        raise BadRequest("invalid pagination cursor") from error
    if not isinstance(plain, dict) or set(plain) != set(names) or \
            not all(isinstance(value, str) and value for value in plain.values()):
        raise BadRequest("invalid pagination cursor")
    if plain[partition_attr] != partition:
        raise BadRequest("invalid pagination cursor: it belongs to another listing")
    if not _within(plain[sort_attr], prefix=prefix, after=after, between=between):
        raise BadRequest("invalid pagination cursor: it points outside this listing")
    return {name: {"S": value} for name, value in plain.items()}


def _within(sort_key: str, *, prefix: str | None, after: str | None, between: tuple[str, str] | None) -> bool:
    """Whether a sort key lies in the range a query reads (as its key condition states it)."""
    if between is not None:
        return between[0] <= sort_key <= between[1]
    if after is not None:
        return sort_key > after
    return sort_key.startswith(prefix or "")
