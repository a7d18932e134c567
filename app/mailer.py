"""Outgoing mail behind one interface: SES in AWS, a file outbox for the local stack and tests."""

import json
import time
from pathlib import Path
from typing import Protocol

from app.aws import AwsClients
from app.files import write_private
from app.ids import new_id
from app.settings import Settings


class Mailer(Protocol):
    def send(self, to: str, subject: str, body: str) -> None: ...


class FileOutbox:
    """Writes each message as one JSON file (0600, in a 0700 directory); tests and developers read
    them from `directory`."""

    def __init__(self, directory: Path):
        self.directory = directory

    def send(self, to: str, subject: str, body: str) -> None:
        # Messages carry reset and verification links: readable by this user alone.
        message = {"to": to, "subject": subject, "body": body, "sent_at": time.time()}
        write_private(self.directory / f"{new_id('mail')}.json", json.dumps(message))


class SesMailer:
    def __init__(self, clients: AwsClients, sender: str):
        self._clients = clients
        self.sender = sender

    def send(self, to: str, subject: str, body: str) -> None:
        self._clients.client("ses").send_email(
            Source=self.sender,
            Destination={"ToAddresses": [to]},
            Message={"Subject": {"Data": subject}, "Body": {"Text": {"Data": body}}},
        )


def mailer_for(settings: Settings, clients: AwsClients) -> Mailer:
    if settings.mailer == "ses":
        return SesMailer(clients, settings.mail_from)
    return FileOutbox(settings.outbox_dir)
