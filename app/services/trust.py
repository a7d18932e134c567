"""Who may do what beyond their key's tier: the platform operator, and accounts whose address is
not proven yet (docs/decisions.md, "Trust: operators, unverified accounts, runtime credentials").

Both are decided on use, from the user's record as it is now: a session or key carries no flag that
could outlive a revocation or precede a verification.
"""

from app.auth.principal import Principal
from app.domain.accounts import User, has_operator_rights
from app.errors import Forbidden
from app.settings import Settings
from app.store import Store


class TrustPolicy:
    def __init__(self, store: Store, settings: Settings):
        self.store = store
        self.settings = settings

    def _user(self, principal: Principal) -> User | None:
        if not principal.user_id:
            return None
        return self.store.accounts.user(principal.workspace_id, principal.user_id)

    def require_operator(self, principal: Principal, doing: str) -> None:
        """Forbidden unless the caller is the platform operator now."""
        if principal.operator:  # the local stack's own calls, in its process
            return
        user = self._user(principal)
        if user is not None and has_operator_rights(user, self.settings.operator_emails):
            return
        if user is not None and user.operator_grant is None and not user.email_verified \
                and user.email in {address.lower() for address in self.settings.operator_emails}:
            raise Forbidden(f"only the platform operator can {doing}, and operator rights come only with a verified "
                            f"address: follow the link mailed to {user.email} first")
        raise Forbidden(f"only the platform operator can {doing}")

    def is_operator_user(self, workspace_id: str, user_id: str) -> bool:
        user = self.store.accounts.user(workspace_id, user_id) if user_id else None
        return user is not None and has_operator_rights(user, self.settings.operator_emails)

    def verified(self, principal: Principal) -> bool:
        """Whether the caller's owner has proven their address (the local stack's own calls have)."""
        if principal.operator:
            return True
        user = self._user(principal)
        return user is not None and user.email_verified

    def refuse_unverified(self, verified: bool, doing: str) -> None:
        """Forbidden for an account that has not proven its address, where that is required."""
        if self.settings.require_email_verification and not verified:
            raise Forbidden(f"verify your email address before you {doing}: follow the link mailed to you at signup")

    def require_verified(self, principal: Principal, doing: str) -> None:
        """As `refuse_unverified`, reading the account only where verification is required."""
        if self.settings.require_email_verification:
            self.refuse_unverified(self.verified(principal), doing)
