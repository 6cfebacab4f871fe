"""Web Push: payloads encrypted for each browser subscription (RFC 8291, aes128gcm) and
authorised with VAPID (RFC 8292, the keys: ``vapid``), sent over one shared HTTP client.
"""

from __future__ import annotations

import asyncio
import binascii
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from py_vapid import Vapid, VapidException
from pywebpush import WebPusher, WebPushException

from farmstand.config import Environment, Settings
from farmstand.notifications.channels.base import (
    Delivery,
    DeliveryError,
    PushTarget,
    ResultCallback,
    SendResult,
    send_each,
)
from farmstand.notifications.channels.email_message import one_line
from farmstand.notifications.channels.vapid import (
    VapidKeys,
    VapidKeysMissing,
    b64url,
    b64url_decode,
    load_private_key,
    vapid_keys,
)
from farmstand.notifications.models import NotificationChannel, NotificationType

log = logging.getLogger(__name__)

TTL_SECONDS = 24 * 3600  # how long the push service keeps a message for an offline browser
VAPID_TOKEN_SECONDS = 12 * 3600  # RFC 8292: exp at most 24 hours ahead
MAX_PAYLOAD_BYTES = 3000  # push services take 4096 encrypted bytes; leave room
URGENT_TYPES = frozenset(
    {
        NotificationType.ORDER_READY,
        NotificationType.ORDER_OUT_FOR_DELIVERY,
        NotificationType.NEW_ORDER,
    }
)


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def push_payload(delivery: Delivery) -> bytes:
    """The JSON the service worker receives (the body shortened to fit a push message)."""
    order_id = delivery.context.get("orderId") or delivery.context.get("order_id")
    payload = {
        "title": delivery.title,
        "body": delivery.message,
        "url": delivery.url,
        "tag": f"order-{order_id}" if order_id else delivery.notification_id,
        "notificationId": delivery.notification_id,
    }
    data = _json(payload)
    if len(data) > MAX_PAYLOAD_BYTES:  # keep the longest start of the body that fits
        body = payload["body"]
        low, high = 0, len(body)
        while low < high:
            middle = (low + high + 1) // 2
            payload["body"] = body[:middle].rstrip() + "…"
            if len(_json(payload)) <= MAX_PAYLOAD_BYTES:
                low = middle
            else:
                high = middle - 1
        payload["body"] = body[:low].rstrip() + "…" if low else ""
        data = _json(payload)
    return data


def push_topic(notification_id: str) -> str:
    """The ``Topic`` header (RFC 8030 §5.4) for a notification: a push service keeps only the
    newest message per topic for an offline browser, so a retried send replaces, not repeats.
    At most 32 characters of the base64url alphabet, derived from the id alone."""
    return b64url(hashlib.sha256(notification_id.encode()).digest())[:32]


def encrypt_for(target: PushTarget, data: bytes) -> bytes:
    """``data`` encrypted for one subscription (aes128gcm). Raises ValueError on bad keys."""
    try:
        p256dh = b64url_decode(target.p256dh)
        auth = b64url_decode(target.auth)
    except (ValueError, binascii.Error):
        raise ValueError("keys are not base64url") from None
    if len(p256dh) != 65 or p256dh[0] != 4 or len(auth) != 16:
        raise ValueError("keys have the wrong length")
    pusher = WebPusher(
        {"endpoint": target.endpoint, "keys": {"p256dh": b64url(p256dh), "auth": b64url(auth)}}
    )
    try:
        return bytes(pusher.encode(data, "aes128gcm")["body"])
    except WebPushException as exc:
        raise ValueError(exc.message) from None


@dataclass(frozen=True)
class _Outcome:
    target: PushTarget
    kind: str  # "sent", "expired", "temporary", "permanent"
    detail: str = ""
    location: str | None = None


