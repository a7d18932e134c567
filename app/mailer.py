"""Outgoing mail behind one interface: SES in AWS, a file outbox for the local stack and tests."""

import json
import time
from pathlib import Path
from typing import Protocol

from app.ids import new_id
from app.settings import Settings, get_settings


class Mailer(Protocol):
    def send(self, to: str, subject: str, body: str) -> None: ...


class FileOutbox:
    """Writes each message as one JSON file; tests and developers read them from `directory`."""

    def __init__(self, directory: Path):
        self.directory = directory

    def send(self, to: str, subject: str, body: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        message = {"to": to, "subject": subject, "body": body, "sent_at": time.time()}
        target = self.directory / f"{new_id('mail')}.json"
        temporary = target.with_suffix(".tmp")
        temporary.write_text(json.dumps(message))
        temporary.rename(target)


class SesMailer:
    def __init__(self, sender: str):
        self.sender = sender

    def send(self, to: str, subject: str, body: str) -> None:
        from app import aws

        aws.client("ses").send_email(
            Source=self.sender,
            Destination={"ToAddresses": [to]},
            Message={"Subject": {"Data": subject}, "Body": {"Text": {"Data": body}}},
        )


def get_mailer(settings: Settings | None = None) -> Mailer:
    settings = settings or get_settings()
    if settings.mailer == "ses":
        return SesMailer(settings.mail_from)
    return FileOutbox(settings.outbox_dir)
