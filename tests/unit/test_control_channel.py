"""The direct control channel without a stack: the request signature (app.contract.signing), the worker's
endpoint (workers.control_server) served by real uvicorn on loopback, the worker's settings for
it, and the API storing the URL a runtime advertises."""

import asyncio
import hashlib
import time

import httpx
import pytest
from pydantic import ValidationError

from app.contract.messages import ControlMessage, ControlReply, HeartbeatRequest, RegisterRequest
from app.contract.signing import (CONTROL_BODY_MAX_BYTES, CONTROL_SIGNATURE_HEADER, ControlRequestRejected,
    sign_control_request, verify_control_request)
from tests.conftest import bearer, signup
from workers.config import WorkerConfig
from workers.control_server import REPLAY_WINDOW_SECONDS, ControlServer, RecentRequests

KEY = hashlib.sha256(b"brt_the-runtime-token").hexdigest()


def _body(deadline: float, request_id: str = "ctl_1", action: str = "tools.list") -> bytes:
    return ControlMessage(request_id=request_id, workspace_id="ws_1", job_id="job_1", action=action,
                          deadline=deadline).model_dump_json().encode()


# --- signature ---------------------------------------------------------------------------------


def test_a_signed_request_verifies_to_its_message():
    now = time.time()
    body = _body(now + 10)
    message = verify_control_request(KEY, sign_control_request(KEY, body, now), body, now)
    assert message.request_id == "ctl_1" and message.action == "tools.list"


@pytest.mark.parametrize("signature, reason", [
    (None, "not signed"),
    ("", "not signed"),
    ("v1=abc", "malformed"),
    ("t=notanumber,v1=abc", "malformed"),
    ("t=²,v1=abc", "malformed"),
])
def test_unsigned_and_malformed_signatures_are_refused(signature, reason):
    now = time.time()
    with pytest.raises(ControlRequestRejected, match=reason):
        verify_control_request(KEY, signature, _body(now + 10), now)


def test_forged_signatures_are_refused():
    now = time.time()
    body = _body(now + 10)
    other_key = sign_control_request(hashlib.sha256(b"brt_another-token").hexdigest(), body, now)
    other_body = sign_control_request(KEY, _body(now + 10, action="sandbox.stop"), now)
    timestamp, _, mac = sign_control_request(KEY, body, now).partition(",")
    moved_time = f"t={int(now) + 1},{mac}"
    non_ascii = f"{timestamp},v1=ü{mac[3:]}"
    for signature in (other_key, other_body, moved_time, non_ascii):
        with pytest.raises(ControlRequestRejected, match="invalid"):
            verify_control_request(KEY, signature, body, now)


@pytest.mark.parametrize("skew", [-31, 31])
def test_a_signature_more_than_30_s_off_is_refused(skew):
    now = time.time()
    body = _body(now + 100)
    with pytest.raises(ControlRequestRejected, match="clock"):
        verify_control_request(KEY, sign_control_request(KEY, body, now + skew), body, now)
    assert verify_control_request(KEY, sign_control_request(KEY, body, now + skew / 31 * 29), body, now)


def test_a_message_past_its_deadline_is_refused():
    now = time.time()
    body = _body(now - 0.5)
    with pytest.raises(ControlRequestRejected, match="deadline"):
        verify_control_request(KEY, sign_control_request(KEY, body, now), body, now)


def test_a_signed_body_that_is_not_a_control_message_is_a_value_error():
    now = time.time()
    body = b'{"kind": "job"}'
    with pytest.raises(ValueError) as raised:
        verify_control_request(KEY, sign_control_request(KEY, body, now), body, now)
    assert not isinstance(raised.value, ControlRequestRejected)


# --- replay ------------------------------------------------------------------------------------


def test_a_request_id_is_accepted_once_until_it_could_not_verify_anyway():
    recent = RecentRequests()
    now = 1_000_000.0
    assert recent.first_time("ctl_1", deadline=now + 10, now=now)
    assert not recent.first_time("ctl_1", deadline=now + 10, now=now + 5)
    assert recent.first_time("ctl_2", deadline=now + 1000, now=now)
    # Forgotten after the deadline (ctl_1), or after the replay window at the latest (ctl_2).
    assert recent.first_time("ctl_1", deadline=now + 20, now=now + 11)
    assert len(recent) == 2
    later = now + REPLAY_WINDOW_SECONDS + 1
    assert recent.first_time("ctl_2", deadline=later + 10, now=later)
    assert len(recent) == 1


