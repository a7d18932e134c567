"""The base of every body berth reads: unknown fields are refused, and JSON's types are kept apart.

pydantic's lax mode turns `true` into 1, `0` into false and `"5"` into 5. A body the OpenAPI
document says is invalid must be refused (a client that sends `"shared": 0` has a bug worth
hearing about), so a number field takes only numbers and a boolean field only booleans. Strict
mode would go too far: JSON Schema counts `5.0` as an integer, and so does berth.
"""

import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, model_validator

# A string holding something besides white space, as Python's `str.strip` sees white space: a pattern
# JSON Schema (ECMA) and pydantic (Rust) read alike, for fields the API strips or tests with `.strip()`.
NOT_BLANK = r"[^\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


def _members(annotation: Any) -> set[Any]:
    """The plain types an annotation admits (`int | None` → {int, NoneType}); nested ones are ignored."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _members(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return set().union(*(_members(member) for member in get_args(annotation)))
    return {annotation}


def check_json_type(name: str, annotation: Any, value: Any) -> None:
    """Refuse what lax mode would convert between JSON's booleans, numbers and strings."""
    admitted = _members(annotation)
    if bool in admitted:
        if value is not None and not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false")
    elif admitted & {int, float} and str not in admitted and isinstance(value, (bool, str)):
        raise ValueError(f"{name} must be a number")


class JsonBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _json_types(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                for key in {name, field.alias or name}:  # as named, or by its alias (camelCase)
                    if key in data:
                        check_json_type(key, field.annotation, data[key])
        return data
