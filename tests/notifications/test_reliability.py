"""Outages, slow sends and old rows: the dispatcher pauses a channel whose provider is down,
keeps its claims while sending, records every result, prunes, and takes delivery reports."""
# The world fixture of test_dispatch is imported, and its name taken by each test's argument.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update

from farmstand.accounts.roles import Role
from farmstand.db import utcnow
from farmstand.notifications import pruning
from farmstand.notifications.channels.base import (
    Delivery,
    DeliveryError,
    ResultCallback,
    SendResult,
)
from farmstand.notifications.channels.smtp import SmtpSender
from farmstand.notifications.dispatcher import Dispatcher
from farmstand.notifications.models import (
    ChannelState,
    NotificationChannel,
    NotificationStatus,
    OrderNotification,
)
from farmstand.notifications.webhooks import twilio_signature
from farmstand.orders.states import OrderStatus
from tests.live import free_port
from tests.notifications.helpers import by_channel, rows_of
from tests.notifications.test_dispatch import World, world, world_overrides  # noqa: F401

METRICS_TOKEN = "metrics-token-for-the-outage-tests"


def smtp_down(world: World) -> Any:
    """Point the dispatcher's email at a port nobody listens on (connection refused); returns
    the real sender, to put back with ``smtp_up``."""
    senders = world.runtime.dispatcher._senders
    real = senders[NotificationChannel.EMAIL]
    dead = world.runtime.settings.model_copy(update={"smtp_port": free_port()})
    senders[NotificationChannel.EMAIL] = SmtpSender(dead)
    return real


def smtp_up(world: World, real: Any) -> None:
    world.runtime.dispatcher._senders[NotificationChannel.EMAIL] = real


async def emails_of(world: World, order_id: str) -> list[OrderNotification]:
    return [r for r in await rows_of(world.factory, order_id) if r.channel == "EMAIL"]


async def email_state(world: World) -> ChannelState | None:
    async with world.runtime.db.transaction(write=False) as session:
        return await session.get(ChannelState, NotificationChannel.EMAIL)


# -- point 9: outages ------------------------------------------------------------------------


async def test_an_smtp_outage_pauses_email_charges_no_attempt_and_sends_after_it(world: World):
    # Given queued emails and an SMTP server that is down (connection refused)
    order = await world.factory.order(status=OrderStatus.CONFIRMED)  # 2 emails
    real = smtp_down(world)

    # When dispatchers run every minute through a 16-minute outage
    await world.dispatch_all()
    state = await email_state(world)
    assert state is not None and state.failures == 1 and state.paused_until is not None
    assert "connection" in (state.last_error or "").lower()
    other = Dispatcher(world.runtime.db, world.runtime.settings, {}, name="another-worker")
    assert await other.run_once() == 0  # the pause holds in every worker
    for minute in range(1, 17):
        await world.dispatch_all(at=timedelta(minutes=minute))
        for row in await emails_of(world, order.id):
            # Then no email is charged an attempt or given up on
            assert str(row.status) == "QUEUED" and row.attempts == 0, row.last_error
    state = await email_state(world)
    assert state is not None and state.failures > 2  # probed again and again, pausing longer

    # When the server is back, the next probe after the pause finds it and all go out
    smtp_up(world, real)
    await world.dispatch_all(at=timedelta(minutes=40))
    rows = await emails_of(world, order.id)
    assert {str(r.status) for r in rows} == {"SENT"} and {r.attempts for r in rows} == {1}
    assert len(world.smtp.messages) == 2
    state = await email_state(world)
    assert state is not None and state.failures == 0 and state.paused_until is None


async def test_a_server_closing_on_us_pauses_email_instead_of_failing_the_batch(world: World):
    order = await world.factory.order(status=OrderStatus.CONFIRMED)
    world.smtp.fail_next("MAIL", "421 4.7.0 Too many errors, closing", times=10, close=True)

    await world.dispatch_all()

    rows = await emails_of(world, order.id)
    assert {str(r.status) for r in rows} == {"QUEUED"} and {r.attempts for r in rows} == {0}
    state = await email_state(world)
    assert state is not None and state.failures == 1


