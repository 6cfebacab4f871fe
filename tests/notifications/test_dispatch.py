"""The dispatcher end to end: status change → rows → real SMTP, Twilio and push peers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from farmstand.accounts.models import User
from farmstand.accounts.roles import Role
from farmstand.app import create_app
from farmstand.db import utcnow
from farmstand.deps import Runtime
from farmstand.notifications.channels.base import PushTarget
from farmstand.notifications.models import NotificationStatus, OrderNotification, PushSubscription
from farmstand.orders import service as orders
from farmstand.orders.states import OrderStatus
from tests import services
from tests.conftest import make_settings
from tests.factories import Factory
from tests.notifications.helpers import by_channel, rows_of
from tests.notifications.peers import PushPeer, SmtpPeer, TwilioPeer


@dataclass
class World:
    runtime: Runtime
    factory: Factory
    client: httpx.AsyncClient
    smtp: SmtpPeer
    twilio: TwilioPeer
    push: PushPeer

    async def dispatch_all(self, *, at: timedelta = timedelta(0)) -> int:
        """Run the dispatcher until nothing is due at now + ``at``."""
        total = 0
        while sent := await self.runtime.dispatcher.run_once(now=utcnow() + at):
            total += sent
        return total

    async def subscribe_push(self, user) -> PushTarget:
        target = self.push.subscribe()
        response = await self.client.post(
            "/api/push/subscriptions",
            json={
                "endpoint": target.endpoint,
                "keys": {"p256dh": target.p256dh, "auth": target.auth},
            },
            headers=await self.factory.headers(user),
        )
        assert response.status_code == 201, response.text
        return target


@pytest.fixture
def world_overrides() -> dict[str, object]:
    return {}


@pytest.fixture
async def world(
    database_url: str, tmp_path: Path, world_overrides: dict[str, object]
) -> AsyncIterator[World]:
    with SmtpPeer() as smtp:
        async with TwilioPeer().running() as twilio, PushPeer().running() as push:
            settings = make_settings(
                database_url,
                tmp_path,
                **{
                    "smtp_host": smtp.host,
                    "smtp_port": smtp.port,
                    "smtp_security": "none",
                    "twilio_account_sid": twilio.account_sid,
                    "twilio_auth_token": twilio.auth_token,
                    "twilio_from_number": "+15005550006",
                    "twilio_api_base": twilio.url,
                    "push_service_hosts": "127.0.0.1",
                    "push_allow_http": True,
                    "notification_retry_base_seconds": 10,
                    **world_overrides,
                },
            )
            app = create_app(settings)
            async with services.lifespan(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://testserver"
                ) as client:
                    runtime: Runtime = app.state.runtime
                    yield World(runtime, Factory(runtime, client), client, smtp, twilio, push)


async def test_ready_reaches_the_customer_on_every_channel(world: World):
    customer = await world.factory.user(name="Carol Baker", phone="+14155550123")
    target = await world.subscribe_push(customer)
    farm = await world.factory.farm(
        name="Green Acre", pickup_location="Stall 12", pickup_instructions="Ask for Rosa"
    )
    order = await world.factory.order(
        status=OrderStatus.READY_FOR_PICKUP, customer=customer, farm=farm
    )

    await world.dispatch_all()

    # Email: to the customer, subject naming the order, both parts linking to it, and the
    # one-click unsubscribe headers.
    ready_mail = [
        m
        for m in world.smtp.messages
        if "ready" in m.message["Subject"].lower() and customer.email in m.rcpt_tos
    ]
    assert len(ready_mail) == 1
    mail = ready_mail[0]
    assert order.order_number in mail.message["Subject"]
    url = f"http://127.0.0.1:8000/orders/{order.id}"
    assert url in mail.text and url in (mail.html or "")
    assert "Stall 12" in mail.text and "Ask for Rosa" in mail.text
    assert mail.message["List-Unsubscribe"].startswith("<http://127.0.0.1:8000/api/notif")
    assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # SMS: to the phone, with Twilio's idempotency key being the notification id.
    rows = by_channel(await rows_of(world.factory, order.id, type="ORDER_READY"))
    [sms] = [
        r
        for r in world.twilio.requests
        if r.form["To"] == "+14155550123" and "ready" in r.form["Body"].lower()
    ]
    assert sms.headers["i-twilio-idempotency-token"] == rows["SMS"].id
    assert order.order_number in sms.form["Body"]
    # Push: decrypted by the push service with the browser's keys.
    [payload] = [
        p for p in world.push.payloads_for(target) if p["notificationId"] == rows["PUSH"].id
    ]
    assert order.order_number in payload["title"] + payload["body"]
    assert payload["url"] == url
    # Every row records the outcome.
    for channel in ("EMAIL", "SMS", "PUSH"):
        assert str(rows[channel].status) == "SENT", rows[channel].last_error
        assert rows[channel].sent_at is not None and rows[channel].provider_message_id
    assert str(rows["IN_APP"].status) == "SENT"


async def test_a_refusing_smtp_server_is_retried_with_backoff_until_it_accepts(world: World):
    order = await world.factory.order(status=OrderStatus.CONFIRMED)
    world.smtp.fail_next("MAIL", "451 4.3.0 Try again later", times=2)

    await world.dispatch_all()  # customer email and the farmer's new-order email both fail
    emails = [r for r in await rows_of(world.factory, order.id) if str(r.channel) == "EMAIL"]
    assert {str(r.status) for r in emails} == {"QUEUED"}
    assert all(r.attempts == 1 and "451" in (r.last_error or "") for r in emails)
    # waits: backoff
    assert all(r.next_attempt_at is not None and r.next_attempt_at > utcnow() for r in emails)
    assert await world.dispatch_all() == 0  # nothing due yet

    await world.dispatch_all(at=timedelta(minutes=5))
    emails = [r for r in await rows_of(world.factory, order.id) if str(r.channel) == "EMAIL"]
    assert {str(r.status) for r in emails} == {"SENT"}
    assert {r.attempts for r in emails} == {2}


@pytest.mark.parametrize(
    "world_overrides", [{"notification_max_attempts": 2, "notification_retry_hours": 0}]
)
async def test_failed_after_the_limit_then_an_admin_retry_delivers(world: World):
    admin = await world.factory.user(Role.ADMIN)
    order = await world.factory.order(status=OrderStatus.CONFIRMED)
    world.smtp.fail_next("MAIL", "451 4.3.0 Try again later", times=4)

    await world.dispatch_all()
    await world.dispatch_all(at=timedelta(hours=2))
    email = by_channel(await rows_of(world.factory, order.id, type="ORDER_CONFIRMED"))["EMAIL"]
    assert str(email.status) == "FAILED" and email.attempts == 2
    assert email.last_error is not None and "451" in email.last_error

    headers = await world.factory.headers(admin)
    failed = await world.client.get("/api/admin/notifications?status=FAILED", headers=headers)
    assert email.id in [n["id"] for n in failed.json()["data"]["items"]]
    retry = await world.client.post(f"/api/admin/notifications/{email.id}/retry", headers=headers)
    assert retry.status_code == 200

    await world.dispatch_all()
    email = by_channel(await rows_of(world.factory, order.id, type="ORDER_CONFIRMED"))["EMAIL"]
    assert str(email.status) == "SENT"
    assert email.meta["previousError"].startswith("451") or "451" in email.meta["previousError"]


def logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(record.getMessage() for record in caplog.records)


async def test_a_refused_address_fails_at_once_without_retrying(
    world: World, caplog: pytest.LogCaptureFixture
):
    customer = await world.factory.user(email="gone@example.test")
    world.smtp.refuse["gone@example.test"] = "550 5.1.1 <gone@example.test> No such user"
    order = await world.factory.order(status=OrderStatus.CONFIRMED, customer=customer)

    await world.dispatch_all()

    email = by_channel(await rows_of(world.factory, order.id, type="ORDER_CONFIRMED"))["EMAIL"]
    assert str(email.status) == "FAILED" and email.attempts == 1
    assert email.last_error is not None and "550" in email.last_error
    # The row keeps the server's words for the delivery log; the log line names nobody.
    assert "failed (attempt 1, final)" in logged(caplog)
    assert "gone@example.test" not in logged(caplog)


async def test_an_invalid_phone_number_fails_and_a_twilio_outage_is_retried(
    world: World, caplog: pytest.LogCaptureFixture
):
    bad = await world.factory.user(phone="+15005550001")
    world.twilio.refuse_number("+15005550001")
    good = await world.factory.user(phone="+14155550199")
    bad_order = await world.factory.order(status=OrderStatus.READY_FOR_PICKUP, customer=bad)
    await world.dispatch_all()
    world.twilio.fail_next(503, None, "Service unavailable")
    good_order = await world.factory.order(status=OrderStatus.READY_FOR_PICKUP, customer=good)
    await world.dispatch_all()

    bad_sms = by_channel(await rows_of(world.factory, bad_order.id, type="ORDER_READY"))["SMS"]
    good_sms = by_channel(await rows_of(world.factory, good_order.id, type="ORDER_READY"))["SMS"]
    assert str(bad_sms.status) == "FAILED"
    assert "+15005550001" in (bad_sms.last_error or "")
    assert "failed (attempt" in logged(caplog) and "5005550001" not in logged(caplog)
    # 503: Twilio's failure, not the message's: no attempt counted, the channel paused.
    assert str(good_sms.status) == "QUEUED" and good_sms.attempts == 0
    assert "503" in (good_sms.last_error or "")
    await world.dispatch_all(at=timedelta(minutes=5))
    good_sms = by_channel(await rows_of(world.factory, good_order.id, type="ORDER_READY"))["SMS"]
    assert str(good_sms.status) == "SENT"


async def test_a_push_subscription_the_service_says_is_gone_is_removed(world: World):
    customer = await world.factory.user()
    target = await world.subscribe_push(customer)
    world.push.respond(target, 410)
    order = await world.factory.order(status=OrderStatus.READY_FOR_PICKUP, customer=customer)

    await world.dispatch_all()

    push = by_channel(await rows_of(world.factory, order.id, type="ORDER_READY"))["PUSH"]
    assert str(push.status) == "FAILED"
    async with world.factory.db.transaction(write=False) as session:
        assert await session.scalar(select(PushSubscription.id)) is None
    later = await world.factory.order(status=OrderStatus.READY_FOR_PICKUP, customer=customer)
    push = by_channel(await rows_of(world.factory, later.id, type="ORDER_READY"))["PUSH"]
    assert str(push.status) == "SKIPPED"


async def test_quiet_hours_hold_an_sms_until_they_end(world: World):
    customer = await world.factory.user(phone="+14155550123")
    async with world.factory.db.transaction() as session:
        user = await session.get(type(customer), customer.id)
        assert user is not None
        user.quiet_hours_start, user.quiet_hours_end = "00:00", "23:59"  # UTC
    order = await world.factory.order(status=OrderStatus.PREPARING, customer=customer)

    # When the order is ready at noon (the next noon: the test does not depend on when it
    # runs; at 23:59 the real clock would be outside these quiet hours)
    real_now = utcnow()
    noon = real_now.replace(hour=12, minute=0, second=0, microsecond=0)
    if noon <= real_now:
        noon += timedelta(days=1)
    async with world.factory.db.transaction() as session:
        farmer = await session.get(User, order.farm_owner_id)
        assert farmer is not None
        for item in order.items:
            await orders.set_item_prepared(session, farmer, order.id, item.id, True)
        await orders.change_status(
            session,
            farmer,
            order.id,
            OrderStatus.READY_FOR_PICKUP,
            policy=world.runtime.order_policy,
            now=noon,
        )

    # Then at noon the SMS waits, untried, and the next day it goes
    await world.dispatch_all(at=noon - real_now)
    sms = by_channel(await rows_of(world.factory, order.id, type="ORDER_READY"))["SMS"]
    assert str(sms.status) == "QUEUED" and sms.attempts == 0  # held back, not tried
    assert sms.next_attempt_at == noon.replace(hour=23, minute=59)

    await world.dispatch_all(at=noon - real_now + timedelta(days=1))
    sms = by_channel(await rows_of(world.factory, order.id, type="ORDER_READY"))["SMS"]
    assert str(sms.status) == "SENT"


async def test_one_smtp_session_carries_a_batch(world: World):
    for _ in range(6):
        await world.factory.order(status=OrderStatus.CONFIRMED)  # 12 emails
    world.smtp.connections = 0
    await world.dispatch_all()
    assert len(world.smtp.messages) == 12
    assert world.smtp.connections <= world.runtime.settings.email_concurrency


METRICS_TOKEN = "metrics-token-for-the-dispatch-tests"


@pytest.mark.parametrize("world_overrides", [{"metrics_token": METRICS_TOKEN}])
async def test_sent_retried_and_failed_are_counted_per_channel(world: World):
    async def emails(result: str) -> float:
        scrape = await world.client.get(
            "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
        )
        assert scrape.status_code == 200
        for family in text_string_to_metric_families(scrape.text):
            for sample in family.samples:
                if sample.name == "farmstand_notifications_total" and sample.labels == {
                    "channel": "EMAIL",
                    "result": result,
                }:
                    return sample.value
        raise AssertionError(f"no EMAIL/{result} series")

    # Given a refused address, a server that fails once, then one that accepts
    refused = await world.factory.user(email="gone@example.test")
    world.smtp.refuse["gone@example.test"] = "550 5.1.1 No such user"
    await world.factory.order(status=OrderStatus.CONFIRMED, customer=refused)
    await world.dispatch_all()
    world.smtp.fail_next("MAIL", "451 4.3.0 Try again later", times=1)
    await world.factory.order(status=OrderStatus.CONFIRMED)
    await world.dispatch_all()
    await world.factory.order(status=OrderStatus.CONFIRMED)
    await world.dispatch_all()

    # Then each outcome is counted under its result
    assert await emails("failed") == 1
    assert await emails("retry") == 1
    assert await emails("sent") >= 1


async def test_a_notification_is_never_claimed_twice_while_its_lease_holds(world: World):
    await world.factory.order(status=OrderStatus.CONFIRMED)
    async with world.runtime.db.transaction() as session:
        claimed = await world.runtime.dispatcher._claim(session, utcnow())
    assert claimed
    async with world.runtime.db.transaction() as session:
        assert await world.runtime.dispatcher._claim(session, utcnow()) == []
        # Once the lease has run out (the worker died), another claim takes it over.
        later = utcnow() + timedelta(seconds=world.runtime.settings.notification_lease_seconds + 1)
        again = await world.runtime.dispatcher._claim(session, later)
    assert {r.id for r in again} == {r.id for r in claimed}


async def test_stopping_a_dispatcher_finishes_and_records_what_it_was_sending(world: World):
    from farmstand.notifications.channels.factory import make_senders
    from farmstand.notifications.dispatcher import Dispatcher

    for _ in range(3):
        await world.factory.order(status=OrderStatus.CONFIRMED)  # 6 emails
    world.smtp.delay = 0.2
    settings = world.runtime.settings
    dispatcher = Dispatcher(world.runtime.db, settings, make_senders(settings))
    dispatcher.start()
    for _ in range(100):
        if world.smtp.messages:
            break
        await asyncio.sleep(0.05)
    # When it is told to stop in the middle of a batch,
    await dispatcher.stop()
    # then nothing is left claimed: what went out is recorded as SENT.
    async with world.runtime.db.transaction(write=False) as session:
        statuses = list(
            await session.scalars(
                select(OrderNotification.status).where(OrderNotification.channel == "EMAIL")
            )
        )
    assert "SENDING" not in statuses
    assert statuses.count(NotificationStatus.SENT) == len(world.smtp.messages) >= 1
