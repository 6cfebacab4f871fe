"""Web Push against a local push service that verifies VAPID and decrypts the payload."""

from __future__ import annotations

import json
import re
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from py_vapid import Vapid

from farmstand.config import Settings
from farmstand.notifications.channels import vapid as vapid_module
from farmstand.notifications.channels.base import DeliveryError, PushTarget, SendResult
from farmstand.notifications.channels.push import MAX_PAYLOAD_BYTES, WebPushSender, push_topic
from farmstand.notifications.channels.vapid import (
    VAPID_FILE_NAME,
    VapidKeyError,
    VapidKeys,
    VapidKeysMissing,
    b64url_decode,
    generate_vapid_keys,
    vapid_keys,
)
from farmstand.notifications.models import NotificationChannel, NotificationType
from tests.live import free_port
from tests.notifications.peers import (
    PushPeer,
    failed,
    make_delivery,
    notification_settings,
    send_once,
)

KEYS = generate_vapid_keys()


@pytest.fixture(scope="module")
async def push_server() -> AsyncIterator[PushPeer]:
    async with PushPeer().running() as peer:
        yield peer


@pytest.fixture
def service(push_server: PushPeer) -> PushPeer:
    push_server.reset()
    push_server.expected_public_key = KEYS.public_key
    return push_server


def push_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "vapid_private_key": KEYS.private_key,
        "vapid_public_key": KEYS.public_key,
        "vapid_subject": "mailto:ops@farm.example",
    }
    return notification_settings(tmp_path, **{**values, **overrides})


def push_delivery(*targets: PushTarget, **kwargs: Any) -> Any:
    return make_delivery(channel=NotificationChannel.PUSH, push_targets=targets, **kwargs)


async def send(settings: Settings, deliveries: list[Any]) -> list[SendResult | DeliveryError]:
    return await send_once(WebPushSender(settings), deliveries)


async def test_the_payload_is_encrypted_and_vapid_signed(tmp_path: Path, service: PushPeer) -> None:
    # Given a browser subscribed with our public key
    target = service.subscribe()
    delivery = push_delivery(
        target,
        type=NotificationType.ORDER_READY,
        title="Order ready",
        message="FS-1001 is ready for pickup",
        url="https://f.example/o/1",
        order_id="o-42",
    )

    # When a notification is pushed
    [result] = await send(push_settings(tmp_path), [delivery])

    # Then the service verified the VAPID token and decrypted exactly our JSON
    assert service.errors == []
    assert isinstance(result, SendResult)
    assert result.expired_push_targets == ()
    assert result.provider_message_id and result.provider_message_id.startswith(service.url)
    [received] = service.received
    assert received.payload == {
        "title": "Order ready",
        "body": "FS-1001 is ready for pickup",
        "url": "https://f.example/o/1",
        "tag": "order-o-42",
        "notificationId": delivery.notification_id,
    }
    assert received.claims["sub"] == "mailto:ops@farm.example"
    assert received.claims["aud"] == service.url
    assert received.headers["urgency"] == "high"
    assert received.headers["ttl"] == "86400"
    assert received.headers["content-encoding"] == "aes128gcm"
    assert received.headers["authorization"].startswith("vapid t=")
    # A retried send replaces, not repeats, a message waiting for an offline browser.
    assert received.headers["topic"] == push_topic(delivery.notification_id)
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,32}", received.headers["topic"])


async def test_urgency_is_normal_for_other_types(tmp_path: Path, service: PushPeer) -> None:
    target = service.subscribe()

    await send(
        push_settings(tmp_path),
        [
            push_delivery(target, type=NotificationType.ORDER_COMPLETED),
            push_delivery(target, type=NotificationType.NEW_ORDER),
        ],
    )

    assert service.errors == []
    urgencies = {r.payload["notificationId"]: r.headers["urgency"] for r in service.received}
    assert sorted(urgencies.values()) == ["high", "normal"]


async def test_every_subscription_of_the_recipient_gets_it(
    tmp_path: Path, service: PushPeer
) -> None:
    phone, laptop = service.subscribe(), service.subscribe()

    [result] = await send(push_settings(tmp_path), [push_delivery(phone, laptop)])

    assert isinstance(result, SendResult)
    assert len(service.payloads_for(phone)) == 1
    assert len(service.payloads_for(laptop)) == 1


