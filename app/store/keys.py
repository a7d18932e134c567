"""The key layout of the one table, written down once; only `app.store` uses it.

Everything a workspace owns lives in partition `WS#<workspace id>`; a job's events in a partition
of their own, `WS#<workspace id>#JOB#<job id>`. The partitions outside a workspace are the
lookups that must work before the workspace is known, `CRED#<digest>`, `EMAIL#<address>` and
`OAUTHSTATE#<digest>` (an OAuth callback carries only its state), the rate counters of the routes
that come before any workspace (`RATE#<name>`), and `MARKET`: the marketplace's entries from MCP
registries (public definitions every workspace reads), each registry's last refresh, and the
lease one refresh holds while it runs.
The sparse `open` index (`open_pk`/`open_sk`) holds unfinished jobs and all runtimes, for the
system's own work (sweeper, dispatch, heartbeats), never a tenant's query. Waiting jobs sort by
workspace, then age (so dispatch can read each workspace's oldest, and take turns); jobs on a
runtime by runtime, then age (so a heartbeat or a leaving runtime reads only its own).
"""

Key = tuple[str, str]

WORKSPACE = "WORKSPACE"
SSH_LEASE = "SSHLEASE"
USER, SESSION, API_KEY, JOB, EVENT, REPLY, RUNTIME, JOIN_TOKEN, AUDIT, USAGE, INSTALLATION = (
    "USER#", "SESSION#", "KEY#", "JOB#", "EV#", "REPLY#", "RT#", "JOIN#", "AUDIT#", "USAGE#", "INST#")
MODEL_PROFILE, MODEL_INSTALLATION, PROVIDER_CREDENTIAL = "MPROF#", "MINST#", "PROVIDER#"
MARKET = "MARKET"
MARKET_ENTRY, MARKET_REGISTRY = "ENTRY#", "REGISTRY#"
OAUTH_CLIENT, OAUTH_GRANT, INTEGRATION = "OAUTHCLIENT#", "GRANT#", "INTEGRATION#"

# The open index's partitions, and its key attributes (set on an item to list it there).
OPEN_PK, OPEN_SK = "open_pk", "open_sk"
JOBS_WAITING = "JOBS#waiting"  # unfinished, no runtime assigned: sorted by workspace, then age
JOBS_ASSIGNED = "JOBS#assigned"  # unfinished, on a runtime: sorted by runtime, then age
RUNTIMES = "RUNTIMES"

_SEQ_WIDTH = 10  # zero-padded, so events sort by number


def workspace_pk(workspace_id: str) -> str:
    return f"WS#{workspace_id}"


def workspace(workspace_id: str) -> Key:
    return workspace_pk(workspace_id), WORKSPACE


def user(workspace_id: str, user_id: str) -> Key:
    return workspace_pk(workspace_id), f"{USER}{user_id}"


def email(address: str) -> Key:
    return f"EMAIL#{address.lower()}", "EMAIL"


def session(workspace_id: str, user_id: str, session_id: str) -> Key:
    return workspace_pk(workspace_id), f"{SESSION}{user_id}#{session_id}"


def sessions_of(user_id: str) -> str:
    return f"{SESSION}{user_id}#"


def api_key(workspace_id: str, key_id: str) -> Key:
    return workspace_pk(workspace_id), f"{API_KEY}{key_id}"


def job(workspace_id: str, job_id: str) -> Key:
    return workspace_pk(workspace_id), f"{JOB}{job_id}"


def waiting_sk(workspace_id: str, created_epoch: float, job_id: str) -> str:
    """A waiting job's place: with its workspace's, oldest first."""
    return f"{workspace_id}#{int(created_epoch * 1000):015d}#{job_id}"


def assigned_sk(runtime_id: str, created_epoch: float, workspace_id: str, job_id: str) -> str:
    """An assigned job's place: with its runtime's, oldest first."""
    return f"{runtime_id}#{int(created_epoch * 1000):015d}#{workspace_id}#{job_id}"


def open_group(owner_id: str) -> str:
    """The sort-key prefix of one workspace's waiting jobs, or one runtime's assigned jobs."""
    return f"{owner_id}#"


