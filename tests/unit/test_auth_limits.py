"""Login, signup and forgot, rate-limited per address and per client (counters in the table on
moto); forgot taking as long whether or not the address has an account; the mail outbox, which
holds reset links, readable by its owner alone."""

import stat
import statistics
import time

import pytest

from app import composition
from app.files import write_private
from tests.conftest import signup


@pytest.fixture
def limits(aws_resources):
    settings = composition.services().settings
    settings.auth_rate_per_address = 3
    settings.auth_rate_per_client = 5
    settings.auth_rate_window_seconds = 600
    settings.forgot_min_seconds = 0
    return settings


def _login(client, email="ada@example.com", password="wrong-horse"):
    return client.post("/v1/auth/login", json={"email": email, "password": password})


def test_logins_past_the_limit_for_an_address_get_429_with_retry_after(client, limits):
    signup(client)
    assert [_login(client).status_code for _ in range(3)] == [401, 401, 401]
    refused = _login(client, password="correct-horse")  # even the right password: the address is locked a while
    assert refused.status_code == 429
    body = refused.json()
    assert body["success"] is False and body["status"] == 429 and body["request_id"]
    assert body["error"].startswith("too many login attempts for this address: at most 3 every 600 s")
    assert 1 <= int(refused.headers["retry-after"]) <= 601
    assert _login(client, email="bob@example.com").status_code == 401  # another address is counted apart


def test_the_address_is_counted_without_case_and_the_window_ends(client, limits):
    for email in ("ada@example.com", "ADA@example.com", "Ada@Example.com"):
        assert _login(client, email=email).status_code == 401
    assert _login(client).status_code == 429
    clock = composition.services().clock
    real_now = clock.now
    clock.now = lambda: real_now() + 600  # the next window
    try:
        assert _login(client).status_code == 401
    finally:
        clock.now = real_now


def test_one_client_is_limited_across_addresses(client, limits):
    codes = [_login(client, email=f"user{n}@example.com").status_code for n in range(6)]
    assert codes == [401] * 5 + [429]
    assert "for your network address" in _login(client, email="fresh@example.com").json()["error"]


def test_signup_and_forgot_are_limited_too_and_a_refusal_counts_nothing(client, limits):
    limits.auth_rate_per_client = 100
    for _ in range(3):
        client.post("/v1/auth/forgot", json={"email": "ada@example.com"})
    assert client.post("/v1/auth/forgot", json={"email": "ada@example.com"}).status_code == 429
    codes = [client.post("/v1/auth/signup", json={"name": "A", "email": "x@example.com", "password": "pass-word"})
             .status_code for _ in range(4)]
    assert codes == [201, 409, 409, 429]
    # The refused attempts took nothing from the login counter of the same address.
    assert _login(client, email="x@example.com").status_code == 401


class SlowMailer:
    """Sending mail takes time (SES answers in tens of milliseconds): the cost that a forgot for a
    real account pays and one for an unknown address does not."""

    def __init__(self, mailer, seconds: float):
        self.mailer = mailer
        self.seconds = seconds

    def send(self, to, subject, body):
        time.sleep(self.seconds)
        self.mailer.send(to, subject, body)


def test_forgot_takes_as_long_whether_or_not_the_account_exists(client, limits):
    limits.auth_rate_per_address = limits.auth_rate_per_client = 1000
    limits.forgot_min_seconds = 0.25
    signup(client)
    accounts = composition.services().accounts
    accounts.mailer = SlowMailer(accounts.mailer, 0.08)

    def timed(email: str) -> float:
        started = time.perf_counter()
        assert client.post("/v1/auth/forgot", json={"email": email}).status_code == 200
        return time.perf_counter() - started

    known, unknown = [], []
    for _ in range(7):  # interleaved, so both see the same load
        known.append(timed("ada@example.com"))
        unknown.append(timed("nobody@example.com"))
    assert abs(statistics.median(known) - statistics.median(unknown)) < 0.04, (known, unknown)


def test_the_outbox_is_private(client, aws_resources):
    outbox = aws_resources.outbox_dir
    outbox.mkdir(parents=True, mode=0o755)
    outbox.chmod(0o755)  # made wider by someone else: narrowed on the next write
    signup(client)
    (message,) = outbox.glob("*.json")
    assert stat.S_IMODE(message.stat().st_mode) == 0o600
    assert stat.S_IMODE(outbox.stat().st_mode) == 0o700
    assert not list(outbox.glob(".*"))  # no temporary file left behind


def test_a_private_file_is_never_readable_by_others_even_when_it_replaces_one_that_was(tmp_path):
    target = tmp_path / "state" / "snapshot.jsonl"
    target.parent.mkdir(mode=0o755)
    target.write_text("old")
    target.chmod(0o644)
    write_private(target, b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
