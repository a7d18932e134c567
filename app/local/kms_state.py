"""KMS keys of the local stack's AWS stand-in, kept on disk across restarts.

KMS has no API to export key material, so this reads and restores moto's backend inside the
server process (app.local.aws_server); with moto_fidelity it is the one place berth touches moto
internals. The file is rewritten whenever a key or an alias is created, so it never lags the keys
a snapshot's ciphertexts were made with. It holds key material in clear: 0600 (app.files).
"""

import functools
import json
from pathlib import Path

from moto.core import DEFAULT_ACCOUNT_ID
from moto.kms.models import KmsBackend, kms_backends

from app.files import write_private

STATE_FILE = "kms.json"


def restore(path: Path, region: str) -> int:
    """Put the saved keys (same ids, same material) and aliases back; returns how many keys."""
    if not path.exists():
        return 0
    saved = json.loads(path.read_text())
    backend = kms_backends[DEFAULT_ACCOUNT_ID][region]
    for entry in saved.get("keys", []):
        if entry["id"] in backend.keys:
            continue
        key = backend.create_key(policy=None, key_usage="ENCRYPT_DECRYPT", key_spec="SYMMETRIC_DEFAULT",
                                 description=entry["description"], tags=None)
        backend.keys.pop(key.id)
        key.arn = key.arn.replace(key.id, entry["id"])
        key.id = entry["id"]
        key.key_material = bytes.fromhex(entry["material"])
        backend.keys[key.id] = key
    for alias, key_id in saved.get("aliases", {}).items():
        if key_id in backend.keys and not backend.alias_exists(alias):
            backend.create_alias(key_id, alias)
    return len(saved.get("keys", []))


def save(path: Path, region: str) -> None:
    backend = kms_backends[DEFAULT_ACCOUNT_ID][region]
    keys = [{"id": key.id, "material": key.key_material.hex(), "description": key.description}
            for key in backend.keys.values() if key.key_state == "Enabled"]
    aliases = {alias: key.id for key in backend.keys.values() for alias in key.aliases}
    write_private(path, json.dumps({"keys": keys, "aliases": aliases}))


def save_on_change(path: Path, region: str) -> None:
    """Rewrite the file after each key or alias the server creates."""
    for name in ("create_key", "create_alias"):
        original = getattr(KmsBackend, name)

        @functools.wraps(original)
        def saving(backend, *args, _original=original, **kwargs):
            result = _original(backend, *args, **kwargs)
            save(path, region)
            return result

        setattr(KmsBackend, name, saving)
