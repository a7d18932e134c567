"""The links in berth's mail open pages that work: opening one changes nothing (mail scanners
follow links), submitting its form does the change. Plain HTML with a strict CSP."""

import json
from urllib.parse import urlsplit

import pytest

from tests.conftest import bearer, signup


def _mailed_link(settings, subject: str) -> str:
    for path in sorted(settings.outbox_dir.glob("*.json"), reverse=True):
        mail = json.loads(path.read_text())
        if mail["subject"] == subject:
            return next(word for word in mail["body"].split() if "?token=" in word)
    raise AssertionError(f"no mail {subject!r}")


def _local(link: str) -> str:
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


def _verified(client, token: str) -> bool:
    return client.get("/v1/auth/me", headers=bearer(token)).json()["user"]["email_verified"]


def test_the_verification_link_shows_a_form_and_only_the_form_verifies(client, aws_resources):
    session = signup(client)["token"]
    link = _local(_mailed_link(aws_resources, "Confirm your berth email"))
    assert link.startswith("/verify?token=bvt_")

    page = client.get(link)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "<script" not in page.text and '<form method=post action=/verify>' in page.text
    assert not _verified(client, session)  # opening the link changed nothing

    token = link.split("token=", 1)[1]
    confirmed = client.post("/verify", data={"token": token})
    assert confirmed.status_code == 200 and "Your address is confirmed" in confirmed.text
    assert _verified(client, session)
    again = client.post("/verify", data={"token": token})
    assert again.status_code == 400 and "invalid or expired verification token" in again.text


def test_the_reset_link_shows_a_form_that_sets_the_password(client, aws_resources):
    signup(client)
    client.post("/v1/auth/forgot", json={"email": "ada@example.com"})
    link = _local(_mailed_link(aws_resources, "Reset your berth password"))
    page = client.get(link)
    assert page.status_code == 200 and 'type=password' in page.text and "<script" not in page.text
    token = link.split("token=", 1)[1]

    differ = client.post("/reset", data={"token": token, "password": "new-secret", "again": "other-secret"})
    assert differ.status_code == 400 and "differ" in differ.text
    short = client.post("/reset", data={"token": token, "password": "abc", "again": "abc"})
    assert short.status_code == 400 and "at least 6 characters" in short.text
    changed = client.post("/reset", data={"token": token, "password": "new-secret", "again": "new-secret"})
    assert changed.status_code == 200 and "Your password is changed" in changed.text
    login = client.post("/v1/auth/login", json={"email": "ada@example.com", "password": "new-secret"})
    assert login.status_code == 200
    reused = client.post("/reset", data={"token": token, "password": "third-one", "again": "third-one"})
    assert reused.status_code == 400 and "invalid or expired reset token" in reused.text


@pytest.mark.parametrize("path", ["/verify", "/reset"])
def test_a_link_without_a_token_says_so_and_a_token_is_never_markup(client, path):
    assert client.get(path).status_code == 400
    page = client.get(path, params={"token": '"><script>alert(1)</script>'})
    assert "<script>" not in page.text and "&quot;&gt;&lt;script&gt;" in page.text
