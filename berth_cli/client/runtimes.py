"""Routes for runtimes and join tokens: `/v1/cloud/runtimes`, `/v1/cloud/join-tokens*`."""

from typing import Any, TypedDict

from berth_cli.client.http import Http, segment


class Runtime(TypedDict):
    runtime_id: str
    name: str
    shared: bool
    capabilities: list[str]
    runtimes: dict[str, bool]
    labels: dict[str, str]
    gpus: list[dict[str, Any]]
    max_concurrent_jobs: int
    active_jobs: int
    free_disk_bytes: int
    software_version: str
    queue_mode: str
    registered_at: str
    last_heartbeat_at: str
    status: str


class RuntimeList(TypedDict):
    runtimes: list[Runtime]


class RuntimeDeleted(TypedDict):
    ok: bool
    runtime_id: str
    jobs_requeued: int
    jobs_ended: int


class JoinToken(TypedDict):
    token_id: str
    name: str
    prefix: str
    uses: int
    uses_left: int
    shared: bool
    labels: dict[str, str]
    created_at: str
    expires_at: str


class JoinTokenCreated(TypedDict):
    token: str  # the secret, shown only in this answer
    join_token: JoinToken


class JoinTokenPage(TypedDict):
    join_tokens: list[JoinToken]
    next_cursor: str | None


class JoinTokenDeleted(TypedDict):
    ok: bool
    token_id: str


class RuntimesApi:
    def __init__(self, http: Http):
        self._http = http

    def runtimes(self) -> RuntimeList:
        """The workspace's runtimes and the shared fleet."""
        return self._http.request("GET", "/v1/cloud/runtimes")

    def delete(self, runtime_id: str) -> RuntimeDeleted:
        return self._http.request("DELETE", f"/v1/cloud/runtimes/{segment(runtime_id)}")

    def create_join_token(self, *, name: str | None = None, uses: int | None = None, ttl_seconds: int | None = None,
                          shared: bool = False, labels: dict[str, str] | None = None) -> JoinTokenCreated:
        body = {"name": name, "uses": uses, "ttl_seconds": ttl_seconds, "shared": shared or None, "labels": labels}
        return self._http.request("POST", "/v1/cloud/join-tokens",
                                  json={key: value for key, value in body.items() if value is not None})

    def join_tokens(self, *, limit: int | None = None, cursor: str | None = None) -> JoinTokenPage:
        return self._http.request("GET", "/v1/cloud/join-tokens", params={"limit": limit, "cursor": cursor})

    def delete_join_token(self, token_id: str) -> JoinTokenDeleted:
        return self._http.request("DELETE", f"/v1/cloud/join-tokens/{segment(token_id)}")
