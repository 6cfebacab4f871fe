"""The development mailbox, the embedded default for email when no SMTP server is set: each
email an ``.eml`` file in ``settings.mailbox_dir``; reading it back (the admin's mailbox page,
the tests). Also the file helpers the SMS outbox shares."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy as email_policy
from email.errors import MessageError
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from farmstand.config import Settings
from farmstand.files import private_dir, write_private
from farmstand.notifications.channels.base import (
    Delivery,
    DeliveryError,
    ResultCallback,
    SendResult,
)
from farmstand.notifications.channels.email_message import MessageBuilder, safe_id
from farmstand.notifications.models import NotificationChannel


def timestamped_name(notification_id: str, suffix: str, now: datetime | None = None) -> str:
    """``20250101T120000.123456Z-<id><suffix>``: sorts by time, says which notification."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%S.%fZ}-{safe_id(notification_id)}{suffix}"


def write_atomically(directory: Path, name: str, data: bytes) -> Path:
    """Write ``directory/name`` through a temporary file and a rename: never half a file.
    The directory is 0700 and the file 0600 (messages name customers and their addresses)."""
    private_dir(directory)
    return write_private(directory / name, data, durable=True)


class FileMailboxSender:
    """The embedded default: each email becomes an ``.eml`` file in ``settings.mailbox_dir``.

    A real delivery target for development (open the files in a mail client), never a silent
    drop.
    """

    channel = NotificationChannel.EMAIL

    def __init__(self, settings: Settings) -> None:
        self.directory = settings.mailbox_dir
        self._builder = MessageBuilder(settings)

    async def send_many(
        self, deliveries: list[Delivery], on_result: ResultCallback | None = None
    ) -> list[SendResult | DeliveryError]:
        # Quick local writes: the caller records them together when the batch returns.
        return await asyncio.to_thread(lambda: [self._write(d) for d in deliveries])

    def _write(self, delivery: Delivery) -> SendResult | DeliveryError:
        try:
            message = self._builder.build(delivery)
        except (ValueError, MessageError) as exc:
            return DeliveryError(str(exc), permanent=True)
        try:
            write_atomically(
                self.directory,
                timestamped_name(delivery.notification_id, ".eml"),
                message.as_bytes(),
            )
        except OSError as exc:
            return DeliveryError(f"cannot write to the mailbox {self.directory}: {exc}")
        return SendResult(provider_message_id=str(message["Message-ID"]))

    async def close(self) -> None:
        pass


# -- reading the mailbox back -----------------------------------------------------------------

# The names ``timestamped_name`` gives emails: nothing else in the folder is ever opened.
MAIL_NAME = re.compile(r"\A[0-9]{8}T[0-9]{6}\.[0-9]{6}Z-[A-Za-z0-9._-]{1,200}\.eml\Z")


@dataclass(frozen=True)
class MailboxEntry:
    """One email in the development mailbox (headers parsed; the body read on demand)."""

    path: Path
    name: str
    subject: str
    to: str
    date: datetime | None
    message_id: str

    def read_text(self) -> str:
        """The whole message as written (headers and MIME parts)."""
        return self.path.read_text(encoding="utf-8", errors="replace")

    def message(self) -> EmailMessage:
        """The parsed message: ``.get_body(("plain",)).get_content()`` for the text."""
        with self.path.open("rb") as handle:
            message = BytesParser(policy=email_policy.default).parse(handle)
        assert isinstance(message, EmailMessage)
        return message

    def parts(self) -> tuple[str, str | None]:
        """The text part (empty if none) and the HTML part (None if none), decoded."""
        message = self.message()
        text = message.get_body(("plain",))
        html = message.get_body(("html",))
        return (
            str(text.get_content()) if isinstance(text, EmailMessage) else "",
            str(html.get_content()) if isinstance(html, EmailMessage) else None,
        )


def _names(folder: Path) -> list[str]:
    """The emails' file names, newest first (an absent folder is an empty mailbox)."""
    try:
        return sorted((p.name for p in folder.iterdir() if MAIL_NAME.match(p.name)), reverse=True)
    except FileNotFoundError:
        return []


def _entry(folder: Path, name: str) -> MailboxEntry | None:
    path = folder / name
    try:
        with path.open("rb") as handle:
            headers = BytesParser(policy=email_policy.default).parse(handle, headersonly=True)
    except OSError:  # removed meanwhile
        return None
    date_header: Any = headers["Date"]
    try:
        date = date_header.datetime if date_header else None
    except (AttributeError, TypeError, ValueError):
        date = None
    return MailboxEntry(
        path=path,
        name=name,
        subject=str(headers["Subject"] or ""),
        to=str(headers["To"] or ""),
        date=date,
        message_id=str(headers["Message-ID"] or ""),
    )


def read_mailbox(directory: Path | str, *, limit: int | None = None) -> list[MailboxEntry]:
    """The emails in ``directory``, newest first, at most ``limit`` of them."""
    folder = Path(directory)
    entries = (_entry(folder, name) for name in _names(folder)[:limit])
    return [entry for entry in entries if entry is not None]


def open_mail(directory: Path | str, name: str) -> MailboxEntry | None:
    """The email called ``name`` in ``directory``, or None: only a name the listing gives
    (never a path: no ``/``, no ``..``, and the file must be in the folder's listing)."""
    folder = Path(directory)
    if not MAIL_NAME.match(name) or name not in _names(folder):
        return None
    return _entry(folder, name)
