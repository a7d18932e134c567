"""The one settings object. Every value comes from a `BERTH_`-prefixed environment variable.

The composition root (app.composition) reads them once per process; everything else receives
them from it. AWS endpoints and credentials are deliberately *not* here: boto3 reads them from the standard
environment (`AWS_ENDPOINT_URL`, `AWS_REGION`, ...), so the local stack and AWS run the same code.
"""

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BeforeValidator, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.contract.policy import DEFAULT_TTL_SECONDS, SandboxPolicy

# The sandbox limits and command rules default to the contract's, which the worker enforces too.
_POLICY = SandboxPolicy()


def _listed(value: Any) -> Any:
    """A list setting from the environment: `a,b` (the ordinary form), or a JSON array."""
    if not isinstance(value, str):
        return value
    if value.lstrip().startswith("["):
        return json.loads(value)
    return [item.strip() for item in value.split(",") if item.strip()]


# `BERTH_OPERATOR_EMAILS=ops@example.com,lead@example.com` or `'["ops@example.com"]'`.
StringList = Annotated[list[str], NoDecode, BeforeValidator(_listed)]


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
    operator_emails: StringList = Field(default_factory=list)
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
    sandbox_max_file_mb: int = _POLICY.max_file_mb
    sandbox_disk_mb: int = _POLICY.disk_mb
    sandbox_total_memory_mb: int = _POLICY.sandbox_memory_mb  # the policy's sandbox_memory_mb: all processes together
    sandbox_cpu_cores: float = _POLICY.cpu_cores
    sandbox_network: bool = _POLICY.network
    command_allowlist: StringList = Field(default_factory=lambda: list(_POLICY.command_allowlist))
    command_denylist: StringList = Field(default_factory=lambda: list(_POLICY.command_denylist))
    tool_call_timeout_seconds: float = 20.0
    matrixshell_enabled: bool = True

    # The built-in MCP endpoint (/mcp): the Host and Origin header values it answers besides the
    # public URL's, the API Gateway domain a request arrived on, and (in local mode) loopback;
    # anything else is refused as DNS rebinding. Names or URLs: `api.example.com`, `https://...`.
    mcp_allowed_hosts: StringList = Field(default_factory=list)
    mcp_allowed_origins: StringList = Field(default_factory=list)

    # Shared tools: how long a sign-in link (an OAuth state) works.
    oauth_state_ttl_seconds: int = Field(default=600, ge=60, le=3600)

    # Integrations: named aliases of `/api/integrations/client?instanceId=...`, alias -> instance
    # id (`/api/integrations/tessaract` answers for the instance `tessaract`). JSON object.
    integration_aliases: dict[str, str] = Field(default_factory=lambda: {"tessaract": "tessaract"})

    # Models. The model hub the API resolves and searches with (the runtimes' HF_ENDPOINT should name the same).
    hf_endpoint: str = Field(default="https://huggingface.co",
                             validation_alias=AliasChoices("BERTH_HF_ENDPOINT", "HF_ENDPOINT"))
    hub_timeout_seconds: float = 10.0  # for one hub request; search then falls back to the curated catalog
    # A model.attach job serves until its installation is deleted; it stops (and is `expired`) after this.
    model_attach_ttl_seconds: int = 30 * 24 * 3600
    # How long an `/openai/v1` request (a whole streamed answer included) may take; under API Gateway's
    # 29 s cut, as tool calls are. Raise it where the API is not behind API Gateway (`berth up`).
    openai_request_timeout_seconds: float = 25.0
    # The marketplace: the MCP registries it refreshes from (the official registry API, JSON list).
    mcp_registry_urls: StringList = Field(default_factory=lambda: ["https://registry.modelcontextprotocol.io"])
    registry_timeout_seconds: float = 10.0  # one registry request
    registry_page_size: int = Field(default=100, ge=1, le=100)  # servers asked for per page (the API's most: 100)
    marketplace_refresh_seconds: float = 20.0  # a refresh through the API (under API Gateway's 29 s cut)
    # Installations: a server stops this long after its last use (scale to zero), within max_ttl_seconds.
    installation_idle_seconds: int = 900
    installation_start_wait_seconds: float = 5.0  # a tool call waits this long for a server to start
    files_bucket: str = "berth-files"
    installation_file_max_bytes: int = 1_000_000  # each file (the request also meets max_body_bytes)
    installation_max_files: int = 20
    # Remote MCP servers at private, loopback or link-local addresses (only for local servers).
    remote_mcp_allow_private_addresses: bool = False

    @field_validator("mcp_allowed_origins")
    @classmethod
    def _origins_are_urls(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if not origin.startswith(("http://", "https://")):
                raise ValueError(f"an origin is an http(s) URL, like https://console.example.com: {origin!r}")
        return origins

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

