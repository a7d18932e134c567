"""Routes for models: `/v1/model-sources/*`, `/v1/model-profiles*`, `/v1/model-installations*`."""

from typing import Any, Literal, TypedDict

from berth_cli.client.http import Http, segment

InstallationStatus = Literal["queued", "checking", "downloading", "verifying", "attached", "ready", "failed"]
INSTALLATION_STEPS: tuple[InstallationStatus, ...] = ("queued", "checking", "downloading", "verifying", "attached",
                                                      "ready")


class SearchResult(TypedDict):
    live: bool
    items: list[dict[str, Any]]
    reason: str | None


class EngineVerdict(TypedDict):
    servable: bool | None
    reason: str


class Profile(TypedDict):
    """A profile preview (resolve) or a stored profile (which adds `id`, `metadata`, `created_at`)."""

    source_type: str
    source_uri: str
    provider: str
    external_id: str
    display_name: str
    task: str | None
    library: str | None
    license: str | None
    tags: list[str]
    revision: str | None
    commit: str | None
    architecture: str | None
    parameter_count: int | None
    weight_bytes: int | None
    gated: bool
    private: bool
    access: str
    status: str
    engines: dict[str, EngineVerdict]


class StoredProfile(Profile):
    id: str
    created_at: str


class ProfileCreated(TypedDict):
    profile: StoredProfile


class ProfileList(TypedDict):
    profiles: list[StoredProfile]


class Installation(TypedDict):
    id: str
    model_profile_id: str
    runtime_id: str
    install_mode: str
    serving_engine: str
    status: InstallationStatus
    progress: int
    model_name: str
    job_id: str | None
    events_url: str | None
    source: str
    commit: str | None
    bytes_done: int | None
    bytes_total: int | None
    failure: str | None
    error: str | None
    created_at: str


class Attached(TypedDict):
    installation_id: str
    profile_id: str
    job_id: str | None
    events_url: str | None
    installation: Installation


class InstallationList(TypedDict):
    installations: list[Installation]


class InstallationRemoved(TypedDict):
    ok: bool
    installation_id: str
    job_status: str | None
    evicted: bool
    freed_bytes: int
    reason: str


class ModelsApi:
    def __init__(self, http: Http):
        self._http = http

    def search(self, query: str | None = None, *, task: str | None = None, limit: int | None = None) -> SearchResult:
        return self._http.request("GET", "/v1/model-sources/huggingface/search",
                                  params={"q": query, "task": task, "limit": limit})

    def resolve(self, source: dict[str, Any]) -> Profile:
        """`source` in the route's camelCase (`sourceType`, `externalId`, `branch`, ...)."""
        return self._http.request("POST", "/v1/model-sources/resolve", json=source)

    def create_profile(self, profile: dict[str, Any]) -> ProfileCreated:
        return self._http.request("POST", "/v1/model-profiles", json=profile)

    def profiles(self) -> ProfileList:
        return self._http.request("GET", "/v1/model-profiles")

    def profile(self, profile_id: str) -> ProfileCreated:
        return self._http.request("GET", f"/v1/model-profiles/{segment(profile_id)}")

    def attach(self, profile_id: str, body: dict[str, Any]) -> Attached:
        return self._http.request("POST", f"/v1/model-profiles/{segment(profile_id)}/attach", json=body)

    def installations(self) -> InstallationList:
        return self._http.request("GET", "/v1/model-installations")

    def installation(self, installation_id: str) -> Installation:
        return self._http.request("GET", f"/v1/model-installations/{segment(installation_id)}")["installation"]

    def delete(self, installation_id: str) -> InstallationRemoved:
        return self._http.request("DELETE", f"/v1/model-installations/{segment(installation_id)}")
