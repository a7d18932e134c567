"""The worker's settings and its JSON-line logs.

Every setting is a field of `WorkerConfig`, and so both a `BERTH_WORKER_*` variable and a flag of
`python -m workers` / `berth worker` (workers.__main__ builds the parser from these fields; a
field's description is its help). Flags override variables, which override defaults.
"""

import logging
import os
import re
import socket
import sys
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.contract.logs import JsonLineFormatter
from app.contract.messages import ControlUrl
from workers.packages.installers import DEFAULT_REGISTRY_URLS

PackageRegistry = Literal["pypi", "npm"]  # the registries a worker installs from itself
HttpUrlText = Annotated[str, Field(pattern=r"^https?://[^\s/]+(/\S*)?$", max_length=500)]
_SAFE_COMPONENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def this_host_name() -> str:
    return socket.gethostname()[:100] or "runtime"


def berth_data_dir_worker() -> Path:
    """`worker` under the local stack's data directory (BERTH_DATA_DIR, default ~/.berth)."""
    return Path(os.environ.get("BERTH_DATA_DIR") or Path.home() / ".berth") / "worker"


def _public_registries() -> dict[PackageRegistry, str]:
    return {"pypi": DEFAULT_REGISTRY_URLS["pypi"], "npm": DEFAULT_REGISTRY_URLS["npm"]}


