"""DynamoDB attribute-value encoding for plain Python values.

Numbers come back as int when integral and float otherwise, so callers never see Decimal. A
number DynamoDB cannot hold (NaN, an infinity, more than 38 digits) is refused before any request
(`Unstorable`, a 422), and `item_size` measures an item as DynamoDB does, so the table can refuse
one over 400 KB with a clear error instead of failing the request.
"""

import math
from decimal import Decimal
from typing import Any

from app.errors import Unprocessable


def encode(value: Any) -> dict:
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, (int, float)):
        _number_size(value)  # raises Unstorable for what DynamoDB would refuse
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


ITEM_MAX_BYTES = 400 * 1024  # DynamoDB's limit on one item, attribute names included
_NUMBER_DIGITS = 38  # DynamoDB keeps numbers to 38 significant digits, in magnitude 1e-130 to 1e126


class Unstorable(Unprocessable):
    """A value DynamoDB refuses whatever its size: NaN, an infinity, a number out of its range."""


def stored_size(value: Any) -> int:
    """The bytes `value` takes in a DynamoDB item, by AWS's published rules (strings and binary by
    length, numbers up to 21 bytes, 3 bytes and 1 per element for maps and lists); Unstorable for
    a number DynamoDB cannot hold."""
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, (int, float)):
        return _number_size(value)
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, dict):
        return 3 + sum(len(str(name).encode()) + stored_size(element) + 1 for name, element in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return 3 + sum(stored_size(element) + 1 for element in value)
    raise TypeError(f"cannot store a {type(value).__name__} in DynamoDB")


def item_size(item: dict) -> int:
    return sum(len(name.encode()) + stored_size(value) for name, value in item.items())


def _number_size(number: int | float) -> int:
    if isinstance(number, float) and not math.isfinite(number):
        raise Unstorable(f"{number} is not a number DynamoDB can store")
    if not number:
        return 1
    _, digits, exponent = Decimal(repr(number) if isinstance(number, float) else number).as_tuple()
    significant = len(bytes(digits).rstrip(b"\0"))  # DynamoDB trims trailing zeros
    magnitude = len(digits) + int(exponent)  # the position of the leading digit
    if significant > _NUMBER_DIGITS or not -129 <= magnitude <= 126:
        raise Unstorable(f"{number} has more digits or a larger magnitude than DynamoDB stores "
                         f"({_NUMBER_DIGITS} significant digits, 1e-130 to 1e126)")
    return min(21, (significant + 1) // 2 + 1)
