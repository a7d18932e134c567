"""Bearer secrets, looked up by their SHA-256 digest.

Every secret berth hands out (session, API key, runtime, join, password-reset and
email-verification tokens) has one credential item keyed by its digest. This is the only
partition family not keyed by workspace, because it is how a caller's workspace is found; the
item names the workspace and subject. Revocation deletes the item. Bearer lookups are cached for
`cache_seconds`: a revoked secret fails on the very next request to the process that revoked it,
and within that time everywhere else.
"""

import time

from app.domain.accounts import BEARER_KINDS, Credential, CredentialKind
from app.errors import ConditionFailed
from app.store import keys
from app.store.cache import TtlCache
from app.store.records import attributes, record
from app.store.table import Condition, Table, Write


def _credential(item: dict) -> Credential:
    return record(Credential, item, digest=item["pk"].removeprefix("CRED#"))


class Credentials:
    def __init__(self, table: Table, cache_seconds: float = 0.0):
        self.table = table
        self._bearers: TtlCache[Credential] = TtlCache(cache_seconds)

    def add(self, credential: Credential) -> Write:
        pk, sk = keys.credential(credential.digest)
        return Write.put({"pk": pk, "sk": sk, **attributes(credential, skip=("digest",))}, must_not_exist=True)

    def get(self, digest: str) -> Credential | None:
        item = self.table.get(*keys.credential(digest))
        return _credential(item) if item else None

    def bearer(self, digest: str) -> Credential | None:
        """A session, API key or runtime credential, as authentication reads it (cached)."""
        credential = self._bearers.get(digest)
        if credential is None:
            credential = self.get(digest)
            if credential is not None and credential.kind in BEARER_KINDS:
                self._bearers.put(digest, credential)
        return credential

    def cached_bearer(self, digest: str) -> Credential | None:
        """`bearer` from the in-process cache only (None when it would read the table)."""
        return self._bearers.get(digest)

    def forget(self, digest: str) -> None:
        """Drop a cached lookup; call after any write that revokes the credential."""
        self._bearers.forget(digest)

    def delete(self, digest: str) -> bool:
        self.forget(digest)
        return self.table.delete(*keys.credential(digest))

    def remove(self, digest: str) -> Write:
        return Write.delete(*keys.credential(digest))

    def consume_once(self, digest: str, kind: CredentialKind) -> Credential | None:
        """Take a single-use secret: exactly one caller ever gets it back."""
        item = self.table.get(*keys.credential(digest))
        if not item or item["kind"] != kind:
            return None
        if not self.table.delete(*keys.credential(digest), condition=Condition(equals={"kind": kind})):
            return None
        return _credential(item)

    def use(self, digest: str, kind: CredentialKind) -> Credential | None:
        """Spend one use of a limited-use secret (join tokens); None when none are left."""
        try:
            item = self.table.update(*keys.credential(digest), add={"uses_left": -1},
                                     condition=Condition(equals={"kind": kind}, above={"uses_left": 0}))
        except ConditionFailed:
            return None
        credential = _credential(item)
        return None if credential.expired(time.time()) else credential
