"""The admin console's order pages through the app (no browser): who may open them, the
overview's period, and the bulk status change (preview writes nothing, refusals say why, an
order changed after the preview is left alone)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from farmstand.accounts.roles import Role
from farmstand.config import Settings
from farmstand.events.models import OrderEvent
from farmstand.notifications.models import OrderNotification
from farmstand.orders import service
from farmstand.orders.models import Order, OrderStatusHistory
from farmstand.orders.states import OrderStatus
from tests.conftest import make_settings
from tests.factories import Factory
from tests.web.test_pages import sign_in, token_of

ADMIN_PAGES = ["/admin", "/admin/notifications", "/admin/mailbox", "/admin/mailbox/x.eml"]
ADMIN_POSTS = [
    "/admin/orders/bulk/preview",
    "/admin/orders/bulk",
    "/admin/notifications/abc/retry",
    "/admin/notifications/requeue",
]


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url  # the services behind these pages are tested on both databases


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path)


async def as_admin(client: httpx.AsyncClient, factory: Factory) -> str:
    """Sign in as a new admin; the CSRF token of their pages."""
    admin = await factory.user(Role.ADMIN)
    await sign_in(client, admin.email)
    return token_of(await client.get("/admin"))


async def snapshot(factory: Factory) -> tuple[object, ...]:
    """Every order's status and version, and how many history, event and notification rows."""
    async with factory.db.transaction(write=False) as session:
        orders = (
            await session.execute(select(Order.id, Order.status, Order.version).order_by(Order.id))
        ).all()
        counts = [
            await session.scalar(select(func.count()).select_from(model))
            for model in (OrderStatusHistory, OrderEvent, OrderNotification)
        ]
    return (tuple(orders), *counts)


async def status_of(factory: Factory, order_id: str) -> OrderStatus:
    async with factory.db.transaction(write=False) as session:
        status = await session.scalar(select(Order.status).where(Order.id == order_id))
    assert status is not None
    return status


@pytest.mark.parametrize("role", [Role.FARMER, Role.CUSTOMER])
async def test_the_console_is_not_found_for_anyone_but_an_admin(
    client: httpx.AsyncClient, factory: Factory, role: Role
):
    user = await factory.user(role)
    order = await factory.order()
    await sign_in(client, user.email)
    token = token_of(await client.get("/farms"))  # a page every role sees
    for path in ADMIN_PAGES:
        page = await client.get(path)
        assert page.status_code == 404, path
        assert "Not found" in page.text and "Admin" not in page.text
    for path in ADMIN_POSTS:
        data = {"csrf_token": token, "order_id": order.id, "status": "CONFIRMED"}
        assert (await client.post(path, data=data)).status_code == 404, path
        # Without a token too: the refusal must not tell a console from nothing.
        assert (await client.post(path, data={"order_id": order.id})).status_code == 404
    assert await status_of(factory, order.id) is OrderStatus.PENDING


async def test_signed_out_visitors_are_sent_to_sign_in(client: httpx.AsyncClient):
    reply = await client.get("/admin")
    assert reply.status_code == 303 and reply.headers["location"] == "/login?next=/admin"


async def test_an_admin_sees_the_overview_and_a_bad_period_is_refused_in_place(
    client: httpx.AsyncClient, factory: Factory
):
    await factory.order(status=OrderStatus.CONFIRMED)
    await as_admin(client, factory)
    page = await client.get("/admin")
    assert page.status_code == 200
    assert "Orders by status now" in page.text and "Success metrics" in page.text
    assert 'href="/admin"' in page.text  # the Admin entry in the site's nav

    backwards = await client.get("/admin?from=2026-03-05&to=2026-03-01")
    assert backwards.status_code == 422
    assert 'id="f-to-error"' in backwards.text and "must not be before the start" in backwards.text
    assert 'aria-invalid="true"' in backwards.text
    too_long = await client.get("/admin?from=2024-01-01&to=2026-01-01")
    assert too_long.status_code == 422 and "at most 366 days" in too_long.text
    garbage = await client.get("/admin?from=soon")
    assert garbage.status_code == 422 and "YYYY-MM-DD" in garbage.text


