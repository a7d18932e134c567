"""Hosts of the SSH inventory: where they are, the host key they must present, and where their
client key is kept; and the named port forwards an operator allows to them.

The host key is pinned per entry, as a known_hosts line or a `SHA256:` fingerprint, and checked
here without any SSH library: its base64 must decode to a key blob of the type it claims. The
client key is only ever *referenced* (`kms:`, `secretsmanager:`, `ssm:`, `file:`); the API
resolves the reference when it sends a job, and listings show only which kind of reference it is.
"""

import base64
import binascii
import hashlib
import ipaddress
import re
import struct
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

# Names of hosts, actions and forwards, and host labels: what an operator types and a URL carries.
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
Label = Annotated[str, Field(pattern=NAME_PATTERN)]

# Host key algorithms asyncssh and OpenSSH accept; DSA is gone from both by default.
HOST_KEY_TYPES = frozenset({
    "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
})
CLIENT_KEY_SOURCES = ("kms", "secretsmanager", "ssm", "file")


class Document(BaseModel):
    """An operator-written document: unknown fields are mistakes, not extensions."""

    model_config = ConfigDict(extra="forbid")


# --- host keys ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostKeyPin:
    """The host key a server must present: always a fingerprint, and the key itself when known."""

    fingerprint: str  # "SHA256:<unpadded base64>", as `ssh-keygen -l` prints it
    public_key: str | None = None  # "<type> <base64>" when pinned by a known_hosts line

    @property
    def algorithm(self) -> str | None:
        return self.public_key.split(" ", 1)[0] if self.public_key else None


def fingerprint_of(key_blob: bytes) -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(key_blob).digest()).decode().rstrip("=")


def _key_blob(key_type: str, encoded: str) -> bytes:
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the key is not valid base64") from None
    # The blob starts with the key type as an SSH string (uint32 length, then the name).
    if len(blob) < 4 or blob[4:4 + struct.unpack(">I", blob[:4])[0]] != key_type.encode():
        raise ValueError(f"the key's data is not a {key_type} key")
    return blob


def parse_host_key(text: str) -> HostKeyPin:
    """A pin from `SHA256:<fingerprint>`, `<type> <base64> [comment]` or a known_hosts line
    (`<patterns> <type> <base64> [comment]`; the patterns are ignored: the pin belongs to its entry)."""
    text = text.strip()
    if text.startswith("SHA256:"):
        digest = text.removeprefix("SHA256:")
        try:
            valid = len(base64.b64decode(digest + "=" * (-len(digest) % 4), validate=True)) == 32
        except (binascii.Error, ValueError):
            valid = False
        if not valid:
            raise ValueError("a SHA256: fingerprint is 43 base64 characters (as `ssh-keygen -lf` prints it)")
        return HostKeyPin(fingerprint=text)
    if "\n" in text:
        raise ValueError("give one known_hosts line, not several")
    fields = text.split()
    if fields and fields[0].startswith("@"):
        raise ValueError(f"known_hosts markers ({fields[0]}) are not supported: pin the host's own key")
    if fields and fields[0] not in HOST_KEY_TYPES:
        fields = fields[1:]  # the host patterns
    if len(fields) < 2 or fields[0] not in HOST_KEY_TYPES:
        raise ValueError("expected a known_hosts line ('<host> <key type> <base64>') or a SHA256: fingerprint, "
                         f"with a key type among {', '.join(sorted(HOST_KEY_TYPES))}")
    key_type, encoded = fields[0], fields[1]
    blob = _key_blob(key_type, encoded)
    return HostKeyPin(fingerprint=fingerprint_of(blob), public_key=f"{key_type} {encoded}")


def _check_host_key(text: str) -> str:
    pin = parse_host_key(text)
    return pin.public_key or pin.fingerprint  # normalised: comments and host patterns dropped


HostKey = Annotated[str, Field(min_length=8, max_length=16384), AfterValidator(_check_host_key)]


# --- client key references ----------------------------------------------------------------------


def _check_client_key_ref(reference: str) -> str:
    if "PRIVATE KEY" in reference or "\n" in reference:
        raise ValueError("client_key is a reference to the key (kms:, secretsmanager:, ssm: or file:), "
                         "never the key itself")
    source, _, target = reference.partition(":")
    if source not in CLIENT_KEY_SOURCES or not target.strip():
        raise ValueError("client_key must be '<source>:<reference>' with a source among "
                         f"{', '.join(CLIENT_KEY_SOURCES)} (kms: the key encrypted with berth's KMS key, base64)")
    if source == "kms":
        try:
            base64.b64decode(target, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("a kms: client key reference is the ciphertext in base64") from None
    if source == "file" and not target.startswith("/"):
        raise ValueError("a file: client key reference is an absolute path")
    return reference


ClientKeyRef = Annotated[str, Field(min_length=5, max_length=8192), AfterValidator(_check_client_key_ref)]


# --- hosts --------------------------------------------------------------------------------------

_HOSTNAME_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_HOSTNAME_LABEL}(\.{_HOSTNAME_LABEL})*$")


def _check_address(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        pass
    if not _HOSTNAME.match(address):
        raise ValueError("address must be a host name or an IP address")
    return address


class SshHost(Document):
    name: Name
    address: Annotated[str, AfterValidator(_check_address)]
    port: int = Field(default=22, ge=1, le=65535)
    user: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
    labels: list[Label] = Field(default_factory=list, max_length=50)
    host_key: HostKey
    client_key: ClientKeyRef
    # Which runtimes can reach this host: jobs for it go only to a runtime whose registered labels
    # include all of these (an empty selector means any runtime that runs ssh jobs).
    runtime_labels: dict[str, str] = Field(default_factory=dict, max_length=20)

    @property
    def host_key_pin(self) -> HostKeyPin:
        return parse_host_key(self.host_key)

    def listing(self) -> dict[str, Any]:
        """What `GET /api/infra/ssh/hosts` shows: no key material, only the kind of key reference."""
        pin = self.host_key_pin
        return {"name": self.name, "address": self.address, "port": self.port, "user": self.user,
                "labels": self.labels, "host_key_fingerprint": pin.fingerprint,
                "host_key_algorithm": pin.algorithm, "client_key_source": self.client_key.partition(":")[0],
                "runtime_labels": self.runtime_labels}


class Targeted(Document):
    """A document that names the hosts it may run on, directly or by label."""

    hosts: list[Name] = Field(default_factory=list, max_length=200)
    labels: list[Label] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _names_somewhere(self) -> "Targeted":
        if not self.hosts and not self.labels:
            raise ValueError("name the hosts or labels it may run on")
        return self

    def may_run_on(self, host: SshHost) -> bool:
        return host.name in self.hosts or not set(self.labels).isdisjoint(host.labels)


class SshForward(Targeted):
    """A port an operator allows to be forwarded: `target_host:target_port` as the SSH host sees it."""

    name: Name
    description: str = Field(default="", max_length=1000)
    target_host: Annotated[str, AfterValidator(_check_address)] = "127.0.0.1"
    target_port: int = Field(ge=1, le=65535)
    max_ttl_seconds: int = Field(default=3600, ge=60, le=86400)

    def listing(self) -> dict[str, Any]:
        return self.model_dump()
