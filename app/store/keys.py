"""The key layout of the one table, written down once; only `app.store` uses it.

Everything a workspace owns lives in partition `WS#<workspace id>`; a job's events in a partition
of their own, `WS#<workspace id>#JOB#<job id>`. The only partitions outside a workspace are the
lookups that must work before the workspace is known: `CRED#<digest>` and `EMAIL#<address>`,
and the rate counters of the routes that come before any workspace (`RATE#<name>`).
The sparse `open` index (`open_pk`/`open_sk`) holds unfinished jobs and all runtimes, for the
system's own work (sweeper, dispatch on register), never a tenant's query.
"""

Key = tuple[str, str]

WORKSPACE = "WORKSPACE"
SSH_LEASE = "SSHLEASE"
USER, SESSION, API_KEY, JOB, EVENT, REPLY, RUNTIME, JOIN_TOKEN, AUDIT, USAGE = (
    "USER#", "SESSION#", "KEY#", "JOB#", "EV#", "REPLY#", "RT#", "JOIN#", "AUDIT#", "USAGE#")

# The open index's partitions, and its key attributes (set on an item to list it there).
OPEN_PK, OPEN_SK = "open_pk", "open_sk"
JOBS_WAITING = "JOBS#waiting"  # unfinished, no runtime assigned
JOBS_ASSIGNED = "JOBS#assigned"  # unfinished, on a runtime
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


def job_open_sk(created_epoch: float, workspace_id: str, job_id: str) -> str:
    """Oldest first within an open partition."""
    return f"{int(created_epoch * 1000):015d}#{workspace_id}#{job_id}"


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
