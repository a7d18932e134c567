"""Routes for infra SSH: `/api/infra/ssh/*`. Every request says for whom the key acts (the
`X-User-Id` header, `acting_for`), as the API requires of a key that changes anything."""

from typing import Any, Literal, TypedDict

from berth_cli.client.http import Http, segment

# The API bounds one wait for a run's result (or a forward's opening) to this many seconds.
MAX_WAIT_SECONDS = 25.0
Outcome = Literal["ok", "validation_failed", "approval_required", "denied", "failed"]


class Host(TypedDict):
    name: str
    address: str
    port: int
    user: str
    labels: list[str]
    host_key_fingerprint: str
    host_key_algorithm: str | None
    client_key_source: str
    runtime_labels: dict[str, str]
    actions: list[str]
    forwards: list[str]


class Lease(TypedDict):
    lease_id: str
    state: Literal["pending", "active", "ended", "expired", "lapsed"]
    reason: str
    ttl_seconds: int
    requested_by: str
    requested_via: str
    requested_for: str
    requested_at: str
    request_expires_at: str
    approved_by: str | None
    approved_at: str | None
    expires_at: str | None
    seconds_left: float
    ended_at: str | None
    ended_by: str | None
    end_reason: str | None


class LeaseAnswer(TypedDict):
    active: bool
    lease: Lease | None
    stopped: list[str]


class Run(TypedDict, total=False):
    run_id: str
    status: str
    outcome: Outcome | None
    host: str
    action: str
    parameters: dict[str, Any]
    requested: dict[str, str]
    lease_id: str
    created_at: str
    expires_at: str
    finished_at: str | None
    ended: str | None
    exit_status: int | None
    exit_signal: str | None
    command: str | None
    stdout: str | None
    stderr: str | None
    duration_ms: float | None
    failure: str | None
    error: str | None


class Forward(TypedDict):
    forward_id: str
    status: str
    state: Literal["opening", "open", "closed", "failed"]
    outcome: Outcome | None
    host: str
    forward: str
    target: str
    lease_id: str
    created_at: str
    expires_at: str
    opened_at: str | None
    finished_at: str | None
    proxy_url: str
    failure: str | None
    error: str | None


class SshApi:
    def __init__(self, http: Http):
        self._http = http
        self.acting_for: str | None = None  # X-User-Id: the person this key acts for

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"X-User-Id": self.acting_for} if self.acting_for else None
        return self._http.request(method, f"/api/infra/ssh{path}", headers=headers, **kwargs)

    def hosts(self) -> list[Host]:
        return self._request("GET", "/hosts")["hosts"]

    def actions(self) -> list[dict[str, Any]]:
        return self._request("GET", "/actions")["actions"]

    def action(self, name: str) -> dict[str, Any]:
        return self._request("GET", f"/actions/{segment(name)}")

    def lease(self) -> LeaseAnswer:
        return self._request("GET", "/admin-session")

    def request_lease(self, reason: str, ttl_seconds: int) -> LeaseAnswer:
        return self._request("POST", "/admin-session", json={"reason": reason, "ttl_seconds": ttl_seconds})

    def approve_lease(self, lease_id: str) -> LeaseAnswer:
        """With a session's credential only: the API refuses an API key."""
        return self._request("POST", "/admin-session/approve", json={"lease_id": lease_id})

    def revoke_lease(self) -> LeaseAnswer:
        return self._request("DELETE", "/admin-session")

    def run(self, action: str, host: str, parameters: dict[str, Any], wait_seconds: float) -> Run:
        return self._request("POST", f"/actions/{segment(action)}/run", timeout=wait_seconds + 30,
                             json={"host": host, "parameters": parameters, "wait_seconds": wait_seconds})

    def runs(self, limit: int = 50) -> list[Run]:
        return self._request("GET", "/runs", params={"limit": limit})["runs"]

    def get_run(self, run_id: str) -> Run:
        return self._request("GET", f"/runs/{segment(run_id)}")

    def open_forward(self, forward: str, host: str, ttl_seconds: int | None, wait_seconds: float) -> Forward:
        return self._request("POST", "/forwards", timeout=wait_seconds + 30, json={
            "forward": forward, "host": host, "ttl_seconds": ttl_seconds, "wait_seconds": wait_seconds})

    def forwards(self, limit: int = 50) -> list[Forward]:
        return self._request("GET", "/forwards", params={"limit": limit})["forwards"]

    def close_forward(self, forward_id: str) -> Forward:
        return self._request("DELETE", f"/forwards/{segment(forward_id)}")