# --- the endpoint, served by uvicorn -----------------------------------------------------------


async def _answer(message: ControlMessage) -> ControlReply:
    if message.action == "sandbox.inspect":
        await asyncio.sleep(message.arguments.get("sleep", 0))
    return ControlReply(ok=True, result={"action": message.action, "job_id": message.job_id})


async def _exercise_endpoint() -> dict:
    server = ControlServer("127.0.0.1", 0)
    await server.start()
    seen: dict = {}
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            now = time.time()

            def signed(body: bytes, key: str = KEY) -> dict:
                return {CONTROL_SIGNATURE_HEADER: sign_control_request(key, body, time.time())}

            body = _body(now + 10, "ctl_a")
            seen["detached"] = (await client.post("/control", content=body, headers=signed(body))).status_code
            server.endpoint.attach(KEY, _answer)
            first = await client.post("/control", content=body, headers=signed(body))
            seen["first"] = (first.status_code, first.json())
            seen["replay"] = (await client.post("/control", content=body, headers=signed(body))).status_code
            other = _body(now + 10, "ctl_b")
            seen["unsigned"] = (await client.post("/control", content=other)).status_code
            forged = await client.post("/control", content=other, headers=signed(other, KEY[::-1]))
            seen["forged"] = (forged.status_code, forged.json())
            # A refused request did not use up its id: the genuine one still goes through.
            seen["after_forged"] = (await client.post("/control", content=other, headers=signed(other))).status_code
            # In process: over a socket the client may still be writing when the 413 closes it.
            async with httpx.AsyncClient(transport=httpx.ASGITransport(server.endpoint), base_url=server.url) as asgi:
                huge = b"x" * (CONTROL_BODY_MAX_BYTES + 1)
                seen["huge"] = (await asgi.post("/control", content=huge, headers=signed(huge))).status_code

                async def chunks():  # no Content-Length: the limit holds while reading
                    for _ in range(3):
                        yield b"x" * (CONTROL_BODY_MAX_BYTES // 2)

                chunked = await asgi.post("/control", content=chunks(), headers=signed(b""))
                seen["huge_chunked"] = chunked.status_code
            seen["get"] = (await client.get("/control")).status_code
            seen["elsewhere"] = (await client.post("/other", content=other, headers=signed(other))).status_code
            slow = ControlMessage(request_id="ctl_slow", workspace_id="ws_1", job_id="job_1",
                                  action="sandbox.inspect", arguments={"sleep": 5},
                                  deadline=time.time() + 0.3).model_dump_json().encode()
            seen["slow"] = (await client.post("/control", content=slow, headers=signed(slow))).status_code
    finally:
        await server.stop()
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            await client.post(f"{server.url}/control", content=b"{}")
        seen["after_stop"] = "answered"
    except httpx.ConnectError:
        seen["after_stop"] = "refused"
    return seen


def test_the_endpoint_answers_signed_requests_once_and_refuses_the_rest():
    seen = asyncio.run(_exercise_endpoint())
    assert seen["detached"] == 503
    assert seen["first"] == (200, {"ok": True, "result": {"action": "tools.list", "job_id": "job_1"},
                                   "error": "", "code": ""})
    assert seen["replay"] == 401
    assert seen["unsigned"] == 401
    assert seen["forged"][0] == 401 and seen["forged"][1]["error"] == "the signature is invalid"
    assert seen["after_forged"] == 200
    assert seen["huge"] == seen["huge_chunked"] == 413
    assert (seen["get"], seen["elsewhere"]) == (405, 404)
    assert seen["slow"] == 504
    assert seen["after_stop"] == "refused"


# --- worker settings ---------------------------------------------------------------------------


def test_worker_control_settings(monkeypatch):
    config = WorkerConfig(api_url="http://api", control_listen="127.0.0.1:0")
    assert config.control_listen == "127.0.0.1:0" and config.control_url is None
    monkeypatch.setenv("BERTH_WORKER_CONTROL_LISTEN", "[::]:7601")
    monkeypatch.setenv("BERTH_WORKER_CONTROL_URL", "http://10.0.3.7:7601")
    assert WorkerConfig(api_url="http://api").control_url == "http://10.0.3.7:7601"
    monkeypatch.delenv("BERTH_WORKER_CONTROL_LISTEN")
    monkeypatch.delenv("BERTH_WORKER_CONTROL_URL")
    for bad in ({"control_listen": "127.0.0.1"}, {"control_listen": "127.0.0.1:70000"},
                {"control_listen": "host name:1"},
                {"control_listen": "0.0.0.0:7601"},  # a wildcard address needs a URL to advertise
                {"control_url": "http://10.0.3.7:7601"},  # a URL with nothing listening
                {"control_host_from_ec2_metadata": True},  # the same
                {"control_listen": "0.0.0.0:7601", "control_url": "http://10.0.3.7:7601",
                 "control_host_from_ec2_metadata": True},  # two answers to one question
                {"control_listen": "127.0.0.1:0", "control_url": "ftp://10.0.3.7"}):
        with pytest.raises(ValidationError):
            WorkerConfig(api_url="http://api", **bad)


@pytest.fixture
def instance_metadata(monkeypatch):
    """A loopback stand-in for the EC2 instance metadata service, IMDSv2 only: the address is
    given only with a session token obtained by PUT."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    answers = {"local-ipv4": "10.0.3.7"}

    class Metadata(BaseHTTPRequestHandler):
        def do_PUT(self):
            ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
            self._answer(200 if self.path == "/latest/api/token" and ttl else 400, "session-token")

        def do_GET(self):
            if self.headers.get("X-aws-ec2-metadata-token") != "session-token":
                return self._answer(401, "")
            self._answer(200, answers["local-ipv4"]) if self.path == "/latest/meta-data/local-ipv4" \
                else self._answer(404, "")

        def _answer(self, status, text):
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Metadata)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    yield answers
    server.shutdown()
    server.server_close()


def test_a_host_networked_worker_advertises_the_instance_address(instance_metadata):
    from workers import ec2_metadata

    config = WorkerConfig(api_url="http://api", control_listen="0.0.0.0:0", control_host_from_ec2_metadata=True)
    address = ec2_metadata.private_ipv4()
    assert address == "10.0.3.7"
    server = ControlServer("127.0.0.1", 0, config.control_url, advertised_host=address)
    try:
        assert server.url == f"http://10.0.3.7:{server.address.rsplit(':', 1)[1]}"
    finally:
        asyncio.run(server.stop())
    instance_metadata["local-ipv4"] = "<html>not an address</html>"
    with pytest.raises(ec2_metadata.MetadataUnavailable):
        ec2_metadata.private_ipv4()


def test_no_metadata_service_is_a_clear_error(monkeypatch):
    from app.local.stack import free_port
    from workers import ec2_metadata

    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ec2_metadata.MetadataUnavailable, match="no private IPv4 address"):
        ec2_metadata.private_ipv4(timeout=1)


@pytest.mark.parametrize("url", ["ftp://host:1", "http://", "http://user:pw@host:1", "http://host:1/?q=1",
                                 "http://host:99999", "http://ho st:1", "http://host:1/" + "x" * 300])
def test_an_advertised_control_url_must_be_a_plain_http_url(url):
    with pytest.raises(ValidationError):
        HeartbeatRequest(control_url=url)
    with pytest.raises(ValidationError):
        RegisterRequest(join_token="bjt_12345678", control_url=url)


# --- the API stores what the runtime advertises -------------------------------------------------


def test_register_and_heartbeat_store_the_control_url(client, store):
    token = signup(client)["token"]
    join = client.post("/v1/cloud/join-tokens", headers=bearer(token), json={"uses": 1}).json()["token"]
    refused = client.post("/v1/cloud/runtimes/register", json={"join_token": join, "control_url": "gopher://x:1"})
    assert refused.status_code == 422
    registered = client.post("/v1/cloud/runtimes/register",
                             json={"join_token": join, "control_url": "http://127.0.0.1:4100"})
    assert registered.status_code == 201, registered.text
    runtime = registered.json()

    def stored() -> str | None:
        return store.runtimes.get(runtime["workspace_id"], runtime["runtime_id"]).control_url

    assert stored() == "http://127.0.0.1:4100"
    worker = bearer(runtime["runtime_token"])
    assert client.post("/v1/cloud/runtimes/heartbeat", headers=worker,
                       json={"control_url": "http://127.0.0.1:4200"}).status_code == 200
    assert stored() == "http://127.0.0.1:4200"  # restarted on another port
    assert client.post("/v1/cloud/runtimes/heartbeat", headers=worker, json={}).status_code == 200
    assert stored() is None  # restarted without the endpoint
    listed = client.get("/v1/cloud/runtimes", headers=bearer(token)).json()["runtimes"]
    assert "control_url" not in listed[0]