async def test_the_bulk_preview_says_what_would_change_and_writes_nothing(
    client: httpx.AsyncClient, factory: Factory
):
    pending = await factory.order()
    completed = await factory.order(status=OrderStatus.COMPLETED)
    token = await as_admin(client, factory)
    before = await snapshot(factory)

    page = await client.post(
        "/admin/orders/bulk/preview",
        data={"csrf_token": token, "order_id": [pending.id, completed.id], "status": "CONFIRMED"},
    )

    assert page.status_code == 200
    assert await snapshot(factory) == before
    assert "1</strong> would change" in page.text and "1</strong> would be refused" in page.text
    assert "Would move to Confirmed" in page.text
    assert "Refused: A pickup order cannot go from COMPLETED to CONFIRMED." in page.text
    # The confirm form carries only the order that would change, with its version.
    assert f'name="version-{pending.id}" value="{pending.version}"' in page.text
    assert f'name="version-{completed.id}"' not in page.text


async def test_an_order_changed_after_the_preview_is_left_alone(
    client: httpx.AsyncClient, factory: Factory
):
    farmer = await factory.user(Role.FARMER)
    farm = await factory.farm(farmer)
    first = await factory.order(farm=farm)
    second = await factory.order(farm=farm)
    token = await as_admin(client, factory)
    await client.post(
        "/admin/orders/bulk/preview",
        data={"csrf_token": token, "order_id": [first.id, second.id], "status": "CONFIRMED"},
    )
    # Meanwhile the farm confirms the second order itself.
    async with factory.db.transaction() as session:
        await service.change_status(
            session, farmer, second.id, OrderStatus.CONFIRMED, policy=factory.runtime.order_policy
        )

    page = await client.post(
        "/admin/orders/bulk",
        data={
            "csrf_token": token,
            "order_id": [first.id, second.id],
            f"version-{first.id}": str(first.version),
            f"version-{second.id}": str(second.version),
            "status": "CONFIRMED",
        },
    )

    assert page.status_code == 200
    assert "Changed to Confirmed" in page.text
    assert "it changed meanwhile, after the preview" in page.text
    assert await status_of(factory, first.id) is OrderStatus.CONFIRMED
    async with factory.db.transaction(write=False) as session:
        history = await session.scalar(
            select(func.count())
            .select_from(OrderStatusHistory)
            .where(OrderStatusHistory.order_id == second.id)
        )
    assert history == 2  # placed, confirmed by the farm: the admin's change never applied


async def test_bulk_forms_refuse_bad_selections_with_422(
    client: httpx.AsyncClient, factory: Factory
):
    order = await factory.order()
    token = await as_admin(client, factory)
    preview = "/admin/orders/bulk/preview"

    empty = await client.post(preview, data={"csrf_token": token, "status": "CONFIRMED"})
    assert empty.status_code == 422 and "Select at least one order" in empty.text
    many = [f"id-{n}" for n in range(201)]
    too_many = await client.post(
        preview, data={"csrf_token": token, "order_id": many, "status": "CONFIRMED"}
    )
    assert too_many.status_code == 422 and "at most 200 orders" in too_many.text
    no_status = await client.post(
        preview, data={"csrf_token": token, "order_id": order.id, "status": "SHIPPED"}
    )
    assert no_status.status_code == 422 and "Choose the status" in no_status.text

    # Cancelling needs a reason: the preview again, the error by the reason field.
    before = await snapshot(factory)
    no_reason = await client.post(
        "/admin/orders/bulk",
        data={
            "csrf_token": token,
            "order_id": order.id,
            f"version-{order.id}": str(order.version),
            "status": "CANCELLED",
        },
    )
    assert no_reason.status_code == 422
    assert 'id="f-reason-error"' in no_reason.text and "Give a reason" in no_reason.text
    assert await snapshot(factory) == before

    forged = await client.post(
        preview, data={"csrf_token": "forged", "order_id": order.id, "status": "CONFIRMED"}
    )
    assert forged.status_code == 403


async def test_a_bulk_cancellation_with_a_reason_is_applied(
    client: httpx.AsyncClient, factory: Factory
):
    order = await factory.order(status=OrderStatus.CONFIRMED)
    token = await as_admin(client, factory)
    page = await client.post(
        "/admin/orders/bulk",
        data={
            "csrf_token": token,
            "order_id": order.id,
            f"version-{order.id}": str(order.version),
            "status": "CANCELLED",
            "reason": "Storm: the market is closed",
        },
    )
    assert page.status_code == 200 and "Changed to Cancelled" in page.text
    assert await status_of(factory, order.id) is OrderStatus.CANCELLED
