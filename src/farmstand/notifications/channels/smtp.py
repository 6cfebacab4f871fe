"""Email over SMTP (used when ``FARMSTAND_SMTP_HOST`` is set): connections reused within a
batch, and each failure classified as the message's or the provider's."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections import deque
from dataclasses import dataclass, field
from email.errors import MessageError
from email.message import EmailMessage

import aiosmtplib

from farmstand.config import Settings, SmtpSecurity
from farmstand.notifications.channels.base import (
    Delivery,
    DeliveryError,
    ResultCallback,
    SendResult,
)
from farmstand.notifications.channels.email_message import MessageBuilder, one_line
from farmstand.notifications.models import NotificationChannel
from farmstand.observability.logs import redact

log = logging.getLogger(__name__)


def classify_smtp_error(exc: BaseException) -> DeliveryError:
    """Whose failure it is, and whether retrying can help.

    The provider's (``provider=True``: the channel pauses, no message is charged): the server
    cannot be reached (refused, reset, DNS, TLS), times out, is not ready (a 4xx/5xx greeting
    or HELO, 421), refuses our login or our sender address (5xx MAIL FROM), or lacks a feature
    we need. The message's own: a refused recipient or DATA (5xx permanent, 4xx retried), an
    address that cannot be put in a command (permanent).
    """
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refused = exc.recipients[0] if exc.recipients else None
        code = refused.code if refused else 0
        detail = f"{code} {one_line(refused.message)}" if refused else "no reason given"
        if code == 421:
            return DeliveryError(f"SMTP server closing: {detail}", provider=True)
        return DeliveryError(
            f"SMTP server refused the recipient: {detail}", permanent=500 <= code < 600
        )
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return DeliveryError(
            f"SMTP login refused ({exc.code} {one_line(exc.message)}); check "
            "FARMSTAND_SMTP_USERNAME and FARMSTAND_SMTP_PASSWORD",
            provider=True,
        )
    if isinstance(exc, (aiosmtplib.SMTPConnectResponseError, aiosmtplib.SMTPHeloError)):
        # The server is not taking mail from us right now: nothing about this message.
        return DeliveryError(
            f"SMTP server not ready: {exc.code} {one_line(exc.message)}", provider=True
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException):  # sender refused, DATA refused, ...
        if exc.code == 421:  # "service not available, closing the channel"
            return DeliveryError(
                f"SMTP server closing: {exc.code} {one_line(exc.message)}", provider=True
            )
        if isinstance(exc, aiosmtplib.SMTPSenderRefused) and 500 <= exc.code < 600:
            # Our From address is refused: every message would be (FARMSTAND_EMAIL_FROM).
            return DeliveryError(
                f"SMTP server refused the sender: {exc.code} {one_line(exc.message)}; check "
                "FARMSTAND_EMAIL_FROM",
                provider=True,
            )
        what = {
            aiosmtplib.SMTPSenderRefused: "the sender",
            aiosmtplib.SMTPDataError: "the message",
        }.get(type(exc), "the command")
        return DeliveryError(
            f"SMTP server refused {what}: {exc.code} {one_line(exc.message)}",
            permanent=500 <= exc.code < 600,
        )
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return DeliveryError(f"SMTP server lacks a required feature: {exc}", provider=True)
    if isinstance(exc, TimeoutError):  # SMTPTimeoutError and its subclasses too
        return DeliveryError(f"SMTP timed out: {exc}", provider=True)
    if isinstance(exc, (ConnectionError, OSError, aiosmtplib.SMTPException)):
        # Refused, reset, DNS (gaierror), TLS (SSLError): all OSErrors, or aiosmtplib's own.
        return DeliveryError(f"SMTP connection failed: {exc}", provider=True)
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
    on_result: ResultCallback | None = None
    # Why a session gave up; the fate of messages no session got to.
    failure: DeliveryError | None = None
    results: dict[int, SendResult | DeliveryError] = field(default_factory=dict)

    def done(self, index: int, result: SendResult | DeliveryError) -> None:
        self.results[index] = result
        if self.on_result is not None:
            self.on_result(index, result)


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
        self._builder = MessageBuilder(settings)
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

    async def send_many(
        self, deliveries: list[Delivery], on_result: ResultCallback | None = None
    ) -> list[SendResult | DeliveryError]:
        batch = _Batch(pending=deque(), on_result=on_result)
        for index, delivery in enumerate(deliveries):
            try:
                message = self._builder.build(delivery)
            except (ValueError, MessageError) as exc:
                batch.done(index, DeliveryError(str(exc), permanent=True))
                continue
            batch.pending.append(
                _Job(index, message, delivery.recipient.email.strip(), str(message["Message-ID"]))
            )
        if batch.pending:
            if self._local_hostname is None:  # getfqdn can be slow: once, off the loop
                self._local_hostname = await asyncio.to_thread(socket.getfqdn)
            sessions = min(self._settings.email_concurrency, len(batch.pending))
            await asyncio.gather(*(self._session(batch) for _ in range(sessions)))
        for job in batch.pending:  # left over: every session failed (the server's failure)
            failure = batch.failure or DeliveryError("no SMTP session was available")
            batch.done(
                job.index,
                DeliveryError(
                    str(failure),
                    permanent=failure.permanent,
                    provider=failure.provider,
                    retry_after=failure.retry_after,
                ),
            )
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
                            redact(batch.failure),
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
                        batch.done(job.index, error)
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
                    batch.done(job.index, error)
                else:
                    batch.done(job.index, SendResult(provider_message_id=job.message_id))
        finally:
            if client is not None:
                if client.is_connected:
                    with contextlib.suppress(Exception):
                        await client.quit(timeout=min(5.0, self._settings.smtp_timeout_seconds))
                client.close()

    async def close(self) -> None:
        """Nothing to release: sessions live for one batch."""
