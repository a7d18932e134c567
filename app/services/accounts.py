"""Accounts: signup, sessions, password reset and email verification.

Passwords are argon2id hashes; session, reset and verification tokens are random secrets stored
only as SHA-256 digests with an expiry. Reset and verification tokens are single use: taking one
is a conditional delete, so a replay finds nothing.
"""

import re

from app import clock
from app.auth.passwords import dummy_verify, hash_password, verify_password
from app.auth.principal import Principal
from app.errors import BadRequest, ConditionFailed, Conflict, NotFound, Unauthorized
from app.ids import hash_secret, new_id, new_secret
from app.mailer import get_mailer
from app.schemas.accounts import AuthResult, AuthUser, SignupRequest
from app.services.activity import audit
from app.settings import get_settings
from app.store import get_store
from app.store.table import Write


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "workspace"


def auth_user(user: dict, workspace: dict) -> AuthUser:
    return AuthUser(
        id=user["user_id"],
        name=user["name"],
        email=user["email"],
        role=user["role"],
        workspace=workspace["name"],
        workspace_slug=workspace["slug"],
        workspace_id=workspace["workspace_id"],
        email_verified=bool(user.get("email_verified")),
    )


def _session_writes(workspace_id: str, user_id: str, operator: bool) -> tuple[str, float, list[Write]]:
    """A new session: its secret, expiry, and the writes that store it."""
    store = get_store()
    secret = new_secret("bst")
    digest = hash_secret(secret)
    expires = clock.now() + get_settings().session_ttl_seconds
    session_id = new_id("ses")
    credential = store.credentials.item(
        digest, "session", workspace_id, user_id, tier="admin", expires_epoch=int(expires),
        attributes={"session_id": session_id, "operator": operator},
    )
    listing = store.accounts.session_item(workspace_id, user_id, session_id, digest, int(expires))
    return secret, expires, [store.credentials.put_write(credential), Write.put(listing)]


def _one_time_token(kind: str, workspace_id: str, user_id: str, ttl_seconds: int) -> tuple[str, Write]:
    secret = new_secret("brs" if kind == "reset" else "bvt")
    item = get_store().credentials.item(
        hash_secret(secret), kind, workspace_id, user_id, expires_epoch=int(clock.now() + ttl_seconds)
    )
    return secret, get_store().credentials.put_write(item)


def _send_verification(email: str, secret: str) -> None:
    link = f"{get_settings().base_url}/verify?token={secret}"
    get_mailer().send(
        email,
        "Confirm your berth email",
        f"Confirm this address for your berth account:\n\n{link}\n\nOr POST {{\"token\": \"{secret}\"}} "
        f"to /v1/auth/verify.\n",
    )


def _end_sessions(workspace_id: str, user_id: str) -> int:
    store = get_store()
    ended = 0
    for session in store.accounts.sessions_of(workspace_id, user_id):
        ended += store.credentials.delete(session["digest"])
        store.table.delete(session["pk"], session["sk"])
    return ended


def signup(request: SignupRequest) -> AuthResult:
    store = get_store()
    settings = get_settings()
    workspace_id, user_id = new_id("ws"), new_id("usr")
    workspace_name = request.workspace or f"{request.name}'s workspace"
    operator = request.email.lower() in {e.lower() for e in settings.operator_emails}
    now = clock.iso()
    workspace = store.accounts.workspace_item(
        workspace_id, name=workspace_name, slug=f"{_slug(workspace_name)}-{workspace_id[-6:]}",
        owner_id=user_id, operator=operator, created_at=now, open_jobs=0,
    )
    user = store.accounts.user_item(
        workspace_id, user_id, name=request.name, email=request.email.lower(), role="Owner",
        password_hash=hash_password(request.password), email_verified=False, created_at=now,
    )
    claim = store.accounts.email_claim_item(request.email, workspace_id, user_id)
    secret, expires, session_writes = _session_writes(workspace_id, user_id, operator)
    verify_secret, verify_write = _one_time_token(
        "verify", workspace_id, user_id, settings.verify_token_ttl_seconds
    )
    try:
        store.accounts.create_account(workspace, user, claim, [*session_writes, verify_write])
    except ConditionFailed as error:
        raise Conflict("an account with this email already exists") from error
    _send_verification(user["email"], verify_secret)
    audit(workspace_id, "auth.signup", actor=user_id, target=user_id)
    return AuthResult(token=secret, user=auth_user(user, workspace), expires_at=clock.iso(expires))