class WebPushSender:
    """Sends each delivery to every one of the recipient's browser subscriptions.

    At most ``push_concurrency`` requests at a time, over one shared HTTP client. A delivery
    succeeds when at least one subscription took it; subscriptions the push service says
    are gone (404, 410) are returned in ``expired_push_targets`` for the dispatcher to delete.
    """

    channel = NotificationChannel.PUSH

    def __init__(
        self,
        settings: Settings,
        *,
        keys: VapidKeys | None = None,
        timeout: float = 15.0,
        ttl_seconds: int = TTL_SECONDS,
    ) -> None:
        self._subject = settings.vapid_subject
        self._ttl = ttl_seconds
        self._allow_http = settings.environment is not Environment.PRODUCTION
        self._disabled: str | None = None
        self._vapid: Vapid | None = None
        self.public_key: str | None = None
        try:
            keys = keys or vapid_keys(settings)
        except VapidKeysMissing as exc:
            # No push without keys, but email and SMS still go: each push fails, saying why.
            log.warning("%s", exc)
            self._disabled = str(exc)
        else:
            self._vapid = Vapid(load_private_key(keys.private_key))
            self.public_key = keys.public_key
            try:  # a bad subject fails here, at start-up, not on every send
                self._vapid.sign({"sub": self._subject, "aud": "https://push.example"})
            except VapidException as exc:
                raise ValueError(
                    f"FARMSTAND_VAPID_SUBJECT must be a mailto: or https: URL ({exc})"
                ) from None
        self._tokens: dict[str, tuple[str, int]] = {}
        self._semaphore = asyncio.Semaphore(settings.push_concurrency)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=settings.push_concurrency),
            headers={"User-Agent": "farmstand"},
        )

    def _authorization(self, audience: str) -> str:
        """``vapid t=<JWT>, k=<public key>``, reused per push service until near its expiry."""
        assert self._vapid is not None
        now = int(time.time())
        cached = self._tokens.get(audience)
        if cached and cached[1] - now > 3600:
            return cached[0]
        expires = now + VAPID_TOKEN_SECONDS
        header: dict[str, str] = self._vapid.sign(
            {"sub": self._subject, "aud": audience, "exp": expires}
        )
        self._tokens[audience] = (header["Authorization"], expires)
        return header["Authorization"]

    async def send_many(
        self, deliveries: list[Delivery], on_result: ResultCallback | None = None
    ) -> list[SendResult | DeliveryError]:
        return await send_each(deliveries, self._send, on_result)

    async def _send(self, delivery: Delivery) -> SendResult | DeliveryError:
        if self._disabled:
            return DeliveryError(self._disabled, permanent=True)
        if not delivery.push_targets:
            return DeliveryError("no push subscriptions", permanent=True)
        try:
            data = push_payload(delivery)
            urgency = "high" if delivery.type in URGENT_TYPES else "normal"
            topic = push_topic(delivery.notification_id)
            outcomes = await asyncio.gather(
                *(self._send_to(target, data, urgency, topic) for target in delivery.push_targets)
            )
        except Exception as exc:
            log.exception("push %s: unexpected error", delivery.notification_id)
            return DeliveryError(f"push failed: {type(exc).__name__}: {exc}")
        return _combine(outcomes)

    async def _send_to(self, target: PushTarget, data: bytes, urgency: str, topic: str) -> _Outcome:
        parts = urlsplit(target.endpoint)
        if parts.scheme != "https" and not (self._allow_http and parts.scheme == "http"):
            return _Outcome(target, "permanent", "the endpoint is not an https:// URL")
        if not parts.hostname:
            return _Outcome(target, "permanent", "the endpoint has no host")
        audience = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        try:
            body = encrypt_for(target, data)
        except ValueError as exc:
            # Keys that can't be used never will be: as good as gone.
            return _Outcome(target, "expired", f"unusable subscription keys: {exc}")
        try:
            authorization = self._authorization(audience)
        except VapidException as exc:
            return _Outcome(target, "permanent", f"cannot sign for {audience}: {exc}")
        headers = {
            "Authorization": authorization,
            "TTL": str(self._ttl),
            "Urgency": urgency,
            "Topic": topic,
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
        }
        try:
            async with self._semaphore:
                response = await self._client.post(target.endpoint, content=body, headers=headers)
        except httpx.InvalidURL as exc:
            return _Outcome(target, "permanent", f"invalid endpoint: {exc}")
        except httpx.TimeoutException as exc:
            return _Outcome(target, "temporary", f"timed out ({type(exc).__name__})")
        except httpx.HTTPError as exc:
            return _Outcome(target, "temporary", f"unreachable ({type(exc).__name__}: {exc})")
        status = response.status_code
        if 200 <= status < 300:
            location = response.headers.get("Location")
            return _Outcome(target, "sent", location=location)
        reason = f"{status} {one_line(response.text)[:200] or response.reason_phrase}"
        if status in (404, 410):
            return _Outcome(target, "expired", reason)
        if status in (408, 429) or status >= 500:
            return _Outcome(target, "temporary", reason)
        return _Outcome(target, "permanent", reason)  # 400, 401, 403, 413, ...

    async def close(self) -> None:
        await self._client.aclose()


def _combine(outcomes: list[_Outcome]) -> SendResult | DeliveryError:
    expired = tuple(o.target.id for o in outcomes if o.kind == "expired")
    sent = [o for o in outcomes if o.kind == "sent"]
    if sent:
        location = next((o.location for o in sent if o.location and len(o.location) <= 200), None)
        return SendResult(provider_message_id=location, expired_push_targets=expired)
    failures = "; ".join(f"{o.target.id}: {o.kind}, {o.detail}" for o in outcomes)
    message = f"push failed for all {len(outcomes)} subscription(s): {failures}"
    temporary = any(o.kind == "temporary" for o in outcomes)
    return DeliveryError(message, permanent=not temporary, expired_push_targets=expired)
