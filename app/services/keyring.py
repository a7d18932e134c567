"""Runtime keys on the API's side, and a job's secrets on their way from the API to one runtime.

A runtime key (`brk_...`, app.contract.sealing) is minted at registration, returned to the runtime
once and stored only sealed with the KMS key (`services.secrets`, kind `runtime-key`, bound to the
runtime's workspace). From it come the key the API signs control requests and proxy tokens with and
the key it seals a job's secrets with for that runtime. A runtime registered before keys existed
has none: the API signs for it with its token's digest until it registers again, and sends it no
secrets (dispatch places a job with secrets only on a runtime with a key).

A job's secrets (a sandbox's env values; any field a payload model names secret) are kept on the
job's item sealed with the KMS key (kind `job-secrets`, the job's workspace), never in its payload,
and sealed again for the runtime each time the job is sent to one (context: the job id).
"""

from dataclasses import dataclass
from typing import Any

from app.contract.sealing import RUNTIME_KEY_PREFIX, RuntimeKeys, seal
from app.domain.jobs import Job
from app.domain.runtimes import Runtime
from app.errors import Conflict
from app.ids import new_secret
from app.services.secrets import SecretBox

RUNTIME_KEY_KIND = "runtime-key"
JOB_SECRETS_KIND = "job-secrets"


@dataclass(frozen=True)
class IssuedKey:
    key: str  # for the runtime, once
    sealed: str  # for the runtime's item


class RuntimeKeyring:
    def __init__(self, box: SecretBox):
        self.box = box

    def issue(self, workspace_id: str) -> IssuedKey:
        key = new_secret(RUNTIME_KEY_PREFIX)
        return IssuedKey(key, self.box.seal(key, kind=RUNTIME_KEY_KIND, workspace_id=workspace_id))

    def keys(self, runtime: Runtime) -> RuntimeKeys | None:
        """The runtime's keys; None for a runtime registered without a runtime key."""
        if not runtime.sealed_key:
            return None
        key = self.box.open(runtime.sealed_key, kind=RUNTIME_KEY_KIND, workspace_id=runtime.workspace_id)
        return RuntimeKeys.derive(key)

    def signing_key(self, runtime: Runtime) -> str:
        """What control requests and proxy tokens for `runtime` are signed with: its runtime key's
        signing key; for a runtime registered before runtime keys, its token's digest."""
        keys = self.keys(runtime)
        return keys.signing if keys is not None else runtime.token_digest

    @staticmethod
    def require_key(runtime: Runtime) -> None:
        """Conflict for a runtime that cannot receive secrets."""
        if not runtime.holds_key:
            raise _keyless(runtime)

    def seal_for(self, runtime: Runtime, value: Any, context: str) -> str:
        """`value` sealed so that only `runtime` opens it, for `context`; Conflict for a runtime
        without a runtime key."""
        keys = self.keys(runtime)
        if keys is None:
            raise _keyless(runtime)
        return seal(keys.sealing, value, context)


def _keyless(runtime: Runtime) -> Conflict:
    return Conflict(f"runtime {runtime.runtime_id} registered without a runtime key, so it cannot receive secrets; "
                    "remove its registration (runtime.json) and register it again")


class JobSecrets:
    def __init__(self, box: SecretBox, keyring: RuntimeKeyring):
        self.box = box
        self.keyring = keyring

    def seal_at_rest(self, workspace_id: str, secrets: dict[str, Any]) -> str:
        return self.box.seal(secrets, kind=JOB_SECRETS_KIND, workspace_id=workspace_id)

    def open(self, job: Job) -> dict[str, Any]:
        """The job's secrets as stored (`{}` for none, or once it ended)."""
        if not job.secrets:
            return {}
        return self.box.open(job.secrets, kind=JOB_SECRETS_KIND, workspace_id=job.workspace_id)

    def for_runtime(self, job: Job, runtime: Runtime) -> str | None:
        """The job's secrets sealed for `runtime` (JobMessage.secrets); None when it has none."""
        if not job.secrets:
            return None
        return self.keyring.seal_for(runtime, self.open(job), job.job_id)
