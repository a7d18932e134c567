"""KMS: the key that encrypts provider credentials (envelope encryption), by its alias."""

from app.aws import AwsClients


class Kms:
    def __init__(self, clients: AwsClients, key_alias: str):
        self._clients = clients
        self.key_alias = key_alias

    def key_state(self) -> str:
        """The key's state (`Enabled`, ...); raises the AWS error when it cannot be described."""
        return self._clients.client("kms").describe_key(KeyId=self.key_alias)["KeyMetadata"]["KeyState"]
