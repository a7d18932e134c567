"""Request fields bounded by the policy in force (`/v1/policies`), not by a constant.

`Field(..., json_schema_extra=policy_limit("max_ttl_seconds"))` marks the field; the OpenAPI
document (app.web.openapi) writes the setting's value as its `maximum`, so a client reading the
document knows the bound the service enforces.
"""

from pydantic.config import JsonDict

POLICY_MAXIMUM = "x-policy-maximum"


def policy_limit(setting: str) -> JsonDict:
    """`json_schema_extra` for a field whose maximum is the settings' `setting`."""
    return {POLICY_MAXIMUM: setting}
