"""The admin console's notification pages through the app: failed notifications (what is
shown and what never is), retrying one or a channel's, and the development mailbox (only
names from its own listing are opened)."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from farmstand.accounts.roles import Role
from farmstand.app import create_app
from farmstand.config import Settings
from farmstand.notifications.channels.mailbox import open_mail, timestamped_name
from farmstand.notifications.models import (
    NotificationChannel,
    NotificationStatus,
    NotificationType,
    OrderNotification,
)
from tests import services
from tests.conftest import make_settings
from tests.factories import Factory
from tests.web.test_pages import sign_in, token_of


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url  # the services behind these pages are tested on both databases


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path)


async def as_admin(client: httpx.AsyncClient, factory: Factory) -> str:
    admin = await factory.user(Role.ADMIN)
    await sign_in(client, admin.email)
    return token_of(await client.get("/admin"))


async def failed(factory: Factory, order_id: str | None, channel: NotificationChannel) -> str:
    async with factory.db.transaction() as session:
        row = OrderNotification(
            order_id=order_id,
            type=NotificationType.ORDER_READY,
            channel=channel,
            title="Secret title",
            message="Secret body with https://example.test/orders/link",
            meta={},
            status=NotificationStatus.FAILED,
            attempts=7,
            last_error="550 mailbox unavailable",
        )
        session.add(row)
        await session.flush()
        return row.id


async def status_of(factory: Factory, notification_id: str) -> NotificationStatus:
    async with factory.db.transaction(write=False) as session:
        status = await session.scalar(
            select(OrderNotification.status).where(OrderNotification.id == notification_id)
        )
    assert status is not None
    return status


async def test_failed_notifications_show_what_an_admin_needs_and_retry(
    client: httpx.AsyncClient, factory: Factory
):
    farm = await factory.farm(name="Hill Farm")
    order = await factory.order(farm=farm)
    email = await failed(factory, order.id, NotificationChannel.EMAIL)
    sms = await failed(factory, order.id, NotificationChannel.SMS)
    token = await as_admin(client, factory)

    page = await client.get("/admin/notifications")
    assert page.status_code == 200
    assert f"Order {order.order_number}" in page.text and "Hill Farm" in page.text
    assert "7 attempts" in page.text and "550 mailbox unavailable" in page.text
    assert "Secret" not in page.text and "example.test" not in page.text  # never bodies, links
    only_sms = await client.get("/admin/notifications?channel=SMS")
    assert f'data-id="{sms}"' in only_sms.text and f'data-id="{email}"' not in only_sms.text
    assert (await client.get("/admin/notifications?channel=PIGEON")).status_code == 422

    reply = await client.post(
        f"/admin/notifications/{email}/retry", data={"csrf_token": token, "channel": "EMAIL"}
    )
    assert reply.status_code == 303
    assert reply.headers["location"] == "/admin/notifications?retried=1&channel=EMAIL"
    assert await status_of(factory, email) is NotificationStatus.QUEUED
    again = await client.post(f"/admin/notifications/{email}/retry", data={"csrf_token": token})
    assert again.status_code == 409  # queued already: nothing to retry

    reply = await client.post(
        "/admin/notifications/requeue", data={"csrf_token": token, "channel": "SMS"}
    )
    assert reply.headers["location"] == "/admin/notifications?requeued=1&channel=SMS"
    assert await status_of(factory, sms) is NotificationStatus.QUEUED
    page = await client.get("/admin/notifications?requeued=1&channel=SMS")
    assert "1 failed notification queued again." in page.text
    assert "No failed notifications on this channel" in page.text


def write_mail(folder: Path, subject: str, notification_id: str) -> str:
    message = EmailMessage()
    message["To"] = "carol@example.test"
    message["From"] = "farmstand@example.test"
    message["Subject"] = subject
    message["Date"] = "Tue, 03 Mar 2026 10:00:00 +0000"
    message.set_content("Your order is ready.\nCome and collect it.")
    message.add_alternative("<p onclick='steal()'>Your order is <b>ready</b></p>", subtype="html")
    folder.mkdir(parents=True, exist_ok=True)
    name = timestamped_name(notification_id, ".eml")
    (folder / name).write_bytes(message.as_bytes())
    return name


async def test_the_mailbox_lists_and_opens_emails_and_nothing_else(
    client: httpx.AsyncClient, factory: Factory, settings: Settings
):
    name = write_mail(settings.mailbox_dir, "Your order is ready", "n-1")
    (settings.data_dir / "secret.eml").write_text("Subject: not in the mailbox\n\nsecret")
    await as_admin(client, factory)

    listing = await client.get("/admin/mailbox")
    assert "Your order is ready" in listing.text and "carol@example.test" in listing.text
    mail = await client.get(f"/admin/mailbox/{name}")
    assert mail.status_code == 200 and "Come and collect it." in mail.text
    # The HTML part only as escaped source, never as markup of our page.
    assert "&lt;p onclick=" in mail.text and "<p onclick" not in mail.text
    for path in [
        "/admin/mailbox/..%2Fsecret.eml",
        "/admin/mailbox/%2E%2E%2Fsecret.eml",
        "/admin/mailbox/..%5Csecret.eml",
        "/admin/mailbox/secret.eml",
        "/admin/mailbox/farmstand.db",
    ]:
        reply = await client.get(path)
        assert reply.status_code == 404, path
        assert "secret" not in reply.text.replace("secret.eml", "")


def test_open_mail_opens_only_names_from_the_listing(tmp_path: Path):
    folder = tmp_path / "mailbox"
    name = write_mail(folder, "Hello", "n-2")
    (tmp_path / "20260101T000000.000000Z-x.eml").write_text("outside")
    assert open_mail(folder, name) is not None
    for bad in [
        f"../mailbox/{name}",
        str(folder / name),
        "../20260101T000000.000000Z-x.eml",
        "20260101T000000.000000Z-x.eml",  # a valid name, but not in the listing
        "..",
        "",
    ]:
        assert open_mail(folder, bad) is None, bad


async def test_with_smtp_configured_the_mailbox_page_shows_nothing(sqlite_url: str, tmp_path: Path):
    write_mail(tmp_path / "smtp" / "mailbox", "Should not show", "n-3")
    app = create_app(make_settings(sqlite_url, tmp_path / "smtp", smtp_host="smtp.example.test"))
    async with services.lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            admin = await Factory(app.state.runtime).user(Role.ADMIN)
            await sign_in(http, admin.email)
            page = await http.get("/admin/mailbox")
            assert "An SMTP server is configured" in page.text
            assert "Should not show" not in page.text
