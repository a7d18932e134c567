"""Accounts: signup, sessions, password reset and email verification, and the operator grant.

Passwords are argon2id hashes; session, reset and verification tokens are random secrets stored
only as SHA-256 digests with an expiry. Reset and verification tokens are single use: taking one
is a conditional delete, so a replay finds nothing. Signup, login and forgot are rate-limited per
address and per client; forgot takes as long whether or not the address has an account.
"""

import re
from dataclasses import dataclass

from app.auth.passwords import dummy_verify, hash_password, verify_password
from app.auth.principal import Principal
from app.clock import Clock
from app.domain.accounts import Credential, CredentialKind, OperatorGrant, Session, User, Workspace
from app.errors import BadRequest, ConditionFailed, Conflict, NotFound, Unauthorized
from app.ids import hash_secret, new_id, new_secret
from app.mailer import Mailer
from app.services.activity import ActivityLog
from app.services.api_keys import ApiKeyService
from app.services.rate_limits import AuthRateLimits
from app.settings import Settings
from app.store import Store
from app.store.table import Write


@dataclass(frozen=True)
class SignedIn:
    """A new session: its secret (shown once) and whose it is."""

    token: str
    expires_at: str
    user: User
    workspace: Workspace


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "workspace"


class AccountService:
    def __init__(self, store: Store, settings: Settings, mailer: Mailer, limits: AuthRateLimits,
                 api_keys: ApiKeyService, activity: ActivityLog, clock: Clock):
        self.store = store
        self.settings = settings
        self.mailer = mailer
        self.limits = limits
        self.api_keys = api_keys
        self.activity = activity
        self.clock = clock

    def _session(self, workspace_id: str, user_id: str) -> tuple[str, float, list[Write]]:
        """A new session: its secret, expiry, and the writes that store it."""
        secret = new_secret("bst")
        digest = hash_secret(secret)
        expires = self.clock.now() + self.settings.session_ttl_seconds
        session = Session(session_id=new_id("ses"), workspace_id=workspace_id, user_id=user_id, digest=digest,
                          expires_epoch=int(expires))
        credential = Credential(digest=digest, kind="session", workspace_id=workspace_id, subject_id=user_id,
                                tier="admin", expires_epoch=int(expires), attributes={"session_id": session.session_id})
        return secret, expires, [self.store.credentials.add(credential), self.store.accounts.add_session(session)]

    def _one_time_token(self, kind: CredentialKind, workspace_id: str, user_id: str,
                        ttl_seconds: int) -> tuple[str, Write]:
        secret = new_secret("brs" if kind == "reset" else "bvt")
        credential = Credential(digest=hash_secret(secret), kind=kind, workspace_id=workspace_id, subject_id=user_id,
                                expires_epoch=int(self.clock.now() + ttl_seconds))
        return secret, self.store.credentials.add(credential)

    def _send_verification(self, email: str, secret: str) -> None:
        link = f"{self.settings.base_url}/verify?token={secret}"
        self.mailer.send(
            email,
            "Confirm your berth email",
            f"Confirm this address for your berth account:\n\n{link}\n\nOr POST {{\"token\": \"{secret}\"}} "
            f"to /v1/auth/verify.\n",
        )

    def _end_sessions(self, workspace_id: str, user_id: str) -> int:
        ended = 0
        for session in self.store.accounts.sessions_of(workspace_id, user_id):
            ended += self.store.credentials.delete(session.digest)
            self.store.accounts.delete_session(session)
        return ended

    def signup(self, name: str, email: str, password: str, workspace_name: str | None, *,
               client: str | None = None) -> SignedIn:
        """A new workspace and its owner, signed in. The address is unproven until its link is
        followed: no operator rights come with it, whatever the address (app.services.trust)."""
        self.limits.admit("signup", email, client)
        workspace_id, user_id = new_id("ws"), new_id("usr")
        workspace_name = workspace_name or f"{name}'s workspace"
        now = self.clock.iso()
        workspace = Workspace(workspace_id=workspace_id, name=workspace_name,
                              slug=f"{_slug(workspace_name)}-{workspace_id[-6:]}", owner_id=user_id,
                              created_at=now, open_jobs=0)
        user = User(user_id=user_id, workspace_id=workspace_id, name=name, email=email.lower(), role="Owner",
                    password_hash=hash_password(password), email_verified=False, created_at=now)
        secret, expires, session_writes = self._session(workspace_id, user_id)
        verify_secret, verify_write = self._one_time_token("verify", workspace_id, user_id,
                                                           self.settings.verify_token_ttl_seconds)
        try:
            self.store.accounts.create_account(workspace, user, [*session_writes, verify_write])
        except ConditionFailed as error:
            raise Conflict("an account with this email already exists") from error
        self._send_verification(user.email, verify_secret)
        self.activity.audit(workspace_id, "auth.signup", actor=user_id, target=user_id)
        return SignedIn(secret, self.clock.iso(expires), user, workspace)

    def login(self, email: str, password: str, *, client: str | None = None) -> SignedIn:
        self.limits.admit("login", email, client)
        owner = self.store.accounts.user_by_email(email)
        user = self.store.accounts.user(*owner) if owner else None
        if user is None:
            dummy_verify(password)
            raise Unauthorized("wrong email or password")
        if not verify_password(user.password_hash, password):
            self.activity.audit(user.workspace_id, "auth.login", actor=user.user_id, outcome="denied",
                                detail={"reason": "wrong password"})
            raise Unauthorized("wrong email or password")
        workspace = self.store.accounts.workspace(user.workspace_id)
        if workspace is None:
            raise Unauthorized("wrong email or password")
        secret, expires, writes = self._session(user.workspace_id, user.user_id)
        self.store.table.transact(writes)
        self.activity.audit(user.workspace_id, "auth.login", actor=user.user_id)
        return SignedIn(secret, self.clock.iso(expires), user, workspace)

    def me(self, principal: Principal) -> tuple[User, Workspace]:
        user = self.store.accounts.user(principal.workspace_id, principal.user_id) if principal.user_id else None
        workspace = self.store.accounts.workspace(principal.workspace_id)
        if user is None or workspace is None:
            raise NotFound("the user behind these credentials no longer exists")
        return user, workspace

    def logout(self, principal: Principal, *, everywhere: bool) -> int:
        if principal.kind != "session":
            raise BadRequest("logout ends sessions; revoke an API key with DELETE /api/auth/keys/{id}")
        if not everywhere:
            self.store.table.transact([
                self.store.credentials.remove(principal.credential_digest),
                self.store.accounts.end_session(principal.workspace_id, principal.user_id, principal.session_id),
            ])
            self.store.credentials.forget(principal.credential_digest)
            return 1
        ended = self._end_sessions(principal.workspace_id, principal.user_id)
        self.activity.audit(principal.workspace_id, "auth.logout_all", actor=principal.user_id,
                            detail={"sessions": ended})
        return ended

    def forgot(self, email: str, *, client: str | None = None) -> None:
        """Mail a reset link if the address has an account. Either way it takes at least
        `forgot_min_seconds` (more than sending the mail takes), so its duration tells nothing."""
        started = self.clock.now()
        try:
            self.limits.admit("forgot", email, client)
            self._mail_reset_link(email)
        finally:
            self.clock.sleep(max(started + self.settings.forgot_min_seconds - self.clock.now(), 0))

    def _mail_reset_link(self, email: str) -> None:
        owner = self.store.accounts.user_by_email(email)
        if owner is None:
            return
        workspace_id, user_id = owner
        secret, write = self._one_time_token("reset", workspace_id, user_id, self.settings.reset_token_ttl_seconds)
        self.store.table.transact([write])
        link = f"{self.settings.base_url}/reset?token={secret}"
        self.mailer.send(
            email.lower(),
            "Reset your berth password",
            f"Someone asked to reset the password of this berth account. If it was you, open:\n\n{link}\n\n"
            f"Or POST {{\"token\": \"{secret}\", \"password\": \"...\"}} to /v1/auth/reset. "
            f"The link expires in {self.settings.reset_token_ttl_seconds // 60} minutes.\n",
        )
        self.activity.audit(workspace_id, "auth.forgot", actor=user_id)

    def reset(self, token: str, password: str) -> int:
        """Set a new password, end every session of the account and revoke the API keys made before
        the owner proved the address; returns sessions ended. The reset link went to the address,
        so following it proves the address too."""
        credential = self.store.credentials.consume_once(hash_secret(token), "reset")
        if credential is None:
            raise BadRequest("invalid or expired reset token")
        workspace_id, user_id = credential.workspace_id, credential.subject_id
        self.store.accounts.set_password(workspace_id, user_id, hash_password(password))
        ended = self._end_sessions(workspace_id, user_id)
        revoked = self.api_keys.revoke_unproven(workspace_id, user_id)
        self.store.accounts.mark_email_verified(workspace_id, user_id)
        self.activity.audit(workspace_id, "auth.reset", actor=user_id,
                            detail={"sessions_ended": ended, "keys_revoked": revoked})
        return ended

    def verify(self, token: str) -> None:
        credential = self.store.credentials.consume_once(hash_secret(token), "verify")
        if credential is None:
            raise BadRequest("invalid or expired verification token")
        self.store.accounts.mark_email_verified(credential.workspace_id, credential.subject_id)
        self.activity.audit(credential.workspace_id, "auth.verify", actor=credential.subject_id)

    # --- out of band (berth admin, with AWS credentials; never through the HTTP API) --------------

    def set_operator_grant(self, email: str, grant: OperatorGrant) -> User:
        """Grant or revoke operator rights to the account of `email`; it outranks
        BERTH_OPERATOR_EMAILS and takes effect on the account's next request."""
        owner = self.store.accounts.user_by_email(email)
        if owner is None:
            raise NotFound(f"no account with the address {email.lower()}")
        user = self.store.accounts.set_operator_grant(*owner, grant)
        self.activity.audit(user.workspace_id, f"operator.{'grant' if grant == 'granted' else 'revoke'}",
                            actor="berth admin", target=user.user_id)
        return user
