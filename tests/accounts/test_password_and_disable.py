"""Changing a password and disabling a user end sessions, everywhere, at once."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from farmstand.accounts.roles import Role
from farmstand.events.models import EventType, OrderEvent
from tests.accounts.test_api import login
from tests.factories import PASSWORD, Factory

NEW = "plum tomatoes in june"


async def _account_events(factory: Factory, user_id: str) -> list[str]:
    async with factory.db.transaction(write=False) as session:
        rows = await session.scalars(
            select(OrderEvent).where(
                OrderEvent.type == EventType.ACCOUNT_CHANGED, OrderEvent.user_id == user_id
            )
        )
        return [row.data["reason"] for row in rows]


async def test_changing_the_password_ends_every_other_session(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user()
    here = await factory.headers(user)
    other_device = await factory.headers(user)
    await client.get("/api/auth/me", headers=other_device)  # cached

    changed = await client.post(
        "/api/auth/password",
        json={"currentPassword": PASSWORD, "newPassword": NEW},
        headers=here,
    )

    assert changed.status_code == 200, changed.text
    new_token = changed.json()["data"]["token"]
    assert (await client.get("/api/auth/me", headers=other_device)).status_code == 401
    assert (await client.get("/api/auth/me", headers=here)).status_code == 401
    fresh = {"Authorization": f"Bearer {new_token}"}
    assert (await client.get("/api/auth/me", headers=fresh)).status_code == 200
    assert (await login(client, user.email, PASSWORD)).status_code == 401
    assert (await login(client, user.email, NEW)).status_code == 200
    assert "password changed" in await _account_events(factory, user.id)


async def test_a_wrong_current_password_or_a_weak_new_one_changes_nothing(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user()
    headers = await factory.headers(user)

    wrong = await client.post(
        "/api/auth/password",
        json={"currentPassword": "not my password", "newPassword": NEW},
        headers=headers,
    )
    weak = await client.post(
        "/api/auth/password",
        json={"currentPassword": PASSWORD, "newPassword": "password1234"},
        headers=headers,
    )
    personal = await client.post(
        "/api/auth/password",
        json={"currentPassword": PASSWORD, "newPassword": f"{user.name} forever"},
        headers=headers,
    )

    assert wrong.status_code == 422
    assert wrong.json()["details"][0]["field"] == "currentPassword"
    assert weak.status_code == 422
    assert weak.json()["details"][0]["field"] == "newPassword"
    assert personal.status_code == 422
    assert "your name" in personal.json()["details"][0]["message"]
    assert (await client.get("/api/auth/me", headers=headers)).status_code == 200
    assert (await login(client, user.email, PASSWORD)).status_code == 200


async def test_an_admin_can_disable_and_enable_a_user(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    admin = await factory.headers(await factory.user(Role.ADMIN))
    user = await factory.user()
    session = await factory.headers(user)
    await client.get("/api/auth/me", headers=session)  # cached

    disabled = await client.post(f"/api/admin/users/{user.id}/disable", headers=admin)
    me = await client.get("/api/auth/me", headers=session)
    sign_in = await login(client, user.email)
    enabled = await client.post(f"/api/admin/users/{user.id}/enable", headers=admin)
    after = await login(client, user.email)

    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["data"]["disabledAt"] is not None
    assert me.status_code == 401
    assert sign_in.status_code == 403
    assert "disabled" in sign_in.json()["error"]
    assert enabled.json()["data"]["disabledAt"] is None
    assert after.status_code == 200
    assert (await client.get("/api/auth/me", headers=session)).status_code == 401
    assert await _account_events(factory, user.id) == ["disabled", "enabled"]


async def test_only_an_admin_disables_and_never_themselves(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    admin_user = await factory.user(Role.ADMIN)
    admin = await factory.headers(admin_user)
    farmer = await factory.headers(await factory.user(Role.FARMER))
    user = await factory.user()

    by_farmer = await client.post(f"/api/admin/users/{user.id}/disable", headers=farmer)
    themselves = await client.post(f"/api/admin/users/{admin_user.id}/disable", headers=admin)
    unknown = await client.post("/api/admin/users/nobody/disable", headers=admin)

    assert by_farmer.status_code == 403
    assert themselves.status_code == 409
    assert unknown.status_code == 404
