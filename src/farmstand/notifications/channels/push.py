"""Web Push: payloads encrypted for each browser subscription (RFC 8291, aes128gcm) and
authorised with VAPID (RFC 8292), sent over one shared HTTP client.

The VAPID key pair comes from ``FARMSTAND_VAPID_PRIVATE_KEY`` / ``FARMSTAND_VAPID_PUBLIC_KEY``;
outside production, when they are unset, it is generated once and kept in
``<data_dir>/.farmstand-vapid.json``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid, VapidException
from pywebpush import WebPusher, WebPushException

from farmstand.config import Environment, Settings
from farmstand.notifications.channels.base import (
    Delivery,
    DeliveryError,
    PushTarget,
    SendResult,
)
from farmstand.notifications.channels.email import one_line
from farmstand.notifications.models import NotificationChannel, NotificationType

log = logging.getLogger(__name__)

VAPID_FILE_NAME = ".farmstand-vapid.json"
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


# ---------------------------------------------------------------------------------------------
# VAPID keys


class VapidKeyError(ValueError):
    """The VAPID keys are missing, unreadable or don't match."""


class VapidKeysMissing(VapidKeyError):
    """Production without configured keys."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Base64url (or standard base64), padded or not."""
    clean = "".join(text.split()).replace("+", "-").replace("/", "_").rstrip("=")
    return base64.urlsafe_b64decode(clean + "=" * (-len(clean) % 4))


@dataclass(frozen=True)
class VapidKeys:
    private_key: str  # PEM, or base64url of the raw 32-byte scalar (or of DER)
    public_key: str  # the uncompressed P-256 point, base64url without padding

    def env_lines(self) -> list[str]:
        """What ``farmstand push keys`` prints, to paste into the environment or ``.env``."""
        raw = load_private_key(self.private_key).private_numbers().private_value.to_bytes(32, "big")
        return [
            f"FARMSTAND_VAPID_PRIVATE_KEY={b64url(raw)}",
            f"FARMSTAND_VAPID_PUBLIC_KEY={self.public_key}",
        ]


def load_private_key(text: str) -> ec.EllipticCurvePrivateKey:
    """A P-256 private key from PEM, or base64url of the raw scalar or of DER (PKCS#8/SEC1)."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
        else:
            raw = b64url_decode(text)
            if len(raw) == 32:
                key = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
            else:
                key = serialization.load_der_private_key(raw, password=None)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise VapidKeyError(f"not a P-256 private key (PEM or base64url): {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise VapidKeyError("not a P-256 (prime256v1) private key")
    return key


def public_key_b64(key: ec.EllipticCurvePrivateKey) -> str:
    """What the browser's ``applicationServerKey`` takes."""
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return b64url(point)


def generate_vapid_keys() -> VapidKeys:
    """A new key pair (private key as base64url of the raw scalar, one line for an env var)."""
    vapid = Vapid()
    vapid.generate_keys()
    key = vapid.private_key
    raw = key.private_numbers().private_value.to_bytes(32, "big")
    return VapidKeys(private_key=b64url(raw), public_key=public_key_b64(key))


def vapid_keys(settings: Settings) -> VapidKeys:
    """The configured key pair; outside production, when none is configured, the one kept in
    ``<data_dir>/.farmstand-vapid.json`` (generated on first use, mode 0600).

    Remembered per configuration, so the public-key endpoint can call it on every request.
    Raises VapidKeyError (a ValueError) on bad or mismatched keys, VapidKeysMissing in
    production without keys.
    """
    private = settings.vapid_private_key.get_secret_value() if settings.vapid_private_key else None
    return _vapid_keys(
        private,
        settings.vapid_public_key or None,
        settings.environment is Environment.PRODUCTION,
        settings.data_dir.absolute(),
    )


@functools.lru_cache(maxsize=16)
def _vapid_keys(
    private: str | None, public_setting: str | None, production: bool, data_dir: Path
) -> VapidKeys:
    if private is not None:
        try:
            public = public_key_b64(load_private_key(private))
        except VapidKeyError as exc:
            raise VapidKeyError(f"FARMSTAND_VAPID_PRIVATE_KEY: {exc}") from None
        if public_setting:
            try:
                matches = b64url_decode(public_setting) == b64url_decode(public)
            except (ValueError, binascii.Error):
                matches = False
            if not matches:
                raise VapidKeyError(
                    "FARMSTAND_VAPID_PUBLIC_KEY does not match FARMSTAND_VAPID_PRIVATE_KEY "
                    f"(its public key is {public})"
                )
        return VapidKeys(private_key=private, public_key=public)
    if public_setting:
        raise VapidKeyError(
            "FARMSTAND_VAPID_PUBLIC_KEY is set but FARMSTAND_VAPID_PRIVATE_KEY is not"
        )
    if production:
        raise VapidKeysMissing(
            "Web Push needs FARMSTAND_VAPID_PRIVATE_KEY and FARMSTAND_VAPID_PUBLIC_KEY in "
            "production (generate them with `farmstand push keys`)"
        )
    return _local_vapid_keys(data_dir / VAPID_FILE_NAME)


def _read_key_file(path: Path) -> VapidKeys:
    try:
        data = json.loads(path.read_text())
        keys = VapidKeys(
            private_key=data["private_key"],
            public_key=public_key_b64(load_private_key(data["private_key"])),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise VapidKeyError(
            f"{path} cannot be read ({exc}); delete it to generate new keys (browsers then "
            "subscribe again)"
        ) from None
    return keys


def _local_vapid_keys(path: Path) -> VapidKeys:
    if path.exists():
        return _read_key_file(path)
    keys = generate_vapid_keys()
    data = (
        json.dumps({"private_key": keys.private_key, "public_key": keys.public_key}, indent=2)
        + "\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(data)
        try:
            os.link(tmp, path)  # atomic, and only if no other process got there first
        except FileExistsError:
            return _read_key_file(path)
        except OSError:  # a file system without hard links
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    log.info("generated VAPID keys for Web Push in %s", path)
    return keys


# ---------------------------------------------------------------------------------------------
# Sending


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
        header = self._vapid.sign({"sub": self._subject, "aud": audience, "exp": expires})
        self._tokens[audience] = (header["Authorization"], expires)
        return header["Authorization"]

    async def send_many(self, deliveries: list[Delivery]) -> list[SendResult | DeliveryError]:
        return list(await asyncio.gather(*(self._send(d) for d in deliveries)))

    async def _send(self, delivery: Delivery) -> SendResult | DeliveryError:
        if self._disabled:
            return DeliveryError(self._disabled, permanent=True)
        if not delivery.push_targets:
            return DeliveryError("no push subscriptions", permanent=True)
        try:
            data = push_payload(delivery)
            urgency = "high" if delivery.type in URGENT_TYPES else "normal"
            outcomes = await asyncio.gather(
                *(self._send_to(target, data, urgency) for target in delivery.push_targets)
            )
        except Exception as exc:
            log.exception("push %s: unexpected error", delivery.notification_id)
            return DeliveryError(f"push failed: {type(exc).__name__}: {exc}")
        return _combine(outcomes)

    async def _send_to(self, target: PushTarget, data: bytes, urgency: str) -> _Outcome:
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
