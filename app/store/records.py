"""Items to records and back: the attributes of an item are its record's fields, plus its keys.

Records are frozen dataclasses of `app.domain`; an item's key attributes (`pk`, `sk`, the open
index's) and anything a record does not name are dropped on the way in, None fields on the way out.
"""

from dataclasses import fields
from enum import Enum
from typing import Any, TypeVar

Record = TypeVar("Record")
_NAMES: dict[type, tuple[str, ...]] = {}


def _names(cls: type) -> tuple[str, ...]:
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


def record(cls: type[Record], item: dict, **converted: Any) -> Record:
    """The record `cls` an item holds; `converted` gives fields that need more than a copy (enums)."""
    values = {name: item[name] for name in _names(cls) if name in item}
    values.update(converted)
    return cls(**values)


def attributes(record: Any, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """A record's fields as item attributes: enums as their values, None left out."""
    values = {}
    for name in _names(type(record)):
        value = getattr(record, name)
        if value is not None and name not in skip:
            values[name] = value.value if isinstance(value, Enum) else value
    return values
