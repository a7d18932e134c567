"""Connecting to an inventory host with exactly what the job carries: the pinned host key and the
client key. Nothing comes from the runtime's own SSH setup (no ~/.ssh/config, known_hosts file,
default identities or agent), so a job can reach only what the inventory allows, as it allows it.
"""

import asyncssh

from app.contract.ssh.hosts import SshHost
from app.contract.ssh.jobs import SshFailure

KEEPALIVE_SECONDS = 15  # a forward notices a dead host within about a minute (3 missed keepalives)


class ConnectFailed(Exception):
    """No usable connection; `failure` says why in the contract's terms."""

    def __init__(self, failure: SshFailure, message: str):
        super().__init__(message)
        self.failure = failure


class _PinnedHostKeyClient(asyncssh.SSHClient):
    """Accepts the server only when it presents the pinned key. The comparison is by SHA-256
    fingerprint, which also serves a pin given as a fingerprint alone; asyncssh then checks that
    the server holds the private half before the connection goes on."""

    def __init__(self, fingerprint: str):
        self.expected = fingerprint
        self.presented: str | None = None

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        self.presented = key.get_fingerprint("sha256")
        return self.presented == self.expected


async def connect(host: SshHost, client_private_key: str, timeout: float) -> asyncssh.SSHClientConnection:
    """An authenticated connection to `host`, or ConnectFailed. On a host key mismatch the
    handshake stops before authentication: the client key is not offered and nothing is sent."""
    pin = host.host_key_pin
    try:
        client_key = asyncssh.import_private_key(client_private_key)
    except (asyncssh.KeyImportError, ValueError):
        raise ConnectFailed(SshFailure.invalid_request, "the client key given with the job cannot be read "
                            "(an unencrypted OpenSSH or PEM private key is expected)") from None
    # With the key itself pinned, asyncssh also prefers its algorithm when negotiating, so a host
    # with several host keys presents the pinned one. A fingerprint alone cannot say which.
    trusted = [asyncssh.import_public_key(pin.public_key)] if pin.public_key else []
    client = _PinnedHostKeyClient(pin.fingerprint)
    try:
        return await asyncssh.connect(
            host.address, host.port, username=host.user, client_factory=lambda: client,
            known_hosts=(trusted, [], []), client_keys=[client_key], agent_path=None, config=None,
            x509_trusted_certs=None, preferred_auth="publickey", connect_timeout=timeout,
            keepalive_interval=KEEPALIVE_SECONDS)
    except asyncssh.HostKeyNotVerifiable:
        raise ConnectFailed(SshFailure.host_key_mismatch, f"host {host.name} presented the host key "
                            f"{client.presented or '(none)'}, not the pinned {pin.fingerprint}: refused before "
                            "authenticating; nothing was sent") from None
    except asyncssh.PermissionDenied:
        raise ConnectFailed(SshFailure.auth_failed, f"host {host.name} refused the client key for user "
                            f"{host.user}") from None
    except (TimeoutError, OSError) as error:  # asyncssh's connect_timeout raises TimeoutError
        reason = "timed out" if isinstance(error, TimeoutError) else (error.strerror or str(error))
        raise ConnectFailed(SshFailure.unreachable, f"cannot reach {host.name} at {host.address}:{host.port}: "
                            f"{reason}") from None
    except asyncssh.Error as error:
        raise ConnectFailed(SshFailure.ssh_error, f"SSH to {host.name} failed: {error.reason}") from None
