"""Email: SMTP when ``FARMSTAND_SMTP_HOST`` is set, else ``.eml`` files in a local mailbox.

Both senders build the same message (:func:`build_message`): From, To, Reply-To, Subject,
Date, a ``Message-ID`` derived from the notification id (so a receiver can drop a retried
copy), a plain-text part and an HTML alternative, and one-click unsubscribe headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import socket
import ssl
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy as email_policy
from email.errors import HeaderParseError, MessageError
from email.headerregistry import Address, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiosmtplib

from farmstand.config import Settings, SmtpSecurity
from farmstand.notifications.channels.base import Delivery, DeliveryError, SendResult
from farmstand.notifications.models import NotificationChannel

log = logging.getLogger(__name__)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9._-]")


class _VerbatimHeader(UnstructuredHeader):
    """A header written on one line, as given: folding or RFC 2047-encoding a URL breaks it."""

    def fold(self, *, policy: Any) -> str:
        return f"{self.name}: {self}{policy.linesep}"  # type: ignore[attr-defined]


_headers = HeaderRegistry()
_headers.map_to_type("list-unsubscribe", _VerbatimHeader)
POLICY = email_policy.default.clone(header_factory=_headers)
"""The policy of every message built here (standard folding, except List-Unsubscribe)."""


# ---------------------------------------------------------------------------------------------
# The message


def one_line(text: str) -> str:
    """``text`` with control characters (CR, LF, TAB, ...) and runs of spaces collapsed."""
    return " ".join(_CONTROL.sub(" ", text).split())


def safe_id(notification_id: str) -> str:
    """The id with anything but letters, digits, ``.``, ``_`` and ``-`` replaced (UUIDs pass)."""
    return _UNSAFE_ID.sub("_", notification_id) or "_"


def message_id_for(notification_id: str) -> str:
    return f"<{safe_id(notification_id)}@farmstand>"


def parse_mailbox(value: str, setting: str) -> Address:
    """One address from a setting such as ``Farmstand <no-reply@example.com>``."""
    try:
        header = POLICY.header_factory("From", value)
        addresses = header.addresses  # type: ignore[attr-defined]
    except (HeaderParseError, ValueError, IndexError):
        addresses = ()
    if len(addresses) != 1 or not addresses[0].domain:
        raise ValueError(f"{setting} must be one address, e.g. 'Farmstand <no-reply@example.com>'")
    return addresses[0]


def _unsubscribe_header(url: str) -> str:
    # Percent-encode anything that could end the <...> or the header line.
    return "<" + quote(url.strip(), safe="!#$%&'()*+,-./:;=?@[]_~") + ">"


def build_message(
    delivery: Delivery,
    *,
    sender: Address,
    reply_to: Address | None = None,
    now: datetime | None = None,
) -> EmailMessage:
    """The email for ``delivery``. Raises ValueError when the recipient address is unusable."""
    recipient = delivery.recipient
    try:
        to = Address(display_name=one_line(recipient.name), addr_spec=recipient.email.strip())
    except (ValueError, HeaderParseError) as exc:  # InvalidHeaderDefect is a ValueError
        raise ValueError(f"invalid email address {recipient.email!r}: {exc}") from None
    if not to.domain:
        raise ValueError(f"invalid email address {recipient.email!r}: no domain")

    msg = EmailMessage(policy=POLICY)
    msg["From"] = sender
    msg["To"] = to
    if reply_to is not None:
        msg["Reply-To"] = reply_to
    msg["Subject"] = one_line(delivery.title)
    msg["Date"] = now or datetime.now(UTC)
    msg["Message-ID"] = message_id_for(delivery.notification_id)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies
    if delivery.unsubscribe_url and delivery.unsubscribe_url.strip():
        unsubscribe = _unsubscribe_header(delivery.unsubscribe_url)
        if len(unsubscribe) <= 900:  # on one line, within SMTP's 998 characters
            msg["List-Unsubscribe"] = unsubscribe
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"  # RFC 8058
        else:
            log.warning("unsubscribe URL too long for a header, left out of %s", msg["Message-ID"])
    # Quoted-printable keeps lines short and 7-bit whatever the server supports.
    msg.set_content(delivery.message, cte="quoted-printable")
    if delivery.html:
        msg.add_alternative(delivery.html, subtype="html", cte="quoted-printable")
    return msg


class _MessageBuilder:
    """Settings-bound message building shared by both senders."""

    def __init__(self, settings: Settings) -> None:
        self.sender = parse_mailbox(settings.email_from, "FARMSTAND_EMAIL_FROM")
        self.reply_to = (
            parse_mailbox(settings.email_reply_to, "FARMSTAND_EMAIL_REPLY_TO")
            if settings.email_reply_to
            else None
        )

    def build(self, delivery: Delivery) -> EmailMessage:
        return build_message(delivery, sender=self.sender, reply_to=self.reply_to)


# ---------------------------------------------------------------------------------------------
# SMTP


def classify_smtp_error(exc: BaseException) -> DeliveryError:
    """5xx refusals are permanent; connection errors, timeouts and 4xx are temporary."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refused = exc.recipients[0] if exc.recipients else None
        code = refused.code if refused else 0
        detail = f"{code} {one_line(refused.message)}" if refused else "no reason given"
        return DeliveryError(
            f"SMTP server refused the recipient: {detail}", permanent=500 <= code < 600
        )
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return DeliveryError(
            f"SMTP login refused ({exc.code} {one_line(exc.message)}); check "
            "FARMSTAND_SMTP_USERNAME and FARMSTAND_SMTP_PASSWORD",
            permanent=500 <= exc.code < 600,
        )
    if isinstance(exc, (aiosmtplib.SMTPConnectResponseError, aiosmtplib.SMTPHeloError)):
        # The server is not taking mail from us right now: nothing about this message.
        return DeliveryError(f"SMTP server not ready: {exc.code} {one_line(exc.message)}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):  # sender refused, DATA refused, ...
        what = {
            aiosmtplib.SMTPSenderRefused: "the sender",
            aiosmtplib.SMTPDataError: "the message",
        }.get(type(exc), "the command")
        return DeliveryError(
            f"SMTP server refused {what}: {exc.code} {one_line(exc.message)}",
            permanent=500 <= exc.code < 600,
        )
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return DeliveryError(f"SMTP server lacks a required feature: {exc}", permanent=True)
    if isinstance(exc, TimeoutError):  # SMTPTimeoutError and its subclasses too
        return DeliveryError(f"SMTP timed out: {exc}")
    if isinstance(exc, (ConnectionError, OSError, aiosmtplib.SMTPException)):
        return DeliveryError(f"SMTP connection failed: {exc}")
    if isinstance(exc, ValueError):  # an address aiosmtplib refuses to put in a command
        return DeliveryError(f"cannot send this email: {exc}", permanent=True)
    return DeliveryError(f"SMTP send failed: {type(exc).__name__}: {exc}")


def _session_lost(exc: BaseException) -> bool:
    """The server dropped the session (or said it is closing it: 421)."""
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return exc.code == 421
    return isinstance(exc, ConnectionError)


@dataclass
class _Job:
    index: int
    message: EmailMessage
    recipient: str
    message_id: str
    retried: bool = False


@dataclass
class _Batch:
    pending: deque[_Job]
    # Why a session gave up; the fate of messages no session got to.
    failure: DeliveryError | None = None
    results: dict[int, SendResult | DeliveryError] = field(default_factory=dict)


class SmtpSender:
    """Sends over SMTP, reusing connections.

    A batch is shared by at most ``email_concurrency`` concurrent sessions, each sending
    one message after another on one connection (one connect and login per session). A
    message whose session the server drops is retried once on a new connection; a session
    that cannot connect stops and leaves its share to the others.
    """

    channel = NotificationChannel.EMAIL

    def __init__(self, settings: Settings, *, tls_context: ssl.SSLContext | None = None) -> None:
        if not settings.smtp_host:
            raise ValueError("SmtpSender needs FARMSTAND_SMTP_HOST")
        self._settings = settings
        self._builder = _MessageBuilder(settings)
        self._tls_context = tls_context  # None: the system's trusted CAs
        self._local_hostname: str | None = None

    def _client(self) -> aiosmtplib.SMTP:
        s = self._settings
        return aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username or None,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            timeout=s.smtp_timeout_seconds,
            use_tls=s.smtp_security is SmtpSecurity.TLS,
            start_tls=s.smtp_security is SmtpSecurity.STARTTLS,
            tls_context=self._tls_context,
            local_hostname=self._local_hostname,
        )

    async def send_many(self, deliveries: list[Delivery]) -> list[SendResult | DeliveryError]:
        batch = _Batch(pending=deque())
        for index, delivery in enumerate(deliveries):
            try:
                message = self._builder.build(delivery)
            except (ValueError, MessageError) as exc:
                batch.results[index] = DeliveryError(str(exc), permanent=True)
                continue
            batch.pending.append(
                _Job(index, message, delivery.recipient.email.strip(), str(message["Message-ID"]))
            )
        if batch.pending:
            if self._local_hostname is None:  # getfqdn can be slow: once, off the loop
                self._local_hostname = await asyncio.to_thread(socket.getfqdn)
            sessions = min(self._settings.email_concurrency, len(batch.pending))
            await asyncio.gather(*(self._session(batch) for _ in range(sessions)))
        for job in batch.pending:  # left over: every session failed
            failure = batch.failure or DeliveryError("no SMTP session was available")
            batch.results[job.index] = DeliveryError(str(failure), permanent=failure.permanent)
        return [batch.results[i] for i in range(len(deliveries))]

    async def _session(self, batch: _Batch) -> None:
        client: aiosmtplib.SMTP | None = None
        try:
            while batch.pending:
                if client is None or not client.is_connected:
                    if client is not None:
                        client.close()
                    client = self._client()
                    try:
                        await client.connect()
                    except Exception as exc:
                        batch.failure = classify_smtp_error(exc)
                        log.warning(
                            "SMTP session to %s:%s failed: %s",
                            self._settings.smtp_host,
                            self._settings.smtp_port,
                            batch.failure,
                        )
                        client = None
                        return
                job = batch.pending.popleft()
                try:
                    await client.send_message(
                        job.message,
                        sender=self._builder.sender.addr_spec,
                        recipients=[job.recipient],
                    )
                except Exception as exc:
                    error = classify_smtp_error(exc)
                    if isinstance(exc, TimeoutError):
                        # The session is in an unknown state and the server is slow:
                        # stop this session, leaving the rest to the others.
                        batch.results[job.index] = error
                        batch.failure = error
                        client.close()
                        client = None
                        return
                    if _session_lost(exc) or not client.is_connected:
                        client.close()
                        client = None
                        if not job.retried:  # once more, on a new connection
                            job.retried = True
                            batch.pending.appendleft(job)
                            continue
                    batch.results[job.index] = error
                else:
                    batch.results[job.index] = SendResult(provider_message_id=job.message_id)
        finally:
            if client is not None:
                if client.is_connected:
                    with contextlib.suppress(Exception):
                        await client.quit(timeout=min(5.0, self._settings.smtp_timeout_seconds))
                client.close()

    async def close(self) -> None:
        """Nothing to release: sessions live for one batch."""


