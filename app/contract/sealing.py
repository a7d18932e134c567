"""Keys a runtime shares with the API, and secrets sealed for one runtime.

At registration the API hands a runtime a random *runtime key* (`brk_...`), once; the runtime keeps
it in its 0600 registration file and the API keeps it only KMS-encrypted. Both sides derive two
independent keys from it with HKDF-SHA256: one signs what the API sends the runtime directly
(control requests, proxy tokens), one seals secrets (a sandbox's env, a provider token, an SSH
client key) that travel to the runtime through queues and the API's own responses. Neither is
stored anywhere in clear, so reading the table (or a backup) gives no way to sign for, or read
what was sealed for, a runtime.

A sealed value is AES-256-GCM under the sealing key with a fresh 96-bit nonce, bound to what it
belongs to (`context`, e.g. the job id) as associated data, so a value sealed for one job cannot be
replayed into another.
"""

import base64
import json
import os
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

RUNTIME_KEY_PREFIX = "brk"
_SIGNING_INFO = b"berth/runtime/signing/v1"
_SEALING_INFO = b"berth/runtime/sealing/v1"
_VERSION = "v1"


class SealedValueRejected(Exception):
    """A sealed value is malformed, was sealed under another key, or for another context."""


@dataclass(frozen=True)
class RuntimeKeys:
    signing: str  # HMAC-SHA256 key for app.contract.signing (hex)
    sealing: bytes  # AES-256-GCM key for seal/unseal

    @classmethod
    def derive(cls, runtime_key: str) -> "RuntimeKeys":
        material = runtime_key.encode()
        return cls(signing=_hkdf(material, _SIGNING_INFO).hex(), sealing=_hkdf(material, _SEALING_INFO))


def _hkdf(material: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(material)


def seal(key: bytes, value: Any, context: str) -> str:
    """`value` (anything JSON can carry) sealed for the holder of `key`, bound to `context`."""
    nonce = os.urandom(12)
    ciphertext = AESGCM(key).encrypt(nonce, json.dumps(value, separators=(",", ":")).encode(), context.encode())
    return f"{_VERSION}.{base64.urlsafe_b64encode(nonce + ciphertext).decode().rstrip('=')}"


def unseal(key: bytes, sealed: str, context: str) -> Any:
    """The value `seal` was given; SealedValueRejected for anything else."""
    version, _, body = sealed.partition(".")
    if version != _VERSION or not body:
        raise SealedValueRejected("not a sealed value of a known version")
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        plaintext = AESGCM(key).decrypt(raw[:12], raw[12:], context.encode())
        return json.loads(plaintext)
    except (ValueError, InvalidTag) as error:
        raise SealedValueRejected("the sealed value does not open with this runtime's key for this context") \
            from error
