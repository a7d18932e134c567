"""Bearer secrets, looked up by their SHA-256 digest.

Every secret berth hands out (session, API key, runtime, join, password-reset and
email-verification tokens) has one credential item keyed by its digest. This is the only
partition family not keyed by workspace, because it is how a caller's workspace is found; the
item names the workspace and subject, and only `app.auth` reads it. Revocation deletes the
item. Bearer lookups are cached for `credential_cache_seconds`: a revoked secret fails on the
very next request to the process that revoked it, and within that time everywhere else.
"""

import time
from dataclasses import dataclass
from typing import Literal

from app.errors import ConditionFailed
from app.store.cache import TtlCache
from app.store.table import Condition, Table, Write

CredentialKind = Literal["session", "api_key", "runtime", "join", "reset", "verify"]
_BEARER_KINDS = ("session", "api_key", "runtime")  # long-lived, presented on every request


def _key(digest: str) -> tuple[str, str]:
    return f"CRED#{digest}", "CRED"


@dataclass
class Credential:
    digest: str
    kind: CredentialKind
    workspace_id: str
    subject_id: str
    tier: str
    expires_epoch: int | None
    uses_left: int | None
    attributes: dict

    @classmethod
    def from_item(cls, item: dict) -> "Credential":
        return cls(
            digest=item["pk"].removeprefix("CRED#"),
            kind=item["kind"],
            workspace_id=item["workspace_id"],
            subject_id=item["subject_id"],
            tier=item.get("tier", ""),
            expires_epoch=item.get("expires_epoch"),
            uses_left=item.get("uses_left"),
            attributes=item.get("attributes", {}),
        )


class Credentials:
    def __init__(self, table: Table, cache_seconds: float = 0.0):
        self.table = table
        self._bearers: TtlCache[Credential] = TtlCache(cache_seconds)

    def item(
        self,
        digest: str,
        kind: CredentialKind,
        workspace_id: str,
        subject_id: str,
        *,
        tier: str = "",
        expires_epoch: int | None = None,
        uses_left: int | None = None,
        attributes: dict | None = None,
    ) -> dict:
        pk, sk = _key(digest)
        item = {
            "pk": pk,
            "sk": sk,
            "kind": kind,
            "workspace_id": workspace_id,
            "subject_id": subject_id,
            "tier": tier,
            "attributes": attributes or {},
        }
        if expires_epoch is not None:
            item["expires_epoch"] = expires_epoch
        if uses_left is not None:
            item["uses_left"] = uses_left
        return item

    def put_write(self, item: dict) -> Write:
        return Write.put(item, must_not_exist=True)

    def get(self, digest: str) -> Credential | None:
        item = self.table.get(*_key(digest))
        return Credential.from_item(item) if item else None

    def bearer(self, digest: str) -> Credential | None:
        """A session, API key or runtime credential, as authentication reads it (cached)."""
        credential = self._bearers.get(digest)
        if credential is None:
            credential = self.get(digest)
            if credential is not None and credential.kind in _BEARER_KINDS:
                self._bearers.put(digest, credential)
        return credential

    def forget(self, digest: str) -> None:
        """Drop a cached lookup; call after any write that revokes the credential."""
        self._bearers.forget(digest)

    def delete(self, digest: str) -> bool:
        self.forget(digest)
        return self.table.delete(*_key(digest))

    def delete_write(self, digest: str) -> Write:
        return Write.delete(*_key(digest))

    def consume_once(self, digest: str, kind: CredentialKind) -> Credential | None:
        """Take a single-use secret: exactly one caller ever gets it back."""
        item = self.table.get(*_key(digest))
        if not item or item["kind"] != kind:
            return None
        if not self.table.delete(*_key(digest), condition=Condition(equals={"kind": kind})):
            return None
        return Credential.from_item(item)

    def use(self, digest: str, kind: CredentialKind) -> Credential | None:
        """Spend one use of a limited-use secret (join tokens); None when none are left."""
        try:
            item = self.table.update(
                *_key(digest), add={"uses_left": -1}, condition=Condition(equals={"kind": kind}, above={"uses_left": 0})
            )
        except ConditionFailed:
            return None
        credential = Credential.from_item(item)
        if credential.expires_epoch is not None and credential.expires_epoch <= time.time():
            return None
        return credential
