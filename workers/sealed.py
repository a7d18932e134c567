"""Opening what the API sealed for this runtime (app.contract.sealing): a job's secrets."""

from typing import Any

from app.contract.sealing import SealedValueRejected, unseal
from workers.executors.base import ExecutorError


def open_secrets(key: bytes | None, sealed: str | None, job_id: str) -> dict[str, Any]:
    """The job's secrets sealed for this runtime (`{}` for none); ExecutorError saying why they
    cannot be opened, never what they hold."""
    if sealed is None:
        return {}
    if key is None:
        raise ExecutorError("the job carries sealed secrets, but this runtime registered without a runtime key "
                            "to open them; remove its registration and register it again", code="bad_request")
    try:
        secrets = unseal(key, sealed, job_id)
    except SealedValueRejected as exc:
        raise ExecutorError(f"the job's secrets cannot be opened on this runtime: {exc}", code="bad_request") from None
    if not isinstance(secrets, dict):
        raise ExecutorError("the job's secrets are not a JSON object", code="bad_request")
    return secrets