def login(email: str, password: str) -> AuthResult:
    store = get_store()
    claim = store.accounts.find_email(email)
    user = store.accounts.get_user(claim["workspace_id"], claim["user_id"]) if claim else None
    if user is None:
        dummy_verify(password)
        raise Unauthorized("wrong email or password")
    if not verify_password(user["password_hash"], password):
        audit(user["workspace_id"], "auth.login", actor=user["user_id"], outcome="denied",
              detail={"reason": "wrong password"})
        raise Unauthorized("wrong email or password")
    workspace = store.accounts.get_workspace(user["workspace_id"])
    secret, expires, writes = _session_writes(user["workspace_id"], user["user_id"], bool(workspace.get("operator")))
    store.table.transact(writes)
    audit(user["workspace_id"], "auth.login", actor=user["user_id"])
    return AuthResult(token=secret, user=auth_user(user, workspace), expires_at=clock.iso(expires))


def me(principal: Principal) -> AuthUser:
    store = get_store()
    user = store.accounts.get_user(principal.workspace_id, principal.user_id) if principal.user_id else None
    workspace = store.accounts.get_workspace(principal.workspace_id)
    if user is None or workspace is None:
        raise NotFound("the user behind these credentials no longer exists")
    return auth_user(user, workspace)


def logout(principal: Principal, *, everywhere: bool) -> int:
    store = get_store()
    if principal.kind != "session":
        raise BadRequest("logout ends sessions; revoke an API key with DELETE /api/auth/keys/{id}")
    if not everywhere:
        store.table.transact([
            store.credentials.delete_write(principal.credential_digest),
            store.accounts.session_delete_write(principal.workspace_id, principal.user_id, principal.session_id),
        ])
        store.credentials.forget(principal.credential_digest)
        return 1
    ended = _end_sessions(principal.workspace_id, principal.user_id)
    audit(principal.workspace_id, "auth.logout_all", actor=principal.user_id, detail={"sessions": ended})
    return ended


def forgot(email: str) -> None:
    store = get_store()
    claim = store.accounts.find_email(email)
    if claim is None:
        return
    secret, write = _one_time_token("reset", claim["workspace_id"], claim["user_id"],
                                    get_settings().reset_token_ttl_seconds)
    store.table.transact([write])
    link = f"{get_settings().base_url}/reset?token={secret}"
    get_mailer().send(
        email.lower(),
        "Reset your berth password",
        f"Someone asked to reset the password of this berth account. If it was you, open:\n\n{link}\n\n"
        f"Or POST {{\"token\": \"{secret}\", \"password\": \"...\"}} to /v1/auth/reset. "
        f"The link expires in {get_settings().reset_token_ttl_seconds // 60} minutes.\n",
    )
    audit(claim["workspace_id"], "auth.forgot", actor=claim["user_id"])


def reset(token: str, password: str) -> int:
    """Set a new password and end every session of the account; returns sessions ended."""
    store = get_store()
    credential = store.credentials.consume_once(hash_secret(token), "reset")
    if credential is None:
        raise BadRequest("invalid or expired reset token")
    store.accounts.update_user(credential.workspace_id, credential.subject_id,
                               password_hash=hash_password(password))
    ended = _end_sessions(credential.workspace_id, credential.subject_id)
    audit(credential.workspace_id, "auth.reset", actor=credential.subject_id, detail={"sessions_ended": ended})
    return ended


def verify(token: str) -> None:
    store = get_store()
    credential = store.credentials.consume_once(hash_secret(token), "verify")
    if credential is None:
        raise BadRequest("invalid or expired verification token")
    store.accounts.update_user(credential.workspace_id, credential.subject_id, email_verified=True)
    audit(credential.workspace_id, "auth.verify", actor=credential.subject_id)
