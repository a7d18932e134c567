"""Signatures between the API and a runtime: proxy-auth tokens and direct control requests."""

import base64
import hashlib
import hmac
import json
from typing import Any

from app.contract.messages import ControlMessage
from app.contract.policy import SandboxRejected

# --- proxy-auth tokens -------------------------------------------------------------------------
# Signed by the API with the SHA-256 digest of the runtime's token (the API stores only that
# digest; the runtime derives it from its token), so the runtime can check that a proxied request
# was authorised by the API for this sandbox, without a shared secret of its own.


def sign_proxy_token(key: str, claims: dict[str, Any]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims, sort_keys=True).encode()).decode().rstrip("=")
    signature = hmac.new(key.encode(), body.encode(), hashlib.sha256).hexdigest()
    return f"{body}.{signature}"


def verify_proxy_token(key: str, token: str, now: float) -> dict[str, Any]:
    """The token's claims, or SandboxRejected if it is forged, malformed or expired."""
    body, _, signature = token.partition(".")
    expected = hmac.new(key.encode(), body.encode(), hashlib.sha256).hexdigest()
    if not signature or not hmac.compare_digest(signature, expected):
        raise SandboxRejected("proxy token signature is invalid")
    try:
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except ValueError:
        raise SandboxRejected("proxy token is malformed") from None
    if not isinstance(claims, dict) or claims.get("exp", 0) <= now:
        raise SandboxRejected("proxy token has expired")
    return claims


# --- direct control requests -------------------------------------------------------------------
# The API may POST a ControlMessage straight to a worker's control endpoint instead of queueing
# it. The request is signed like a proxy token, with the runtime's signing key (the signing half of
# app.contract.sealing.RuntimeKeys; the runtime token's digest for a runtime registered without a
# runtime key), over a timestamp and the exact body: `X-Berth-Signature: t=<epoch seconds>,v1=<hex HMAC-SHA256 of
# "<t>.<body>">`. The worker also refuses a request id it has already seen (see
# workers.control_server), so a captured request cannot be played again.

CONTROL_SIGNATURE_HEADER = "X-Berth-Signature"
CONTROL_SIGNATURE_TOLERANCE_SECONDS = 30
# The API refuses request bodies over settings.max_body_bytes (1 MiB by default); a control
# message carries at most one such body, base64-encoded for a proxied request (4/3), plus its
# envelope, so twice that bounds every message the API can send.
CONTROL_BODY_MAX_BYTES = 2 * 1_048_576


class ControlRequestRejected(Exception):
    """A direct control request is unsigned, forged, stale or past its deadline; the message says which."""


def _control_mac(key: str, timestamp: int, body: bytes) -> str:
    return hmac.new(key.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign_control_request(key: str, body: bytes, now: float) -> str:
    """The signature header value for `body`, sent at `now`."""
    timestamp = int(now)
    return f"t={timestamp},v1={_control_mac(key, timestamp, body)}"


def verify_control_request(key: str, signature: str | None, body: bytes, now: float) -> ControlMessage:
    """The signed control message; ControlRequestRejected when the signature is missing or forged,
    its timestamp is more than CONTROL_SIGNATURE_TOLERANCE_SECONDS off, or the message is past its
    deadline; ValueError when a correctly signed body is not a control message."""
    if not signature:
        raise ControlRequestRejected("the request is not signed")
    fields = dict(part.strip().partition("=")[::2] for part in signature.split(","))
    timestamp, mac = fields.get("t", ""), fields.get("v1", "")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12) or not mac:
        raise ControlRequestRejected("the signature is malformed")
    if not hmac.compare_digest(mac.encode(), _control_mac(key, int(timestamp), body).encode()):
        raise ControlRequestRejected("the signature is invalid")
    if abs(now - int(timestamp)) > CONTROL_SIGNATURE_TOLERANCE_SECONDS:
        raise ControlRequestRejected("the signature's timestamp is too far from this runtime's clock")
    message = ControlMessage.model_validate_json(body)
    if message.deadline <= now:
        raise ControlRequestRejected("the request is past its deadline")
    return message