def after_open_group(open_sk: str) -> str:
    """A sort key past every key of the group `open_sk` belongs to (`~` sorts after the digits
    and ids that follow a group's `#`)."""
    return open_sk.partition("#")[0] + "#~"


def events_pk(workspace_id: str, job_id: str) -> str:
    return f"{workspace_pk(workspace_id)}#{JOB}{job_id}"


def event_sk(seq: int) -> str:
    return f"{EVENT}{seq:0{_SEQ_WIDTH}d}"


def reply(workspace_id: str, request_id: str) -> Key:
    return workspace_pk(workspace_id), f"{REPLY}{request_id}"


def runtime(workspace_id: str, runtime_id: str) -> Key:
    return workspace_pk(workspace_id), f"{RUNTIME}{runtime_id}"


def join_token(workspace_id: str, token_id: str) -> Key:
    return workspace_pk(workspace_id), f"{JOIN_TOKEN}{token_id}"


def audit(workspace_id: str, audit_id: str) -> Key:
    return workspace_pk(workspace_id), f"{AUDIT}{audit_id}"


def usage(workspace_id: str, day: str, kind: str, subkind: str) -> Key:
    return workspace_pk(workspace_id), f"{USAGE}{day}#{kind}#{subkind}"


def usage_since(first_day: str) -> tuple[str, str]:
    """The inclusive sort-key range of usage counts from `first_day` on."""
    return f"{USAGE}{first_day}", f"{USAGE}~"


def model_profile(workspace_id: str, profile_id: str) -> Key:
    return workspace_pk(workspace_id), f"{MODEL_PROFILE}{profile_id}"


def model_installation(workspace_id: str, installation_id: str) -> Key:
    return workspace_pk(workspace_id), f"{MODEL_INSTALLATION}{installation_id}"


def provider_credential(workspace_id: str, provider: str) -> Key:
    return workspace_pk(workspace_id), f"{PROVIDER_CREDENTIAL}{provider}"


def ssh_lease(workspace_id: str) -> Key:
    """The workspace's infra SSH approval lease (one at a time)."""
    return workspace_pk(workspace_id), SSH_LEASE


def ssh_lease_jobs(lease_id: str) -> str:
    return f"{SSH_LEASE}#{lease_id}#{JOB}"


def ssh_lease_job(workspace_id: str, lease_id: str, job_id: str) -> Key:
    """A run or forward started under a lease, so that ending the lease finds it."""
    return workspace_pk(workspace_id), f"{ssh_lease_jobs(lease_id)}{job_id}"


def credential(digest: str) -> Key:
    return f"CRED#{digest}", "CRED"


def rate_counter(name: str, window: int) -> Key:
    """One counter of attempts (`name` says of what, by whom) in one fixed window."""
    return f"RATE#{name}", f"W#{window}"


def installation(workspace_id: str, installation_id: str) -> Key:
    return workspace_pk(workspace_id), f"{INSTALLATION}{installation_id}"


def marketplace_entry(name: str) -> Key:
    return MARKET, f"{MARKET_ENTRY}{name}"


def registry_state(url: str) -> Key:
    return MARKET, f"{MARKET_REGISTRY}{url}"


def refresh_lease() -> Key:
    return MARKET, "REFRESH"


def oauth_state(digest: str) -> Key:
    return f"OAUTHSTATE#{digest}", "OAUTHSTATE"


def oauth_client(workspace_id: str, tool_id: str) -> Key:
    return workspace_pk(workspace_id), f"{OAUTH_CLIENT}{tool_id}"


def oauth_grant(workspace_id: str, user_id: str, tool_id: str) -> Key:
    """A user's grants sort together (user ids and tool ids hold no `#`)."""
    return workspace_pk(workspace_id), f"{OAUTH_GRANT}{user_id}#{tool_id}"


def grants_of(user_id: str) -> str:
    return f"{OAUTH_GRANT}{user_id}#"


def integration(workspace_id: str, instance_id: str) -> Key:
    return workspace_pk(workspace_id), f"{INTEGRATION}{instance_id}"