async def test_a_gone_subscription_is_listed_as_expired(tmp_path: Path, service: PushPeer) -> None:
    # Given one live and one unsubscribed browser
    live, gone = service.subscribe(), service.subscribe()
    service.respond(gone, 410)

    [result] = await send(push_settings(tmp_path), [push_delivery(live, gone)])

    # Then the push counts as sent, and the dead subscription is reported for deletion
    assert isinstance(result, SendResult)
    assert result.expired_push_targets == (gone.id,)


async def test_all_subscriptions_gone_is_a_permanent_failure(
    tmp_path: Path, service: PushPeer
) -> None:
    first, second = service.subscribe(), service.subscribe()
    service.respond(first, 410)
    service.respond(second, 404)

    [result] = await send(push_settings(tmp_path), [push_delivery(first, second)])

    error = failed(result)
    assert error.permanent
    assert set(error.expired_push_targets) == {first.id, second.id}


async def test_a_failing_service_is_temporary_and_still_reports_expired(
    tmp_path: Path, service: PushPeer
) -> None:
    failing, gone = service.subscribe(), service.subscribe()
    service.respond(failing, 500)
    service.respond(gone, 410)

    [result] = await send(push_settings(tmp_path), [push_delivery(failing, gone)])

    error = failed(result)
    assert not error.permanent
    assert error.expired_push_targets == (gone.id,)
    assert "500" in str(error)


@pytest.mark.parametrize("status", [429, 502])
async def test_rate_limits_and_server_errors_are_temporary(
    tmp_path: Path, service: PushPeer, status: int
) -> None:
    target = service.subscribe()
    service.fail_next(status)

    [result] = await send(push_settings(tmp_path), [push_delivery(target)])

    assert not failed(result).permanent


@pytest.mark.parametrize("status", [400, 403, 413])
async def test_refusals_are_permanent_with_the_service_message(
    tmp_path: Path, service: PushPeer, status: int
) -> None:
    target = service.subscribe()
    service.fail_next(status)

    [result] = await send(push_settings(tmp_path), [push_delivery(target)])

    error = failed(result)
    assert error.permanent
    assert str(status) in str(error) and "service failure" in str(error)
    assert error.expired_push_targets == ()


async def test_a_token_signed_with_another_key_is_refused(
    tmp_path: Path, service: PushPeer
) -> None:
    # Given subscriptions made with a different application server key
    service.expected_public_key = generate_vapid_keys().public_key
    target = service.subscribe()

    [result] = await send(push_settings(tmp_path), [push_delivery(target)])

    assert failed(result).permanent  # 401
    assert service.errors and "k is not the key" in service.errors[0]


async def test_an_unreachable_service_is_temporary(tmp_path: Path) -> None:
    # (any P-256 public key and 16 bytes of auth make usable subscription keys)
    p256dh, auth = generate_vapid_keys().public_key, "AAAAAAAAAAAAAAAAAAAAAA"
    target = PushTarget("s-1", f"http://127.0.0.1:{free_port()}/push/s-1", p256dh, auth)

    [result] = await send(push_settings(tmp_path), [push_delivery(target)])

    error = failed(result)
    assert not error.permanent and "unreachable" in str(error)


async def test_unusable_subscription_keys_are_treated_as_gone(
    tmp_path: Path, service: PushPeer
) -> None:
    good = service.subscribe()
    bad = PushTarget("bad", f"{service.url}/push/bad", "bm90IGEga2V5", "c2hvcnQ")

    [result] = await send(push_settings(tmp_path), [push_delivery(good, bad)])

    assert isinstance(result, SendResult)
    assert result.expired_push_targets == ("bad",)
    assert service.requests == 1


async def test_no_subscriptions_is_permanent(tmp_path: Path) -> None:
    [result] = await send(push_settings(tmp_path), [push_delivery()])

    assert failed(result).permanent


async def test_a_long_message_is_shortened_to_fit(tmp_path: Path, service: PushPeer) -> None:
    target = service.subscribe()

    [result] = await send(
        push_settings(tmp_path), [push_delivery(target, message="Très long ✓ " * 1000)]
    )

    assert isinstance(result, SendResult)
    [received] = service.received
    body = received.payload["body"]
    assert body.endswith("…") and body.startswith("Très long ✓")
    assert (
        len(json.dumps(received.payload, ensure_ascii=False, separators=(",", ":")).encode())
        <= MAX_PAYLOAD_BYTES
    )


async def test_requests_are_bounded_by_push_concurrency(tmp_path: Path, service: PushPeer) -> None:
    service.delay = 0.05
    targets = [service.subscribe() for _ in range(3)]
    deliveries = [push_delivery(*targets) for _ in range(3)]  # 9 requests

    results = await send(push_settings(tmp_path, push_concurrency=2), deliveries)

    assert all(isinstance(r, SendResult) for r in results)
    assert service.max_in_flight == 2
    assert len(service.client_ports) <= 2  # connections reused
    assert len(service.received) == 9


