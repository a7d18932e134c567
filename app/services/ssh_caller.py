"""Who calls the infra SSH surface: a credential, and the person it acts for.

An operator is an admin-tier credential acting for a named person: a session is its user; an API
key names its person with the `X-User-Id` header (an agent acting for someone says for whom). That
person is what audit records keep beside the key. Kept light: every router's dependencies import it.
"""

import re
from dataclasses import dataclass
from typing import Literal

from app.auth.principal import USER_ID_PATTERN, Principal, Tier
from app.errors import BerthError, Forbidden

DENIED = "denied"  # app.contract.ssh.jobs.SshOutcome.denied, without importing the SSH contract here


@dataclass(frozen=True)
class SshCaller:
    """A caller of the infra SSH surface: its credential, and the person it acts for (the
    `X-User-Id` an API key sends, or the signed-in user of a session; "" when an API key sent none)."""

    principal: Principal
    user_id: str

    @classmethod
    def of(cls, principal: Principal, x_user_id: str | None) -> "SshCaller":
        if principal.kind == "session":
            return cls(principal, principal.user_id)
        return cls(principal, (x_user_id or "").strip())

    @property
    def via(self) -> Literal["api_key", "session"]:
        return "session" if self.principal.kind == "session" else "api_key"

    @property
    def workspace_id(self) -> str:
        return self.principal.workspace_id

    def who(self) -> dict[str, str]:
        """Who, as audit records and views say it."""
        key_id = self.principal.subject_id if self.via == "api_key" else ""
        return {"via": self.via, "key_id": key_id, "user_id": self.user_id}

    def why_not_admin(self) -> str | None:
        if self.principal.tier != Tier.admin:
            return (f"infra SSH needs an admin-tier key or a signed-in admin; this {self.via.replace('_', ' ')} is "
                    f"{self.principal.tier.value}-tier")
        return None

    def why_not_operator(self) -> str | None:
        """Why this caller may not change anything (None: it may): admin tier, and a named person."""
        refused = self.why_not_admin()
        if refused is None and not self.user_id:
            refused = "an API key operating infra SSH must say for whom: send the X-User-Id header"
        elif refused is None and not re.match(USER_ID_PATTERN, self.user_id):
            refused = "X-User-Id must be 1-128 letters, digits or ._@:+-"
        return refused


def denied(message: str, status: type[BerthError] = Forbidden) -> BerthError:
    """A refusal of kind `denied` (app.contract.ssh.jobs.SshOutcome), 403 unless said otherwise."""
    return status(message, kind=DENIED)