@pytest.mark.parametrize("world_overrides", [{"notification_max_attempts": 2}])
async def test_a_message_failing_on_its_own_is_retried_for_the_retry_window(world: World):
    # Given a server that keeps deferring (451) the emails of this order
    order = await world.factory.order(status=OrderStatus.CONFIRMED)
    world.smtp.fail_next("MAIL", "451 4.3.0 Try again later", times=20)

    # When it has been tried past notification_max_attempts but within 24 hours
    for hours in (0, 2, 5, 12, 23):
        await world.dispatch_all(at=timedelta(hours=hours))
    rows = await emails_of(world, order.id)
    # Then it is still queued, not given up
    assert {str(r.status) for r in rows} == {"QUEUED"}
    assert all(r.attempts == 5 for r in rows)

    # And after the window, the next failure is final
    await world.dispatch_all(at=timedelta(hours=25))
    rows = await emails_of(world, order.id)
    assert {str(r.status) for r in rows} == {"FAILED"}


@pytest.mark.parametrize("world_overrides", [{"metrics_token": METRICS_TOKEN}])
async def test_a_paused_channel_and_failed_rows_show_in_admin_stats_and_metrics(world: World):
    admin = await world.factory.user(Role.ADMIN)
    order = await world.factory.order(status=OrderStatus.CONFIRMED)
    smtp_down(world)
    await world.dispatch_all()
    async with world.runtime.db.transaction() as session:
        row = by_channel(await rows_of(world.factory, order.id, type="NEW_ORDER"))["EMAIL"]
        await session.execute(
            update(OrderNotification)
            .where(OrderNotification.id == row.id)
            .values(status=NotificationStatus.FAILED)
        )

    stats = await world.client.get(
        "/api/admin/notifications/stats", headers=await world.factory.headers(admin)
    )
    assert stats.status_code == 200, stats.text
    data = stats.json()["data"]
    assert data["channels"]["EMAIL"]["paused"] is True
    assert "connection" in data["channels"]["EMAIL"]["lastError"].lower()
    assert data["counts"]["EMAIL"]["FAILED"] == 1

    scrape = await world.client.get(
        "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    samples = {
        (s.name, s.labels.get("channel")): s.value
        for family in text_string_to_metric_families(scrape.text)
        for s in family.samples
    }
    assert samples[("farmstand_notification_channel_paused", "EMAIL")] == 1
    assert samples[("farmstand_notification_channel_paused", "SMS")] == 0
    assert samples[("farmstand_notifications_failed_rows", "EMAIL")] == 1