class WorkerConfig(BaseSettings):
    """Run a berth runtime worker: register with the API (once; the registration is saved),
    heartbeat, take jobs from the runtime's queues, run them and report back.

    Every setting is a flag and a BERTH_WORKER_* variable; flags override variables, which
    override defaults. Prefer BERTH_WORKER_JOIN_TOKEN to --join-token on shared hosts, where other
    users can read command lines.
    """

    model_config = SettingsConfigDict(env_prefix="BERTH_WORKER_", extra="forbid")

    api_url: str = Field(description="base URL of the berth API")
    join_token: SecretStr | None = Field(
        default=None, description="workspace join token; needed only when there is no saved registration")
    name: str = Field(default_factory=this_host_name, min_length=1, max_length=100,
                      description="runtime name shown in the workspace")
    data_dir: Path = Field(
        default_factory=berth_data_dir_worker,
        description="registration, event spool and job work directories: by default `worker` under "
                    "$BERTH_DATA_DIR (the local stack's), else ~/.berth/worker")
    max_concurrent_jobs: int = Field(default=2, ge=1, le=256, description="jobs run at once")
    queue_mode: Literal["sqs", "lease"] = Field(
        default="lease", description="sqs: read the runtime's SQS queues directly (needs AWS credentials); "
                                     "lease: lease their messages through the API")
    labels: dict[str, str] = Field(
        default_factory=dict, description="labels shown on the runtime: --label KEY=VALUE, repeatable "
                                          "(the variable takes a JSON object)")
    heartbeat_interval_seconds: int | None = Field(
        default=None, ge=1, description="heartbeat every this many seconds instead of the API's interval")
    visibility_seconds: int | None = Field(
        default=None, ge=5, le=3600,
        description="claim lease and message visibility instead of the API's (tests set it small)")
    poll_wait_seconds: int = Field(default=10, ge=0, le=20, description="long-poll wait on both queues")
    stop_grace_seconds: float = Field(
        default=30.0, ge=0, description="after SIGTERM, running jobs may finish this long before they are released")
    cancel_grace_seconds: float = Field(
        default=10.0, ge=0, description="a stopped executor has this long to return before it is cancelled")
    flush_timeout_seconds: float = Field(
        default=10.0, ge=0, description="a stopping worker tries this long to deliver its spooled events")
    retry_max_seconds: float = Field(
        default=30.0, gt=0, description="the longest wait between retries while the API or a queue is unreachable")
    log_level: str = Field(default="INFO", description="one of " + ", ".join(LOG_LEVELS))
    sandbox_tool_dirs: list[Path] = Field(
        default_factory=list,
        description="host directory every sandbox sees read-only at the same path (pre-installed MCP servers): "
                    "--sandbox-tool-dir DIR, repeatable (the variable takes a JSON list)")
    allow_unisolated_sandboxes: bool = Field(
        default=False, description="without bubblewrap, run this workspace's own sandboxes with rlimits only "
                                   "(no namespaces, the worker's network and uid); otherwise they are refused")
    package_cache_dir: Path | None = Field(
        default=None, description="where installed MCP server packages are kept (default: packages under the data dir)")
    package_cache_max_bytes: int = Field(
        default=10 * 1024**3, ge=0, description="size cap of the package cache; least recently used versions "
                                                "not in use are evicted past it")
    package_registries: dict[PackageRegistry, HttpUrlText] = Field(
        default_factory=_public_registries,
        description="the registries this runtime installs packages from: --package-registries TYPE=URL, "
                    "repeatable (the variable takes a JSON object); a type left out is refused")
    control_listen: str | None = Field(
        default=None, description="HOST:PORT where the API sends control requests directly (port 0: any free one); "
                                  "unset: they come through the control queue only")
    control_url: ControlUrl | None = Field(
        default=None, description="the URL the API should use for --control-listen "
                                  "(default: http://HOST:PORT as bound; needed when HOST is a wildcard address)")
    control_host_from_ec2_metadata: bool = Field(
        default=False, description="advertise this EC2 instance's private address (IMDSv2) with the bound port "
                                   "(host-networked ECS tasks)")
    die_with_parent: bool = Field(
        default=False, description="stop (as on SIGTERM) when the process that started this one exits "
                                   "(Linux; the local stack sets it)")
    vllm_command: str = Field(
        default="vllm serve", min_length=1, max_length=1000,
        description="the command that starts vLLM; the snapshot and the serving flags follow it")
    model_volume_roots: list[Path] = Field(
        default_factory=list, description="host directory `mount_volume` model installs may serve from, "
                                          "repeatable (the variable takes a JSON list); none: mount_volume is refused")

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        if value.upper() not in LOG_LEVELS:
            raise ValueError("expected one of " + ", ".join(LOG_LEVELS))
        return value.upper()

    @field_validator("control_listen")
    @classmethod
    def _check_control_listen(cls, value: str | None) -> str | None:
        if value is not None:
            split_host_port(value)
        return value

    @model_validator(mode="after")
    def _check_control_url(self) -> "WorkerConfig":
        if (self.control_url or self.control_host_from_ec2_metadata) and not self.control_listen:
            raise ValueError("a control URL is advertised only with control_listen")
        if self.control_url and self.control_host_from_ec2_metadata:
            raise ValueError("give control_url or control_host_from_ec2_metadata, not both")
        advertised = self.control_url or self.control_host_from_ec2_metadata
        if self.control_listen and not advertised and split_host_port(self.control_listen)[0] in WILDCARD_HOSTS:
            raise ValueError("listening on a wildcard address: give control_url (or control_host_from_ec2_metadata), "
                             "the address the API should use")
        return self

    @property
    def runtime_file(self) -> Path:
        return self.data_dir / "runtime.json"

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def package_cache_root(self) -> Path:
        return self.package_cache_dir or self.data_dir / "packages"

    def job_work_dir(self, job_id: str) -> Path:
        return self.data_dir / "jobs" / safe_path_component(job_id)


WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})


def split_host_port(address: str) -> tuple[str, int]:
    """`HOST:PORT` (`[v6]:PORT` for IPv6) as a host and a port; ValueError when it is neither (without
    quoting the address: a misplaced argument could be a secret)."""
    host, separator, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not separator or not port.isascii() or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("expected HOST:PORT with a port from 0 to 65535")
    if host not in WILDCARD_HOSTS and not re.fullmatch(r"[A-Za-z0-9.:\-]{1,253}", host):
        raise ValueError("HOST is not a host name or address")
    return host, int(port)


def safe_path_component(value: str) -> str:
    """`value` itself if it is safe as one file name (ids are); ValueError otherwise."""
    if not _SAFE_COMPONENT.match(value) or value in {".", ".."}:
        raise ValueError(f"not usable as a file name: {value!r}")
    return value


# --- logs -------------------------------------------------------------------------------------


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    # Their per-request lines would drown the worker's own (huggingface_hub 2.x talks through httpx2).
    for noisy in ("httpx", "httpcore", "httpx2", "httpcore2", "botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # asyncssh logs each command it sends at INFO, and an infra SSH command may carry a secret
    # parameter's value: its lines stay out of the worker's logs below WARNING, whatever the level.
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
