"""DynamoDB attribute-value encoding for plain Python values.

Numbers come back as int when integral and float otherwise, so callers never see Decimal.
"""

from typing import Any


def encode(value: Any) -> dict:
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, (int, float)):
        return {"N": repr(value) if isinstance(value, float) else str(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bytes):
        return {"B": value}
    if isinstance(value, dict):
        return {"M": {str(k): encode(v) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return {"L": [encode(v) for v in value]}
    if isinstance(value, (set, frozenset)):
        return {"L": [encode(v) for v in sorted(value)]}
    raise TypeError(f"cannot store a {type(value).__name__} in DynamoDB")


def decode(attribute: dict) -> Any:
    (kind, value), = attribute.items()
    if kind == "S":
        return value
    if kind == "N":
        number = float(value)
        return int(value) if number.is_integer() and "e" not in value.lower() and "." not in value else number
    if kind == "BOOL":
        return value
    if kind == "NULL":
        return None
    if kind == "M":
        return {k: decode(v) for k, v in value.items()}
    if kind == "L":
        return [decode(v) for v in value]
    if kind == "B":
        return value
    if kind == "SS":
        return set(value)
    if kind == "NS":
        return {float(v) for v in value}
    raise TypeError(f"unsupported DynamoDB type {kind}")


def encode_item(item: dict) -> dict:
    return {k: encode(v) for k, v in item.items()}


def decode_item(raw: dict) -> dict:
    return {k: decode(v) for k, v in raw.items()}
