"""Signatures between the API and a runtime: proxy-auth tokens and direct control requests."""

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.contract.messages import ControlMessage
from app.contract.policy import SandboxRejected

# --- proxy-auth tokens -------------------------------------------------------------------------
# Signed by the API with the SHA-256 digest of the runtime's token (the API stores only that
# digest; the runtime derives it from its token), so the runtime can check that a proxied request
# was authorised by the API for this sandbox, without a shared secret of its own. A token is
# bound to one sandbox and one HTTP method, lives at most PROXY_TOKEN_MAX_SECONDS, and is good
# for one request: the runtime refuses a nonce it has seen until the token expires.

PROXY_TOKEN_MAX_SECONDS = 600


class ProxyTokenClaims(BaseModel):
    """What a proxy token says. The API builds them with `proxy_token_claims`."""

    model_config = ConfigDict(extra="ignore")

    sandbox_id: str = Field(min_length=1)
    workspace_id: str = Field(min_length=1)
    runtime_id: str = Field(min_length=1)
    method: str = Field(pattern=r"^[A-Z]{3,7}$")
    nonce: str = Field(min_length=16, max_length=200)
    exp: float


def proxy_token_claims(sandbox_id: str, workspace_id: str, runtime_id: str, method: str, now: float,
                       ttl_seconds: float) -> dict[str, Any]:
    """Claims for one request of `method` to one sandbox, with a fresh nonce."""
    return ProxyTokenClaims(sandbox_id=sandbox_id, workspace_id=workspace_id, runtime_id=runtime_id,
                            method=method.upper(), nonce=secrets.token_urlsafe(18),
                            exp=now + min(ttl_seconds, PROXY_TOKEN_MAX_SECONDS)).model_dump()


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


def verify_proxy_request(key: str, token: str, now: float, sandbox_id: str, method: str) -> ProxyTokenClaims:
    """The claims of a token good for a `method` request to `sandbox_id`, or SandboxRejected
    saying why not. The nonce is the caller's to check (it must remember what it has seen)."""
    try:
        claims = ProxyTokenClaims.model_validate(verify_proxy_token(key, token, now))
    except ValidationError:
        raise SandboxRejected("proxy token lacks its sandbox, method or nonce; ask the API for a new one") from None
    if claims.exp > now + PROXY_TOKEN_MAX_SECONDS:
        raise SandboxRejected("proxy token is valid for longer than a proxy token may be")
    if claims.sandbox_id != sandbox_id:
        raise SandboxRejected("the proxy token was signed for another sandbox")
    if claims.method != method.upper():
        raise SandboxRejected(f"the proxy token was signed for {claims.method} requests, not {method.upper()}")
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
