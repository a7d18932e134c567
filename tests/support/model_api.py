"""Driving the model routes of a running berth over HTTP, as a user would: make a profile, attach it,
wait for its installation. Shared by the end-to-end tests and the benches."""

import time
from typing import Any, Protocol

import httpx


class Caller(Protocol):
    """An account's HTTP calls (tests.e2e.conftest.Account)."""

    def get(self, path: str, **kwargs: Any) -> httpx.Response: ...

    def post(self, path: str, **kwargs: Any) -> httpx.Response: ...


def create_profile(account: Caller, repo: str, **fields: Any) -> dict:
    response = account.post("/v1/model-profiles", json={"external_id": repo, **fields})
    assert response.status_code == 201, response.text
    return response.json()["profile"]


def attach(account: Caller, profile_id: str, runtime_id: str, **body: Any) -> dict:
    """The 202 answer of attaching a profile (installation_id, profile_id, job_id, events_url)."""
    response = account.post(f"/v1/model-profiles/{profile_id}/attach", json={"runtimeId": runtime_id, **body})
    assert response.status_code == 202, response.text
    return response.json()


def installation(account: Caller, installation_id: str) -> dict:
    response = account.get(f"/v1/model-installations/{installation_id}")
    assert response.status_code == 200, response.text
    return response.json()["installation"]


def wait_for_installation(account: Caller, installation_id: str, statuses: str | set[str], timeout: float = 90,
                          poll: float = 0.1) -> tuple[dict, list[dict]]:
    """The installation once its status is one of `statuses` (AssertionError if it ends elsewhere or
    takes longer), and every distinct state it was seen in on the way."""
    wanted = {statuses} if isinstance(statuses, str) else set(statuses)
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = installation(account, installation_id)
        if not seen or (seen[-1]["status"], seen[-1]["progress"]) != (current["status"], current["progress"]):
            seen.append(current)
        if current["status"] in wanted:
            return current, seen
        if current["status"] == "failed":
            raise AssertionError(f"installation {installation_id} failed: {current['failure']}: {current['error']}")
        time.sleep(poll)
    raise AssertionError(f"installation {installation_id} stayed {seen[-1]['status']}, expected {wanted}")
