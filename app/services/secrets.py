"""Secrets at rest: envelope encryption with the KMS key.

A secret (a sandbox's env, a provider token, an OAuth grant, a runtime key) is sealed with
AES-256-GCM under a *data key*; the data key is stored beside it, encrypted by KMS. Both are bound
to a context (its kind and workspace): KMS refuses the data key for any other context, and the
context is the ciphertext's associated data, so a sealed value copied onto another workspace's
item does not open there.

A data key is reused for a short while (and a bounded number of seals) per context, and opened data
keys are kept briefly, so a burst of jobs costs one KMS call, not one per secret; the cache holds
keys only, never secrets.
"""

import base64
import json
import os
import threading
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.clock import Clock
from app.errors import BerthError
from app.kms import DataKey, Kms
from app.store.cache import TtlCache

DATA_KEY_SECONDS = 300.0
DATA_KEY_MAX_SEALS = 10_000
_VERSION = "e1"


class SecretUnreadable(BerthError):
    """A stored secret does not open: it was tampered with, or belongs to another context."""

    status = 500
    default_message = "a stored secret could not be decrypted"


@dataclass
class _ActiveKey:
    key: DataKey
    made_at: float
    seals: int = 0


class SecretBox:
    def __init__(self, kms: Kms, clock: Clock, key_seconds: float = DATA_KEY_SECONDS):
        self.kms = kms
        self.clock = clock
        self.key_seconds = key_seconds
        self._active: dict[str, _ActiveKey] = {}
        self._opened: TtlCache[bytes] = TtlCache(key_seconds)
        self._lock = threading.Lock()

    def seal(self, value: Any, *, kind: str, workspace_id: str) -> str:
        """`value` (anything JSON carries) sealed for storage; only `open` with the same kind and
        workspace reads it back."""
        context = _context(kind, workspace_id)
        key = self._data_key(context)
        nonce = os.urandom(12)
        ciphertext = AESGCM(key.plaintext).encrypt(nonce, json.dumps(value, separators=(",", ":")).encode(),
                                                   _aad(context))
        parts = (key.ciphertext, nonce + ciphertext)
        return _VERSION + "." + ".".join(base64.urlsafe_b64encode(part).decode().rstrip("=") for part in parts)

    def open(self, sealed: str, *, kind: str, workspace_id: str) -> Any:
        context = _context(kind, workspace_id)
        try:
            version, key_part, body_part = sealed.split(".")
            if version != _VERSION:
                raise ValueError(version)
            key_ciphertext, body = _unb64(key_part), _unb64(body_part)
        except ValueError as error:
            raise SecretUnreadable("a stored secret is malformed") from error
        data_key = self._opened.get((key_ciphertext, kind, workspace_id))
        if data_key is None:
            try:
                data_key = self.kms.decrypt_data_key(key_ciphertext, context)
            except Exception as error:  # KMS refuses a key for another context (InvalidCiphertextException)
                raise SecretUnreadable("a stored secret's key does not open in this context") from error
            self._opened.put((key_ciphertext, kind, workspace_id), data_key)
        try:
            return json.loads(AESGCM(data_key).decrypt(body[:12], body[12:], _aad(context)))
        except (InvalidTag, ValueError) as error:
            raise SecretUnreadable("a stored secret does not open in this context") from error

    def _data_key(self, context: dict[str, str]) -> DataKey:
        name = json.dumps(context, sort_keys=True)
        now = self.clock.now()
        with self._lock:
            active = self._active.get(name)
            if active is None or now - active.made_at >= self.key_seconds or active.seals >= DATA_KEY_MAX_SEALS:
                active = self._active[name] = _ActiveKey(self.kms.generate_data_key(context), now)
            active.seals += 1
            return active.key


def _context(kind: str, workspace_id: str) -> dict[str, str]:
    return {"berth:kind": kind, "berth:workspace": workspace_id}


def _aad(context: dict[str, str]) -> bytes:
    return json.dumps(context, sort_keys=True, separators=(",", ":")).encode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
