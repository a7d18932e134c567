"""The infra SSH approval lease: an agent's admin key may ask, only a signed-in person approves;
time-boxed from approval; revocable; one at a time; every change and refusal audited with its kind."""

import time
from dataclasses import replace

from app.clock import Clock
from app.composition import Services
from app.services.ssh_caller import SshCaller
from tests.conftest import bearer, signup

LEASE = "/api/infra/ssh/admin-session"


def mint(client, session: str, tier: str = "admin") -> str:
    response = client.post("/api/auth/keys/generate", headers=bearer(session), json={"name": tier, "tier": tier})
    assert response.status_code == 201, response.text
    return response.json()["key"]


def agent(key: str, user: str | None = "ada") -> dict:
    return {"X-API-Key": key, **({"X-User-Id": user} if user else {})}


def audit(client, session: str, action: str = "infra_ssh.lease") -> list[dict]:
    events = client.get("/v1/cloud/audit", headers=bearer(session), params={"limit": 200}).json()["events"]
    return [event for event in events if event["action"] == action]


def test_a_signed_in_person_begins_a_lease_that_is_active_at_once(client):
    session = signup(client)["token"]

    begun = client.post(LEASE, headers=bearer(session), json={"reason": "restart vllm on gpu-1", "ttl_seconds": 600})
    seen = client.get(LEASE, headers=bearer(session)).json()

    assert begun.status_code == 201, begun.text
    lease = begun.json()["lease"]
    assert begun.json()["active"] is True and lease["state"] == "active" and lease["requested_via"] == "session"
    assert lease["approved_by"] == lease["requested_for"] and 590 < lease["seconds_left"] <= 600
    assert seen["active"] is True and seen["lease"]["lease_id"] == lease["lease_id"]
    [record] = audit(client, session)
    assert record["outcome"] == "ok" and record["detail"]["event"] == "began"
    assert record["detail"]["reason"] == "restart vllm on gpu-1"


def test_an_agents_key_requests_and_only_a_person_signed_in_approves(client):
    session = signup(client)["token"]
    key = mint(client, session)

    requested = client.post(LEASE, headers=agent(key), json={"reason": "read the vllm log", "ttl_seconds": 300})
    lease_id = requested.json()["lease"]["lease_id"]
    self_approval = client.post(f"{LEASE}/approve", headers=agent(key), json={"lease_id": lease_id})
    approved = client.post(f"{LEASE}/approve", headers=bearer(session), json={"lease_id": lease_id})

    assert requested.status_code == 201 and requested.json()["active"] is False
    assert requested.json()["lease"]["state"] == "pending" and requested.json()["lease"]["requested_for"] == "ada"
    assert self_approval.status_code == 403 and self_approval.json()["kind"] == "denied"
    assert "never with an API key" in self_approval.json()["error"]
    assert approved.status_code == 200 and approved.json()["active"] is True
    assert 290 < approved.json()["lease"]["seconds_left"] <= 300  # the time box starts at approval
    outcomes = [(r["outcome"], r["detail"].get("event"), r["detail"]["via"]) for r in reversed(audit(client, session))]
    assert outcomes == [("ok", "requested", "api_key"), ("denied", None, "api_key"), ("ok", "approved", "session")]


def test_approving_names_the_request_seen(client):
    session = signup(client)["token"]
    key = mint(client, session)
    client.post(LEASE, headers=agent(key), json={"reason": "one", "ttl_seconds": 300})

    other = client.post(f"{LEASE}/approve", headers=bearer(session), json={"lease_id": "lease_something_else"})

    assert other.status_code == 404 and other.json()["kind"] == "denied"
    assert client.get(LEASE, headers=bearer(session)).json()["lease"]["state"] == "pending"


