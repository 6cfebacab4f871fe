"""SMS: Twilio when an account is configured, else JSON files in a local outbox."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from urllib.parse import quote

import httpx

from farmstand.config import Settings
from farmstand.notifications.channels.base import (
    Delivery,
    DeliveryError,
    ResultCallback,
    SendResult,
    send_each,
)
from farmstand.notifications.channels.email_message import one_line
from farmstand.notifications.channels.mailbox import timestamped_name, write_atomically
from farmstand.notifications.models import NotificationChannel

log = logging.getLogger(__name__)

MAX_BODY_CHARS = 1600  # Twilio refuses longer bodies (error 21617)
STATUS_CALLBACK_PATH = "/api/webhooks/twilio/status"
# 400 answers that are about the moment, not the message: the provider throttles us.
TEMPORARY_TWILIO_CODES = frozenset(
    {
        14107,  # SMS send rate limit exceeded
        20429,  # too many requests
        21611,  # the From number has too many queued messages
        30001,  # queue overflow
    }
)


def sms_body(delivery: Delivery) -> str:
    body = delivery.message.strip()
    if len(body) > MAX_BODY_CHARS:
        body = body[: MAX_BODY_CHARS - 1].rstrip() + "…"
    return body


def _phone(delivery: Delivery) -> str:
    phone = (delivery.recipient.phone or "").strip()
    if not phone:
        raise DeliveryError("no phone number", permanent=True)
    return phone


class TwilioSender:
    """Sends through Twilio's Messages API on one shared HTTP client (connections reused),
    at most ``sms_concurrency`` requests at a time.

    Each request carries ``I-Twilio-Idempotency-Token: <notification id>``, so a send retried
    after a lost reply is not sent twice; with ``public_base_url`` set, a ``StatusCallback``
    asks Twilio to report delivery to :data:`STATUS_CALLBACK_PATH` (see ``webhooks``).
    """

    channel = NotificationChannel.SMS

    def __init__(self, settings: Settings, *, timeout: float = 15.0) -> None:
        if not settings.twilio_configured:
            raise ValueError(
                "TwilioSender needs FARMSTAND_TWILIO_ACCOUNT_SID and FARMSTAND_TWILIO_AUTH_TOKEN"
            )
        if not (settings.twilio_from_number or settings.twilio_messaging_service_sid):
            raise ValueError(
                "Twilio needs FARMSTAND_TWILIO_FROM_NUMBER or "
                "FARMSTAND_TWILIO_MESSAGING_SERVICE_SID to send from"
            )
        sid = settings.twilio_account_sid or ""
        token = settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token else ""
        self.url = (
            f"{settings.twilio_api_base}/2010-04-01/Accounts/{quote(sid, safe='')}/Messages.json"
        )
        # A Messaging Service picks the best sender itself; otherwise the one From number.
        self._sender = (
            {"MessagingServiceSid": settings.twilio_messaging_service_sid}
            if settings.twilio_messaging_service_sid
            else {"From": settings.twilio_from_number or ""}
        )
        self._callback = (
            settings.public_base_url + STATUS_CALLBACK_PATH if settings.public_base_url else None
        )
        self._semaphore = asyncio.Semaphore(settings.sms_concurrency)
        self._client = httpx.AsyncClient(
            auth=(sid, token),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=settings.sms_concurrency),
            headers={"User-Agent": "farmstand", "Accept": "application/json"},
        )

    async def send_many(
        self, deliveries: list[Delivery], on_result: ResultCallback | None = None
    ) -> list[SendResult | DeliveryError]:
        return await send_each(deliveries, self._send, on_result)

    async def _send(self, delivery: Delivery) -> SendResult | DeliveryError:
        try:
            return await self._send_one(delivery)
        except DeliveryError as exc:
            return exc
        except httpx.TimeoutException as exc:
            return DeliveryError(f"Twilio timed out: {type(exc).__name__}", provider=True)
        except httpx.HTTPError as exc:  # connection refused, reset, DNS, TLS, protocol errors
            return DeliveryError(f"Twilio unreachable: {type(exc).__name__}: {exc}", provider=True)
        except Exception as exc:
            log.exception("SMS %s: unexpected error", delivery.notification_id)
            return DeliveryError(f"SMS send failed: {type(exc).__name__}: {exc}")

    async def _send_one(self, delivery: Delivery) -> SendResult:
        form = {"To": _phone(delivery), "Body": sms_body(delivery), **self._sender}
        if self._callback is not None:
            # The notification id in the (signed) URL: the report finds its row by key.
            form["StatusCallback"] = f"{self._callback}?n={quote(delivery.notification_id)}"
        async with self._semaphore:
            response = await self._client.post(
                self.url,
                data=form,
                headers={"I-Twilio-Idempotency-Token": delivery.notification_id},
            )
        if response.is_success:
            try:
                sid = response.json().get("sid")
            except (ValueError, AttributeError):
                sid = None
            return SendResult(provider_message_id=sid if isinstance(sid, str) else None)
        raise twilio_error(response)

    async def close(self) -> None:
        await self._client.aclose()


def _retry_after(response: httpx.Response) -> float | None:
    try:
        value = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
    return value if 0 < value <= 86400 else None


def twilio_error(response: httpx.Response) -> DeliveryError:
    """Classify a refusal. Twilio's (the channel pauses): refused credentials, an unknown
    account, 408, 429, 5xx and rate-limit codes. The message's own, permanent: an invalid or
    unsubscribed number and any other 4xx (the same request gets the same answer)."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = {}
    code = body.get("code") if isinstance(body, dict) else None
    message = one_line(str(body.get("message") or "")) if isinstance(body, dict) else ""
    message = message or one_line(response.reason_phrase or "") or "no message"
    detail = f"{status}{f', code {code}' if code else ''}: {message}"
    if status in (401, 403, 404):  # 404: no such account (the Messages URL names it)
        return DeliveryError(
            f"Twilio refused the credentials ({detail}); check FARMSTAND_TWILIO_ACCOUNT_SID "
            "and FARMSTAND_TWILIO_AUTH_TOKEN",
            provider=True,
        )
    if status == 429 or status >= 500 or status == 408 or code in TEMPORARY_TWILIO_CODES:
        return DeliveryError(
            f"Twilio is busy or failing ({detail})",
            provider=True,
            retry_after=_retry_after(response),
        )
    # 400 (invalid or unreachable number, unsubscribed recipient, ...) and other 4xx:
    # sending the same request again gets the same answer.
    return DeliveryError(f"Twilio refused the message ({detail})", permanent=True)


