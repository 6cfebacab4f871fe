"""SMS senders against a local Twilio-like API, and the file outbox."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from farmstand.config import Settings, SettingsError
from farmstand.notifications.channels.base import DeliveryError, SendResult
from farmstand.notifications.channels.sms import MAX_BODY_CHARS, FileOutboxSender, TwilioSender
from farmstand.notifications.models import NotificationChannel
from tests.live import free_port
from tests.notifications.peers import (
    TwilioPeer,
    failed,
    make_delivery,
    notification_settings,
    send_once,
)


@pytest.fixture(scope="module")
async def twilio_server() -> AsyncIterator[TwilioPeer]:
    async with TwilioPeer().running() as peer:
        yield peer


@pytest.fixture
def twilio(twilio_server: TwilioPeer) -> TwilioPeer:
    twilio_server.reset()
    return twilio_server


def twilio_settings(tmp_path: Path, peer: TwilioPeer, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "twilio_account_sid": peer.account_sid,
        "twilio_auth_token": peer.auth_token,
        "twilio_from_number": "+15005550006",
        "twilio_api_base": peer.url,
    }
    return notification_settings(tmp_path, **{**values, **overrides})


def sms(**kwargs: Any) -> Any:
    return make_delivery(channel=NotificationChannel.SMS, **kwargs)


async def send(settings: Settings, deliveries: list[Any]) -> list[SendResult | DeliveryError]:
    return await send_once(TwilioSender(settings), deliveries)


async def test_twilio_gets_the_form_auth_and_idempotency_token(
    tmp_path: Path, twilio: TwilioPeer
) -> None:
    # Given a text for a customer with a phone number
    delivery = sms(phone="+15551230001", message="Your order FS-1001 is ready: https://f.example/o")

    # When it is sent
    [result] = await send(twilio_settings(tmp_path, twilio), [delivery])

    # Then Twilio got the right request, and its sid is the provider id
    [request] = twilio.requests
    assert request.account_sid == twilio.account_sid
    assert request.auth == (twilio.account_sid, twilio.auth_token)
    assert request.form == {
        "To": "+15551230001",
        "Body": "Your order FS-1001 is ready: https://f.example/o",
        "From": "+15005550006",
    }
    assert request.headers["i-twilio-idempotency-token"] == delivery.notification_id
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert isinstance(result, SendResult)
    assert result.provider_message_id == twilio.sent[0]["sid"]
    assert result.provider_message_id is not None
    assert result.provider_message_id.startswith("SM")


async def test_a_messaging_service_replaces_the_from_number(
    tmp_path: Path, twilio: TwilioPeer
) -> None:
    settings = twilio_settings(
        tmp_path, twilio, twilio_from_number=None, twilio_messaging_service_sid="MG" + "2" * 32
    )

    [result] = await send(settings, [sms()])

    assert isinstance(result, SendResult)
    form = twilio.requests[0].form
    assert form["MessagingServiceSid"] == "MG" + "2" * 32
    assert "From" not in form


async def test_a_retried_send_reuses_the_idempotency_token(
    tmp_path: Path, twilio: TwilioPeer
) -> None:
    # Given a send whose reply was lost (the dispatcher retries the same notification)
    settings = twilio_settings(tmp_path, twilio)
    delivery = sms()

    [first] = await send(settings, [delivery])
    [second] = await send(settings, [delivery])

    # Then Twilio saw the same key twice and sent one message
    tokens = [r.headers["i-twilio-idempotency-token"] for r in twilio.requests]
    assert tokens == [delivery.notification_id] * 2
    assert len(twilio.sent) == 1
    assert isinstance(first, SendResult) and isinstance(second, SendResult)
    assert first.provider_message_id == second.provider_message_id


async def test_a_batch_is_bounded_by_sms_concurrency_on_shared_connections(
    tmp_path: Path, twilio: TwilioPeer
) -> None:
    # Given a slow Twilio and a concurrency of 2
    twilio.delay = 0.05
    deliveries = [sms(phone=f"+1555123{i:04d}") for i in range(8)]

    results = await send(twilio_settings(tmp_path, twilio, sms_concurrency=2), deliveries)

    # Then all went, in order, never more than two at a time, over at most two connections
    sent = [r for r in results if isinstance(r, SendResult)]
    assert len(sent) == len(results)
    sid_by_number = {m["to"]: m["sid"] for m in twilio.sent}
    assert [r.provider_message_id for r in sent] == [
        sid_by_number[d.recipient.phone] for d in deliveries
    ]
    assert twilio.max_in_flight == 2
    assert len(twilio.client_ports) <= 2


async def test_an_invalid_number_is_permanent(tmp_path: Path, twilio: TwilioPeer) -> None:
    twilio.refuse_number("+15005550001", 400, 21211)
    twilio.refuse_number("+15005550002", 400, 21610, "Attempt to send to unsubscribed recipient")

    results = await send(
        twilio_settings(tmp_path, twilio),
        [sms(phone="+15005550001"), sms(phone="+15005550002"), sms(phone="+15551230009")],
    )

    invalid, unsubscribed = failed(results[0]), failed(results[1])
    assert invalid.permanent and "21211" in str(invalid) and "not a valid phone" in str(invalid)
    assert unsubscribed.permanent and "21610" in str(unsubscribed)
    assert isinstance(results[2], SendResult)


@pytest.mark.parametrize(("status", "code"), [(429, 20429), (500, None), (503, None)])
async def test_busy_or_failing_twilio_is_temporary(
    tmp_path: Path, twilio: TwilioPeer, status: int, code: int | None
) -> None:
    twilio.fail_next(status, code, "Too Many Requests" if status == 429 else "Internal error")

    [result] = await send(twilio_settings(tmp_path, twilio), [sms()])

    error = failed(result)
    assert not error.permanent and error.provider  # the channel pauses; no attempt charged
    assert str(status) in str(error)


async def test_a_queue_full_400_is_temporary(tmp_path: Path, twilio: TwilioPeer) -> None:
    twilio.fail_next(
        400, 21611, "This 'From' number has exceeded the maximum number of queued messages"
    )

    [result] = await send(twilio_settings(tmp_path, twilio), [sms()])

    assert not failed(result).permanent and failed(result).provider


async def test_wrong_credentials_pause_the_channel_with_a_clear_message(
    tmp_path: Path, twilio: TwilioPeer
) -> None:
    settings = twilio_settings(tmp_path, twilio, twilio_auth_token="wrong")

    [result] = await send(settings, [sms()])

    error = failed(result)
    assert error.provider and not error.permanent
    assert "credentials" in str(error) and "FARMSTAND_TWILIO_AUTH_TOKEN" in str(error)
    assert twilio.sent == []


async def test_no_phone_number_is_permanent_without_a_request(
    tmp_path: Path, twilio: TwilioPeer
) -> None:
    [result] = await send(twilio_settings(tmp_path, twilio), [sms(phone=None)])

    error = failed(result)
    assert error.permanent and str(error) == "no phone number"
    assert twilio.requests == []


async def test_an_unreachable_twilio_is_temporary(tmp_path: Path) -> None:
    settings = notification_settings(
        tmp_path,
        twilio_account_sid="AC1",
        twilio_auth_token="t",
        twilio_from_number="+1555",
        twilio_api_base=f"http://127.0.0.1:{free_port()}",
    )

    [result] = await send(settings, [sms()])

    error = failed(result)
    assert not error.permanent and error.provider and "unreachable" in str(error)


async def test_a_long_text_is_cut_to_what_twilio_takes(tmp_path: Path, twilio: TwilioPeer) -> None:
    [result] = await send(twilio_settings(tmp_path, twilio), [sms(message="x" * 2000)])

    assert isinstance(result, SendResult)
    body = twilio.requests[0].form["Body"]
    assert len(body) == MAX_BODY_CHARS and body.endswith("…")


def test_twilio_without_a_sender_number_fails_at_start_up(tmp_path: Path) -> None:
    # The settings refuse it before any sender is built.
    with pytest.raises(SettingsError, match="FARMSTAND_TWILIO_FROM_NUMBER"):
        notification_settings(tmp_path, twilio_account_sid="AC1", twilio_auth_token="t")


# ---------------------------------------------------------------------------------------------
# The file outbox


async def test_the_file_outbox_writes_one_json_file_per_text(tmp_path: Path) -> None:
    settings = notification_settings(tmp_path)
    sender = FileOutboxSender(settings)
    first, second = sms(message="Ready: https://f.example/o/1"), sms(phone="+15551230002")

    results = await sender.send_many([first, second])
    await sender.close()

    assert all(isinstance(r, SendResult) for r in results)
    files = sorted(settings.sms_outbox_dir.glob("*.json"))
    assert len(files) == 2
    assert not list(settings.sms_outbox_dir.glob(".*"))  # no temporary file left
    record = json.loads(files[0].read_text())
    assert files[0].name.endswith(f"-{first.notification_id}.json")
    assert record["to"] == "+15551230001"
    assert record["body"] == "Ready: https://f.example/o/1"
    assert record["notification_id"] == first.notification_id
    assert record["created_at"]
    assert "not sent" in record["note"]
    assert isinstance(results[0], SendResult)
    assert results[0].provider_message_id == f"outbox:{files[0].name}"


async def test_the_file_outbox_needs_a_phone_number(tmp_path: Path) -> None:
    sender = FileOutboxSender(notification_settings(tmp_path))

    [result] = await sender.send_many([sms(phone="  ")])

    assert failed(result).permanent
    assert not (tmp_path / "sms-outbox").exists() or not list((tmp_path / "sms-outbox").iterdir())
