"""KMS: the key behind envelope encryption (app.services.secrets), by its alias."""

from dataclasses import dataclass

from app.aws import AwsClients


@dataclass(frozen=True)
class DataKey:
    plaintext: bytes  # 32 bytes for AES-256-GCM; kept in memory only
    ciphertext: bytes  # what is stored beside the data it encrypted


class Kms:
    def __init__(self, clients: AwsClients, key_alias: str):
        self._clients = clients
        self.key_alias = key_alias

    def key_state(self) -> str:
        """The key's state (`Enabled`, ...); raises the AWS error when it cannot be described."""
        return self._clients.client("kms").describe_key(KeyId=self.key_alias)["KeyMetadata"]["KeyState"]

    def generate_data_key(self, context: dict[str, str]) -> DataKey:
        """A fresh AES-256 data key, and the same encrypted under the key, bound to `context`."""
        answer = self._clients.client("kms").generate_data_key(KeyId=self.key_alias, KeySpec="AES_256",
                                                                EncryptionContext=context)
        return DataKey(plaintext=answer["Plaintext"], ciphertext=answer["CiphertextBlob"])

    def decrypt_data_key(self, ciphertext: bytes, context: dict[str, str]) -> bytes:
        """A data key back from its ciphertext; KMS refuses it for any other `context`."""
        return self.decrypt(ciphertext, context)

    def decrypt(self, ciphertext: bytes, context: dict[str, str]) -> bytes:
        """What was encrypted under the key with `context` (a data key, an SSH client key an
        operator encrypted); KMS refuses it for any other context."""
        return self._clients.client("kms").decrypt(CiphertextBlob=ciphertext, EncryptionContext=context)["Plaintext"]