class FileOutboxSender:
    """The embedded default when Twilio isn't configured: each SMS becomes a JSON file in
    ``settings.sms_outbox_dir`` (a development outbox; nothing reaches a phone)."""

    channel = NotificationChannel.SMS

    def __init__(self, settings: Settings) -> None:
        self.directory = settings.sms_outbox_dir

    async def send_many(
        self, deliveries: list[Delivery], on_result: ResultCallback | None = None
    ) -> list[SendResult | DeliveryError]:
        # Quick local writes: the caller records them together when the batch returns.
        return await asyncio.to_thread(lambda: [self._write(d) for d in deliveries])

    def _write(self, delivery: Delivery) -> SendResult | DeliveryError:
        try:
            to = _phone(delivery)
        except DeliveryError as exc:
            return exc
        now = datetime.now(UTC)
        record = {
            "to": to,
            "body": sms_body(delivery),
            "notification_id": delivery.notification_id,
            "type": str(delivery.type),
            "recipient": delivery.recipient.name,
            "created_at": now.isoformat(),
            "note": "Development SMS outbox: this message was not sent to any phone.",
        }
        name = timestamped_name(delivery.notification_id, ".json", now)
        data = (json.dumps(record, ensure_ascii=False, indent=2) + "\n").encode()
        try:
            write_atomically(self.directory, name, data)
        except OSError as exc:
            return DeliveryError(f"cannot write to the SMS outbox {self.directory}: {exc}")
        return SendResult(provider_message_id=f"outbox:{name}")

    async def close(self) -> None:
        pass
