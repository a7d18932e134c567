"""Schemathesis hooks for `test_openapi_conformance.py` (loaded through `SCHEMATHESIS_HOOKS`).

Only one: `POST /v1/cloud/runtimes/lease` is a long poll that holds a request for up to
`wait_seconds` (at most 20, 10 when left out) when the runtime's queue is empty, by design. A
schema-valid wait (or none) is sent as 0, which is just as valid, so the run spends its time on
answers rather than on waiting; an invalid wait is sent as drawn (and refused at once).
"""

import schemathesis

LONG_POLL = ("POST", "/v1/cloud/runtimes/lease")


@schemathesis.hook
def before_call(context, case, kwargs):
    if (case.method.upper(), case.path) != LONG_POLL or not isinstance(case.body, dict):
        return
    wait = case.body.get("wait_seconds", 10)
    if isinstance(wait, int) and not isinstance(wait, bool) and 0 < wait <= 20:
        case.body["wait_seconds"] = 0