async def test_an_admin_requeues_the_failed_notifications_of_a_channel_and_time_range(
    world: World,
):
    admin = await world.factory.user(Role.ADMIN)
    old = await world.factory.order(status=OrderStatus.CONFIRMED)
    recent = await world.factory.order(status=OrderStatus.CONFIRMED)
    await world.dispatch_all()
    now = utcnow()
    async with world.runtime.db.transaction() as session:
        await session.execute(
            update(OrderNotification)
            .where(OrderNotification.channel != NotificationChannel.IN_APP)
            .values(status=NotificationStatus.FAILED, attempts=6, last_error="outage")
        )
        await session.execute(
            update(OrderNotification)
            .where(OrderNotification.order_id == old.id)
            .values(created_at=now - timedelta(days=2))
        )
    headers = await world.factory.headers(admin)

    # Only admins
    customer = await world.factory.user()
    refused = await world.client.post(
        "/api/admin/notifications/requeue",
        json={"channel": "EMAIL"},
        headers=await world.factory.headers(customer),
    )
    assert refused.status_code == 403
    bad = await world.client.post(
        "/api/admin/notifications/requeue",
        json={"since": now.isoformat(), "until": (now - timedelta(hours=1)).isoformat()},
        headers=headers,
    )
    assert bad.status_code == 422

    # When the emails of the last day are re-queued
    since = (now - timedelta(days=1)).isoformat()
    response = await world.client.post(
        "/api/admin/notifications/requeue",
        json={"channel": "EMAIL", "since": since},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {"requeued": 2}

    # Then those are sent again; the older ones and other channels stay FAILED
    await world.dispatch_all()
    recent_emails = await emails_of(world, recent.id)
    assert {str(r.status) for r in recent_emails} == {"SENT"}
    assert {str(r.status) for r in await emails_of(world, old.id)} == {"FAILED"}


# -- point 10: slow sends and leases ---------------------------------------------------------


class SlowSender:
    """An email sender taking ``delay`` seconds per message (each in turn), counting sends."""

    channel = NotificationChannel.EMAIL

    def __init__(self, delay: float, sent: list[str], *, first_fast: bool = False) -> None:
        self.delay = delay
        self.sent = sent
        self.first_fast = first_fast
        self.started = asyncio.Event()

    async def send_many(
        self, deliveries: list[Delivery], on_result: ResultCallback | None = None
    ) -> list[SendResult | DeliveryError]:
        self.started.set()
        results: list[SendResult | DeliveryError] = []
        for index, delivery in enumerate(deliveries):
            await asyncio.sleep(0.05 if self.first_fast and index == 0 else self.delay)
            self.sent.append(delivery.notification_id)
            result = SendResult(provider_message_id=f"<{delivery.notification_id}@farmstand>")
            if on_result is not None:
                on_result(index, result)
            results.append(result)
        return results

    async def close(self) -> None:
        pass


# Each send (1.5 s) outlasts the lease; renewed every third of it, a renewal has 0.8 s to land
# before the lease ends (0.4 s at a 0.6 s lease was too little on a machine busy with a whole
# parallel run: the second dispatcher claimed and sent again).
@pytest.mark.parametrize("world_overrides", [{"notification_lease_seconds": 1.2}])
async def test_a_send_slower_than_its_lease_is_not_sent_again_by_another_dispatcher(
    world: World,
):
    # Given one email and two dispatchers whose sender takes longer than the lease
    customer = await world.factory.user()
    await world.factory.order(status=OrderStatus.COMPLETED, customer=customer)
    sent: list[str] = []
    settings = world.runtime.settings
    first_sender = SlowSender(1.5, sent)
    first = Dispatcher(world.runtime.db, settings, {NotificationChannel.EMAIL: first_sender})
    second = Dispatcher(
        world.runtime.db, settings, {NotificationChannel.EMAIL: SlowSender(1.5, sent)}
    )

    # When the first is sending and the second keeps looking for due rows well past the lease
    sending = asyncio.create_task(first.run_once())
    await asyncio.wait_for(first_sender.started.wait(), 5)
    for _ in range(30):
        await second.run_once()
        await asyncio.sleep(0.1)
    await sending
    while await second.run_once():
        pass

    # Then each email went out once, and is recorded SENT
    assert sent and len(sent) == len(set(sent))
    async with world.runtime.db.transaction(write=False) as session:
        statuses = set(
            await session.scalars(
                select(OrderNotification.status).where(OrderNotification.channel == "EMAIL")
            )
        )
    assert statuses == {NotificationStatus.SENT}


async def test_a_result_is_recorded_even_when_the_row_was_claimed_again(world: World):
    # Given a dispatcher in the middle of a slow send
    await world.factory.order(status=OrderStatus.COMPLETED)
    sent: list[str] = []
    sender = SlowSender(0.5, sent)
    dispatcher = Dispatcher(
        world.runtime.db, world.runtime.settings, {NotificationChannel.EMAIL: sender}
    )
    sending = asyncio.create_task(dispatcher.run_once())
    await asyncio.wait_for(sender.started.wait(), 5)

    # When its claim moves to another worker meanwhile (its lease ran out)
    async with world.runtime.db.transaction() as session:
        await session.execute(
            update(OrderNotification)
            .where(OrderNotification.status == NotificationStatus.SENDING)
            .values(claimed_by="someone-else")
        )
    await sending

    # Then what it sent is still recorded: the row is not left to be sent again
    async with world.runtime.db.transaction(write=False) as session:
        rows = list(
            await session.scalars(select(OrderNotification).where(OrderNotification.id.in_(sent)))
        )
    assert rows and {str(r.status) for r in rows} == {"SENT"}


async def test_each_result_is_recorded_as_it_completes(world: World):
    # Given two emails, the first sent at once and the second slowly
    await world.factory.order(status=OrderStatus.CONFIRMED)
    sent: list[str] = []
    sender = SlowSender(1.0, sent, first_fast=True)
    dispatcher = Dispatcher(
        world.runtime.db, world.runtime.settings, {NotificationChannel.EMAIL: sender}
    )

    sending = asyncio.create_task(dispatcher.run_once())
    for _ in range(100):
        if sent:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)  # well past the coalescing window, well before the second

    # Then the first is SENT while the second is still being sent
    async with world.runtime.db.transaction(write=False) as session:
        status = await session.scalar(
            select(OrderNotification.status).where(OrderNotification.id == sent[0])
        )
    assert status == NotificationStatus.SENT
    assert len(sent) == 1
    await sending


# -- point 11: retention and delivery reports ------------------------------------------------


