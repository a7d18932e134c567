"""Identifiers, secrets and their hashes.

Ids are time-ordered (48-bit millisecond clock + 64 random bits, Crockford base32), so sort keys
built from them list newest-first with a reverse query. Secrets are 32 random bytes; being high
entropy, a SHA-256 digest is the right stored form (argon2 is for passwords only).
"""

import hashlib
import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def _base32(number: int, length: int) -> str:
    chars = []
    for _ in range(length):
        number, rem = divmod(number, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    millis = time.time_ns() // 1_000_000
    return f"{prefix}_{_base32(millis, 10)}{_base32(secrets.randbits(64), 13)}"


def new_secret(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_prefix(secret: str) -> str:
    """The short, non-secret part of a key shown in listings."""
    return secret[: secret.index("_") + 7] if "_" in secret else secret[:6]