def test_a_key_without_x_user_id_or_below_admin_is_denied_and_audited(client):
    session = signup(client)["token"]
    admin, standard = mint(client, session), mint(client, session, "standard")

    anonymous = client.post(LEASE, headers=agent(admin, user=None), json={"reason": "r", "ttl_seconds": 60})
    malformed = client.post(LEASE, headers=agent(admin, user="ada; rm -rf"), json={"reason": "r", "ttl_seconds": 60})
    lower = client.post(LEASE, headers=agent(standard), json={"reason": "r", "ttl_seconds": 60})
    peeking = client.get(LEASE, headers=agent(standard))

    assert anonymous.status_code == 403 and anonymous.json()["kind"] == "denied"
    assert "X-User-Id" in anonymous.json()["error"]
    assert malformed.status_code == 403 and "X-User-Id must be" in malformed.json()["error"]
    assert lower.status_code == 403 and lower.json()["kind"] == "denied" and "admin-tier" in lower.json()["error"]
    assert peeking.status_code == 403 and peeking.json()["kind"] == "denied"
    records = audit(client, session)
    assert [r["outcome"] for r in records] == ["denied"] * 3
    assert {r["detail"]["user_id"] for r in records} == {"", "ada; rm -rf", "ada"}


def test_a_lease_longer_than_allowed_is_a_validation_failure(client):
    session = signup(client)["token"]

    refused = client.post(LEASE, headers=bearer(session), json={"reason": "r", "ttl_seconds": 7200})

    assert refused.status_code == 422 and refused.json()["kind"] == "validation_failed"
    assert "BERTH_SSH_LEASE_MAX_SECONDS" in refused.json()["error"]
    assert audit(client, session)[0]["outcome"] == "validation_failed"


def test_one_lease_at_a_time_and_revoking_ends_it(client):
    session = signup(client)["token"]
    key = mint(client, session)
    client.post(LEASE, headers=bearer(session), json={"reason": "first", "ttl_seconds": 600})

    second = client.post(LEASE, headers=agent(key), json={"reason": "second", "ttl_seconds": 600})
    revoked = client.delete(LEASE, headers=agent(key))
    again = client.delete(LEASE, headers=agent(key))
    after = client.post(LEASE, headers=agent(key), json={"reason": "third", "ttl_seconds": 600})

    assert second.status_code == 409 and second.json()["kind"] == "denied"
    assert "already active" in second.json()["error"]
    assert revoked.status_code == 200 and revoked.json()["active"] is False
    assert revoked.json()["lease"]["state"] == "ended" and revoked.json()["lease"]["end_reason"] == "revoked"
    assert revoked.json()["lease"]["ended_by"] == "ada"
    assert again.status_code == 200 and again.json()["lease"]["state"] == "ended"  # nothing more to end
    assert after.status_code == 201 and after.json()["lease"]["state"] == "pending"


def test_a_pending_request_can_be_declined(client):
    session = signup(client)["token"]
    key = mint(client, session)
    requested = client.post(LEASE, headers=agent(key), json={"reason": "r", "ttl_seconds": 60})
    lease_id = requested.json()["lease"]["lease_id"]

    declined = client.delete(LEASE, headers=bearer(session))
    late = client.post(f"{LEASE}/approve", headers=bearer(session), json={"lease_id": lease_id})

    assert declined.json()["lease"]["end_reason"] == "declined"
    assert late.status_code == 409 and "is ended, not waiting for approval" in late.json()["error"]


class MovableClock(Clock):
    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset


def test_a_request_nobody_approves_lapses_and_an_active_lease_expires(aws_resources):
    clock = MovableClock()
    services = Services(aws_resources, clock=clock)
    signed_in = services.accounts.signup("Ada", "ada@example.com", "correct-horse", None)
    person = SshCaller.of(services.authenticator.resolve(signed_in.token, kinds=("session",)), None)
    bot = SshCaller(replace(person.principal, kind="api_key"), "ada")
    leases = services.ssh_leases

    pending = leases.request(bot, "overnight", 600)
    clock.offset = aws_resources.ssh_lease_request_seconds + 1
    assert leases.current(person).state(clock.now()) == "lapsed"
    active = leases.request(person, "next morning", 600)  # a lapsed request is no obstacle
    assert active.lease_id != pending.lease_id and active.is_active(clock.now())
    clock.offset += 601
    assert leases.current(person).state(clock.now()) == "expired"
    assert leases.end(person) == (leases.current(person), [])  # nothing left to revoke
