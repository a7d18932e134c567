"""Provider credentials: a workspace's BYO tokens (Hugging Face first), one per provider.

A token is sealed with the KMS key (`services.secrets`, envelope encryption, bound to kind and
workspace) before it is stored; it is never returned, logged or put in an event. What a workspace
sees of it is a hint (`hf_...abcd`). It is opened only to resolve a repo the workspace asked about
and to go, sealed again for one runtime, with a pull that needs it.
"""

from app.auth.principal import Principal
from app.clock import Clock
from app.domain.models import Provider, ProviderCredential, token_hint
from app.errors import NotFound
from app.services.activity import ActivityLog
from app.services.secrets import SecretBox
from app.store import Store

PROVIDER_CREDENTIAL_KIND = "provider-credential"


class ProviderCredentials:
    def __init__(self, store: Store, secrets: SecretBox, activity: ActivityLog, clock: Clock):
        self.store = store
        self.secrets = secrets
        self.activity = activity
        self.clock = clock

    def put(self, principal: Principal, provider: Provider, token: str, name: str = "") -> ProviderCredential:
        """Store the workspace's token for `provider`, replacing any it had."""
        credential = ProviderCredential(
            workspace_id=principal.workspace_id, provider=provider, hint=token_hint(token), name=name,
            sealed=self.seal(principal.workspace_id, token), created_at=self.clock.iso(),
            created_by=principal.subject_id)
        self.store.models.put_credential(credential)
        self.activity.audit(principal.workspace_id, "provider.credential.put", actor=principal.subject_id,
                            target=provider.value)
        return credential

    def list(self, principal: Principal) -> list[ProviderCredential]:
        return self.store.models.credentials(principal.workspace_id)

    def delete(self, principal: Principal, provider: Provider) -> None:
        if not self.store.models.delete_credential(principal.workspace_id, provider):
            raise NotFound(f"no {provider.value} credential in this workspace")
        self.activity.audit(principal.workspace_id, "provider.credential.delete", actor=principal.subject_id,
                            target=provider.value)

    def token(self, workspace_id: str, provider: Provider) -> str | None:
        """The workspace's token for `provider`, opened; None when it has none."""
        credential = self.store.models.credential(workspace_id, provider)
        return self.open(workspace_id, credential.sealed) if credential else None

    # Other secrets of the same kind (an external endpoint's API key) are sealed the same way.

    def seal(self, workspace_id: str, token: str) -> str:
        return self.secrets.seal(token, kind=PROVIDER_CREDENTIAL_KIND, workspace_id=workspace_id)

    def open(self, workspace_id: str, sealed: str) -> str:
        return str(self.secrets.open(sealed, kind=PROVIDER_CREDENTIAL_KIND, workspace_id=workspace_id))