@pytest.mark.parametrize("world_overrides", [{"notification_retention_days": 30}])
async def test_old_sent_and_failed_rows_are_pruned_in_batches(
    world: World, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(pruning, "PRUNE_BATCH", 3)
    old = await world.factory.order(status=OrderStatus.CONFIRMED)
    recent = await world.factory.order(status=OrderStatus.CONFIRMED)
    await world.dispatch_all()
    stale = utcnow() - timedelta(days=31)
    async with world.runtime.db.transaction() as session:
        await session.execute(
            update(OrderNotification)
            .where(OrderNotification.order_id == old.id)
            .values(created_at=stale)
        )
        # An old row still queued is never pruned.
        queued = by_channel(await rows_of(world.factory, old.id, type="NEW_ORDER"))["EMAIL"]
        await session.execute(
            update(OrderNotification)
            .where(OrderNotification.id == queued.id)
            .values(status=NotificationStatus.QUEUED, next_attempt_at=utcnow() + timedelta(days=1))
        )
    before = await rows_of(world.factory, old.id)

    removed = await world.runtime.dispatcher.prune()

    assert removed == len(before) - 1 and removed > 3  # more than one batch
    assert [r.id for r in await rows_of(world.factory, old.id)] == [queued.id]
    assert len(await rows_of(world.factory, recent.id)) > 0


PUBLIC = "https://farmstand.example"


def signed(token: str, url: str, form: dict[str, str]) -> dict[str, str]:
    return {"X-Twilio-Signature": twilio_signature(token, url, form.items())}


def test_the_signature_matches_twilios_documented_example():
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675309",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert twilio_signature("12345", url, params.items()) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="


@pytest.mark.parametrize("world_overrides", [{"public_base_url": PUBLIC}])
async def test_twilio_delivery_reports_are_verified_and_recorded(world: World):
    # Given an SMS sent with a status callback
    customer = await world.factory.user(phone="+14155550123")
    farmer = await world.factory.user(Role.FARMER)
    farm = await world.factory.farm(owner=farmer)
    order = await world.factory.order(
        status=OrderStatus.READY_FOR_PICKUP, customer=customer, farm=farm
    )
    await world.dispatch_all()
    sms = by_channel(await rows_of(world.factory, order.id, type="ORDER_READY"))["SMS"]
    [request] = [r for r in world.twilio.requests if r.form["To"] == "+14155550123"]
    callback = request.form["StatusCallback"]
    assert callback == f"{PUBLIC}/api/webhooks/twilio/status?n={sms.id}"
    path = urlsplit(callback)
    target = f"{path.path}?{path.query}"
    token = world.twilio.auth_token
    form = {
        "MessageSid": sms.provider_message_id or "",
        "MessageStatus": "undelivered",
        "ErrorCode": "30003",
        "AccountSid": world.twilio.account_sid,
    }

    # Unsigned, wrongly signed, or signed for another URL: refused
    for headers in (
        {},
        {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"},
        signed(token, f"{PUBLIC}/api/webhooks/twilio/status?n=other", form),
        signed("another-token", callback, form),
    ):
        refused = await world.client.post(target, data=form, headers=headers)
        assert refused.status_code == 403, refused.text
    sms = by_channel(await rows_of(world.factory, order.id, type="ORDER_READY"))["SMS"]
    assert sms.delivery_status is None

    # Signed by Twilio: recorded on the row, and shown in the delivery log
    response = await world.client.post(target, data=form, headers=signed(token, callback, form))
    assert response.status_code == 204, response.text
    sms = by_channel(await rows_of(world.factory, order.id, type="ORDER_READY"))["SMS"]
    assert str(sms.status) == "SENT"
    assert sms.delivery_status == "UNDELIVERED" and sms.delivery_error_code == "30003"
    log = await world.client.get(
        f"/api/orders/{order.id}/notifications", headers=await world.factory.headers(farmer)
    )
    [entry] = [e for e in log.json()["data"] if e["id"] == sms.id]
    assert entry["deliveryStatus"] == "UNDELIVERED" and entry["deliveryErrorCode"] == "30003"

    # A later "delivered" report updates it; intermediate steps are ignored
    for status in ("sent", "delivered"):
        report: dict[str, Any] = {**form, "MessageStatus": status}
        report.pop("ErrorCode")
        ok = await world.client.post(target, data=report, headers=signed(token, callback, report))
        assert ok.status_code == 204
    sms = by_channel(await rows_of(world.factory, order.id, type="ORDER_READY"))["SMS"]
    assert sms.delivery_status == "DELIVERED" and sms.delivery_error_code is None


async def test_without_a_public_url_no_status_callback_is_requested(world: World):
    customer = await world.factory.user(phone="+14155550123")
    await world.factory.order(status=OrderStatus.READY_FOR_PICKUP, customer=customer)
    await world.dispatch_all()
    [request] = [r for r in world.twilio.requests if r.form["To"] == "+14155550123"]
    assert "StatusCallback" not in request.form