# ---------------------------------------------------------------------------------------------
# Files: the development mailbox (and the helpers the SMS outbox shares)


def timestamped_name(notification_id: str, suffix: str, now: datetime | None = None) -> str:
    """``20250101T120000.123456Z-<id><suffix>``: sorts by time, says which notification."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%S.%fZ}-{safe_id(notification_id)}{suffix}"


def write_atomically(directory: Path, name: str, data: bytes) -> Path:
    """Write ``directory/name`` through a temporary file and a rename: never half a file."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    tmp = directory / f".{name}.{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return path


class FileMailboxSender:
    """The embedded default: each email becomes an ``.eml`` file in ``settings.mailbox_dir``.

    A real delivery target for development (open the files in a mail client, or see them in
    the admin pages through :func:`read_mailbox`), never a silent drop.
    """

    channel = NotificationChannel.EMAIL

    def __init__(self, settings: Settings) -> None:
        self.directory = settings.mailbox_dir
        self._builder = _MessageBuilder(settings)

    async def send_many(self, deliveries: list[Delivery]) -> list[SendResult | DeliveryError]:
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
            return BytesParser(policy=email_policy.default).parse(handle)  # type: ignore[return-value]


def read_mailbox(directory: Path | str, *, limit: int | None = None) -> list[MailboxEntry]:
    """The emails in ``directory``, newest first (an absent directory is an empty mailbox)."""
    folder = Path(directory)
    try:
        names = sorted(
            (p.name for p in folder.iterdir() if p.suffix == ".eml" and not p.name.startswith(".")),
            reverse=True,
        )
    except FileNotFoundError:
        return []
    entries = []
    parser = BytesParser(policy=email_policy.default)
    for name in names[:limit] if limit is not None else names:
        path = folder / name
        try:
            with path.open("rb") as handle:
                headers = parser.parse(handle, headersonly=True)
        except OSError:  # removed meanwhile
            continue
        try:
            date = headers["Date"].datetime if headers["Date"] else None
        except (AttributeError, TypeError, ValueError):
            date = None
        entries.append(
            MailboxEntry(
                path=path,
                name=name,
                subject=str(headers["Subject"] or ""),
                to=str(headers["To"] or ""),
                date=date,
                message_id=str(headers["Message-ID"] or ""),
            )
        )
    return entries
