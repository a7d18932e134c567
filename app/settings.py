"""The one settings object. Every value comes from a `BERTH_`-prefixed environment variable.

The composition root (app.composition) reads them once per process; everything else receives
them from it. AWS endpoints and credentials are deliberately *not* here: boto3 reads them from the standard
environment (`AWS_ENDPOINT_URL`, `AWS_REGION`, ...), so the local stack and AWS run the same code.
"""

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.contract.policy import DEFAULT_TTL_SECONDS, SandboxPolicy

# The sandbox limits and command rules default to the contract's, which the worker enforces too.
_POLICY = SandboxPolicy()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BERTH_", extra="ignore")

    mode: Literal["local", "aws"] = "local"
    host: str = "127.0.0.1"
    port: int = 7500
    public_url: str = ""  # base URL clients use; derived from host/port when empty
    data_dir: Path = Path.home() / ".berth"

    table_name: str = "berth"
    queue_prefix: str = "berth"  # runtime queues are <prefix>-rt-<runtime id>
    dead_letter_queue_name: str = "berth-dead-letters"
    kms_key_alias: str = "alias/berth"

    # Identity of this build, surfaced by /v1/version and /v1/health.
    build_commit: str = "dev"
    build_date: str = ""

    # Request handling.
    max_body_bytes: int = 1_048_576
    page_size_default: int = 50
    page_size_max: int = 200

    # Accounts.
    session_ttl_seconds: int = 7 * 24 * 3600
    reset_token_ttl_seconds: int = 3600
    verify_token_ttl_seconds: int = 3 * 24 * 3600
    mailer: Literal["file", "ses"] = "file"
    mail_from: str = "berth <no-reply@berth.local>"
    # Addresses whose accounts are the platform operator, once the address is verified (an
    # out-of-band grant or revocation, `berth admin grant-operator|revoke-operator`, outranks it).
    operator_emails: list[str] = Field(default_factory=list)
    # Whether an account must prove its address before it mints keys or join tokens or runs jobs.
    # Off by default for mode=local (one person's machine; `berth up` says so), always on for
    # mode=aws, where turning it off is refused.
    require_email_verification: bool = False
    # Login, signup and forgot: at most this many attempts per window, for each address and for each
    # client address (429 with Retry-After beyond); forgot takes at least forgot_min_seconds, so its
    # duration does not tell whether an account exists.
    auth_rate_window_seconds: int = Field(default=900, ge=1)
    auth_rate_per_address: int = Field(default=10, ge=1)
    auth_rate_per_client: int = Field(default=100, ge=1)
    forgot_min_seconds: float = Field(default=1.0, ge=0)

    # Runtimes and jobs.
    heartbeat_interval_seconds: int = 15
    job_visibility_seconds: int = 60
    job_max_receives: int = 5
    dispatch_stale_seconds: int = 60
    sse_window_seconds: float = 25.0  # under API Gateway's 29 s cut
    sse_poll_seconds: float = 0.5  # how often a stream reads the table when no event reached it in-process
    sweep_interval_seconds: float = 5.0
    # How stale an in-process read of a credential or the runtime list may be (0 turns caching off).
    read_cache_seconds: float = 5.0

    # Policy: the guardrails /v1/policies reports and the workers enforce.
    max_ttl_seconds: int = 3600
    default_ttl_seconds: int = DEFAULT_TTL_SECONDS
    max_concurrent_jobs: int = 16
    sandbox_memory_mb: int = _POLICY.memory_mb
    sandbox_cpu_seconds: int = _POLICY.cpu_seconds
    sandbox_max_processes: int = _POLICY.max_processes
    sandbox_max_open_files: int = _POLICY.max_open_files
    sandbox_network: bool = _POLICY.network
    command_allowlist: list[str] = Field(default_factory=lambda: list(_POLICY.command_allowlist))
    command_denylist: list[str] = Field(default_factory=lambda: list(_POLICY.command_denylist))
    tool_call_timeout_seconds: float = 20.0
    matrixshell_enabled: bool = True

    # Infra SSH (app.services.infra_ssh): where the inventory is (a YAML file; `s3://bucket/key`;
    # `ssm:/parameter/name`; empty: no inventory, the SSH routes answer 503), how often it is read
    # again, and the approval lease's bounds.
    ssh_inventory: str = ""
    ssh_inventory_refresh_seconds: float = 60.0
    ssh_lease_max_seconds: int = 3600
    ssh_lease_request_seconds: int = 900  # how long a requested lease waits for a person to approve it
    ssh_connect_timeout_seconds: float = 10.0

    @model_validator(mode="after")
    def _verification_holds_in_aws(self) -> "Settings":
        if self.mode == "aws":
            if "require_email_verification" in self.model_fields_set and not self.require_email_verification:
                raise ValueError("BERTH_REQUIRE_EMAIL_VERIFICATION cannot be turned off in mode=aws: anyone could "
                                 "claim any address")
            self.require_email_verification = True
        return self

    @property
    def base_url(self) -> str:
        return self.public_url.rstrip("/") or f"http://{self.host}:{self.port}"

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

