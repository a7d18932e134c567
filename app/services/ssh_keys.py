"""SSH client keys, from the references the inventory holds (never the keys themselves):

- `kms:<base64>`: the key encrypted with berth's KMS key under the encryption context
  `{"berth:purpose": "ssh-client-key"}` (`aws kms encrypt --key-id alias/berth-<stage>
  --encryption-context berth:purpose=ssh-client-key --plaintext fileb://id_ed25519`). The context
  means no other ciphertext of that key (a data key of a stored secret, say) can be passed off as
  a client key and sent to a runtime.
- `ssm:<name>`: an SSM parameter (a SecureString).
- `secretsmanager:<id>`: a Secrets Manager secret's string.
- `file:<absolute path>`: a file on the API's own machine: the local stack only.

A key is resolved when a run or forward is accepted, travels to the runtime sealed for it alone,
and is never logged, stored in clear or returned. Resolved keys are kept in memory briefly
(`KEY_CACHE_SECONDS`), so a burst of runs costs one KMS or Secrets Manager call.
"""

import base64
import binascii

from app.aws import AwsClients
from app.errors import ServiceUnavailable
from app.kms import Kms
from app.settings import Settings
from app.store.cache import TtlCache

KMS_CONTEXT = {"berth:purpose": "ssh-client-key"}
KEY_CACHE_SECONDS = 60.0


class ClientKeyUnavailable(ServiceUnavailable):
    """A host's client key reference does not resolve (the message names the reference's kind and
    why, never a key)."""


class SshClientKeys:
    def __init__(self, settings: Settings, aws: AwsClients, kms: Kms, cache_seconds: float = KEY_CACHE_SECONDS):
        self.local = settings.mode == "local"
        self.aws = aws
        self.kms = kms
        self._cache: TtlCache[str] = TtlCache(cache_seconds)

    def resolve(self, reference: str) -> str:
        """The private key `reference` points at (OpenSSH or PEM text), or ClientKeyUnavailable."""
        key = self._cache.get(reference)
        if key is None:
            key = self._fetch(reference)
            self._cache.put(reference, key)
        return key

    def _fetch(self, reference: str) -> str:
        source, _, target = reference.partition(":")
        try:
            if source == "kms":
                return self.kms.decrypt(base64.b64decode(target, validate=True), KMS_CONTEXT).decode("utf-8")
            if source == "ssm":
                return self.aws.client("ssm").get_parameter(Name=target, WithDecryption=True)["Parameter"]["Value"]
            if source == "secretsmanager":
                answer = self.aws.client("secretsmanager").get_secret_value(SecretId=target)
                if "SecretString" not in answer:
                    raise ClientKeyUnavailable(f"the secretsmanager: client key {target} is binary, not key text")
                return answer["SecretString"]
            if source == "file":
                if not self.local:
                    raise ClientKeyUnavailable("file: client keys are for the local stack; in AWS use kms:, ssm: "
                                               "or secretsmanager:")
                with open(target, encoding="utf-8") as file:
                    return file.read()
        except ClientKeyUnavailable:
            raise
        except (binascii.Error, UnicodeDecodeError):
            raise ClientKeyUnavailable(f"the {source}: client key does not decode to key text") from None
        except OSError as error:
            raise ClientKeyUnavailable(f"the file: client key cannot be read: {error.strerror or error}") from None
        except Exception as error:  # botocore's ClientError and friends: which, not a traceback
            details = getattr(error, "response", {}).get("Error", {})
            raise ClientKeyUnavailable(f"the {source}: client key cannot be read: "
                                       f"{details.get('Code', type(error).__name__)}") from None
        raise ClientKeyUnavailable(f"unknown client key source {source!r}")