async def test_the_vapid_token_is_reused_for_the_same_service(
    tmp_path: Path, service: PushPeer
) -> None:
    target = service.subscribe()
    sender = WebPushSender(push_settings(tmp_path))
    try:
        await sender.send_many([push_delivery(target)])
        await sender.send_many([push_delivery(target)])
    finally:
        await sender.close()

    first, second = (r.headers["authorization"] for r in service.received)
    assert first == second


async def test_production_without_keys_fails_pushes_saying_why(
    tmp_path: Path, service: PushPeer
) -> None:
    settings = notification_settings(tmp_path, environment="production")
    target = service.subscribe()

    [result] = await send(settings, [push_delivery(target)])

    error = failed(result)
    assert error.permanent and "FARMSTAND_VAPID_PRIVATE_KEY" in str(error)
    assert service.requests == 0


async def test_production_refuses_plain_http_endpoints(tmp_path: Path, service: PushPeer) -> None:
    settings = push_settings(tmp_path, environment="production")
    target = service.subscribe()

    [result] = await send(settings, [push_delivery(target)])

    assert failed(result).permanent and "https" in str(result)
    assert service.requests == 0


def test_a_bad_vapid_subject_fails_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="FARMSTAND_VAPID_SUBJECT"):
        WebPushSender(push_settings(tmp_path, vapid_subject="ops at farm"))


# ---------------------------------------------------------------------------------------------
# VAPID keys


def assert_valid_public_key(public_key: str) -> None:
    raw = b64url_decode(public_key)
    assert len(raw) == 65 and raw[0] == 4  # an uncompressed P-256 point
    assert "=" not in public_key and "+" not in public_key and "/" not in public_key


def test_development_keys_are_generated_once_and_kept(tmp_path: Path) -> None:
    # Given no configured keys
    settings = notification_settings(tmp_path)

    # When the keys are asked for, then again by another process (no memory of the first)
    first = vapid_keys(settings)
    vapid_module._vapid_keys.cache_clear()
    second = vapid_keys(notification_settings(tmp_path))

    # Then they were generated into a private file and read back from it
    path = tmp_path / VAPID_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {
        "private_key": first.private_key,
        "public_key": first.public_key,
    }
    assert second == first
    assert_valid_public_key(first.public_key)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_configured_keys_are_used_and_checked(tmp_path: Path) -> None:
    assert vapid_keys(push_settings(tmp_path)) == KEYS
    assert not (tmp_path / VAPID_FILE_NAME).exists()

    other = generate_vapid_keys()
    with pytest.raises(VapidKeyError, match="does not match"):
        vapid_keys(push_settings(tmp_path, vapid_public_key=other.public_key))
    with pytest.raises(VapidKeyError, match="FARMSTAND_VAPID_PRIVATE_KEY"):
        vapid_keys(push_settings(tmp_path, vapid_private_key="not-a-key"))
    with pytest.raises(VapidKeyError, match="PRIVATE_KEY is not"):
        vapid_keys(push_settings(tmp_path, vapid_private_key=None))


def test_a_pem_private_key_is_accepted_and_its_public_key_derived(tmp_path: Path) -> None:
    vapid = Vapid()
    vapid.generate_keys()
    pem = vapid.private_pem().decode()

    keys = vapid_keys(push_settings(tmp_path, vapid_private_key=pem, vapid_public_key=None))

    assert keys.private_key == pem
    assert_valid_public_key(keys.public_key)
    assert keys.env_lines()[1] == f"FARMSTAND_VAPID_PUBLIC_KEY={keys.public_key}"


def test_production_needs_configured_keys(tmp_path: Path) -> None:
    with pytest.raises(VapidKeysMissing, match="farmstand push keys"):
        vapid_keys(notification_settings(tmp_path, environment="production"))
    assert not (tmp_path / VAPID_FILE_NAME).exists()


def test_generated_keys_print_as_settings() -> None:
    keys = generate_vapid_keys()

    private_line, public_line = keys.env_lines()

    assert private_line == f"FARMSTAND_VAPID_PRIVATE_KEY={keys.private_key}"
    assert public_line == f"FARMSTAND_VAPID_PUBLIC_KEY={keys.public_key}"
    assert len(b64url_decode(keys.private_key)) == 32
    assert_valid_public_key(keys.public_key)
    assert VapidKeys(keys.private_key, keys.public_key) == keys
