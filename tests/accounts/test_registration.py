"""Registration that does not tell who has an account, and email verification."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import select, update

from farmstand.accounts import registration
from farmstand.accounts.models import PendingRegistration, User
from farmstand.accounts.roles import Role
from farmstand.db import utcnow
from farmstand.notifications.models import NotificationStatus, OrderNotification
from tests.accounts.helpers import mailbox, mails_to
from tests.accounts.test_api import ANNS_PASSWORD, app_client, login, register_body
from tests.factories import PASSWORD, Factory


async def test_registering_a_new_or_a_taken_email_looks_the_same_and_signs_in_neither(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    # Given one email with an account and one without
    await factory.user(email="taken@example.com")

    # When both are registered with a password the registrant chose
    new = await client.post("/api/auth/register", json=register_body(email="new@example.com"))
    taken = await client.post("/api/auth/register", json=register_body(email="taken@example.com"))
    new_login = await login(client, "new@example.com", ANNS_PASSWORD)
    taken_login = await login(client, "taken@example.com", ANNS_PASSWORD)

    # Then the replies, and signing in afterwards, are the same for both
    assert new.status_code == taken.status_code == 202
    assert new.json() == taken.json()
    assert new_login.status_code == taken_login.status_code == 401
    assert new_login.json() == taken_login.json()


async def test_the_owner_of_a_taken_email_is_told_and_the_newcomer_gets_a_link(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    await factory.user(email="taken@example.com", name="Tess Owner")
    await client.post("/api/auth/register", json=register_body(email="taken@example.com"))
    await client.post("/api/auth/register", json=register_body(email="new@example.com"))

    (to_owner,) = await mails_to(factory, "taken@example.com")
    (to_new,) = await mails_to(factory, "new@example.com")

    assert "tried to register" in to_owner.subject
    assert to_owner.verify_path is None
    assert "/login" in to_owner.text
    assert to_new.subject == "Confirm your email for Farmstand"
    assert to_new.verify_path is not None


async def test_registration_costs_about_the_same_time_either_way(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    await factory.user(email="taken@example.com")

    async def timed(email: str) -> float:
        started = time.perf_counter()
        reply = await client.post("/api/auth/register", json=register_body(email=email))
        assert reply.status_code == 202
        return time.perf_counter() - started

    hashes = 0
    real_hash = factory.runtime.passwords.hash

    async def counting_hash(password: str) -> str:
        nonlocal hashes
        hashes += 1
        return await real_hash(password)

    factory.runtime.passwords.hash = counting_hash  # type: ignore[method-assign]
    await timed("warm@example.com")
    hashes = 0
    await timed("taken@example.com")
    taken_hashes = hashes
    hashes = 0
    await timed("fresh@example.com")

    # The slow step, the password hash, runs once whichever way it goes.
    assert taken_hashes == hashes == 1


async def test_the_link_works_once(client: httpx.AsyncClient, factory: Factory) -> None:
    await client.post("/api/auth/register", json=register_body())
    (mail,) = await mails_to(factory, "ann@example.com")
    assert mail.verify_path is not None

    first = await client.post(mail.verify_path)
    second = await client.post(mail.verify_path)

    assert first.status_code == 200
    assert second.status_code == 400
    assert "not valid" in second.json()["error"]


async def test_an_expired_link_creates_nothing(client: httpx.AsyncClient, factory: Factory) -> None:
    await client.post("/api/auth/register", json=register_body())
    (mail,) = await mails_to(factory, "ann@example.com")
    assert mail.verify_path is not None
    async with factory.db.transaction() as session:
        await session.execute(
            update(PendingRegistration).values(expires_at=utcnow() - timedelta(seconds=1))
        )

    reply = await client.post(mail.verify_path)

    assert reply.status_code == 400
    assert (await login(client, "ann@example.com", ANNS_PASSWORD)).status_code == 401


async def test_a_made_up_link_is_refused_clearly(client: httpx.AsyncClient) -> None:
    reply = await client.post("/api/auth/verify/not-a-real-token")

    assert reply.status_code == 400
    assert reply.json()["success"] is False


async def test_the_link_opens_a_page_that_changes_nothing_until_confirmed(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    await client.post("/api/auth/register", json=register_body())
    (mail,) = await mails_to(factory, "ann@example.com")
    assert mail.verify_path is not None

    page = await client.get(mail.verify_path)
    before = await login(client, "ann@example.com", ANNS_PASSWORD)
    confirmed = await client.post(
        mail.verify_path, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    after = await login(client, "ann@example.com", ANNS_PASSWORD)

    assert page.status_code == 200
    assert '<form method="post">' in page.text
    assert before.status_code == 401
    assert confirmed.status_code == 200
    assert "text/html" in confirmed.headers["content-type"]
    assert "Email confirmed" in confirmed.text
    assert after.status_code == 200


async def test_the_token_is_not_stored_and_the_log_does_not_keep_the_link(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    await client.post("/api/auth/register", json=register_body())
    (mail,) = await mails_to(factory, "ann@example.com")
    assert mail.verify_path is not None
    token = mail.verify_path.rsplit("/", 1)[1]

    async with factory.db.transaction(write=False) as session:
        pending = (await session.scalars(select(PendingRegistration))).one()
        (row,) = await session.scalars(select(OrderNotification))

    assert pending.token_hash == registration.token_hash(token)
    assert token not in pending.token_hash
    assert row.status is NotificationStatus.SENT
    assert token not in row.message
    assert token not in str(row.meta)


async def test_a_resend_mails_the_same_link_again(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    await client.post("/api/auth/register", json=register_body())
    resent = await client.post("/api/auth/verify/resend", json={"email": "Ann@Example.com"})
    unknown = await client.post("/api/auth/verify/resend", json={"email": "nobody@example.com"})

    mails = await mails_to(factory, "ann@example.com")

    assert resent.status_code == unknown.status_code == 202
    assert resent.json() == unknown.json()
    assert len(mails) == 2
    assert mails[0].verify_path == mails[1].verify_path
    assert not await mails_to(factory, "nobody@example.com")


async def test_the_verification_email_survives_a_crash_before_sending(
    database_url: str, tmp_path: Path
) -> None:
    # Given a registration committed by a server that stopped before sending anything
    async with app_client(database_url, tmp_path) as (client, _factory, _):
        assert (await client.post("/api/auth/register", json=register_body())).status_code == 202
    # When another process (a worker) starts on the same database
    async with app_client(database_url, tmp_path) as (client, factory, _):
        (mail,) = await mails_to(factory, "ann@example.com")
        assert mail.verify_path is not None
        verified = await client.post(mail.verify_path)

    # Then the email went out and its link works
    assert verified.status_code == 200


async def test_a_registration_for_an_email_that_got_an_account_meanwhile_creates_nothing(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    await client.post("/api/auth/register", json=register_body())
    (mail,) = await mails_to(factory, "ann@example.com")
    assert mail.verify_path is not None
    operator_made = await factory.user(email="ann@example.com")

    reply = await client.post(mail.verify_path)

    assert reply.status_code == 200
    assert "already has an account" in reply.json()["data"]["message"]
    assert (await login(client, "ann@example.com", ANNS_PASSWORD)).status_code == 401
    assert (await login(client, "ann@example.com", PASSWORD)).json()["data"]["user"]["id"] == (
        operator_made.id
    )


async def test_an_unverified_account_cannot_place_an_order(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    customer = await factory.user(Role.CUSTOMER)
    farm = await factory.farm()
    product = await factory.product(farm)
    async with factory.db.transaction() as session:
        await session.execute(
            update(User).where(User.id == customer.id).values(email_verified_at=None)
        )
    body = {"farmId": farm.id, "items": [{"productId": product.id, "quantity": 1}]}

    reply = await client.post("/api/orders", json=body, headers=await factory.headers(customer))

    assert reply.status_code == 403
    assert "Confirm your email" in reply.json()["error"]


async def test_operator_made_and_verified_accounts_can_order(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    farm = await factory.farm()
    product = await factory.product(farm)
    verified_reply = await client.post("/api/auth/register", json=register_body())
    assert verified_reply.status_code == 202
    (mail,) = await mails_to(factory, "ann@example.com")
    assert mail.verify_path is not None
    await client.post(mail.verify_path)
    token = (await login(client, "ann@example.com", ANNS_PASSWORD)).json()["data"]["token"]
    body = {"farmId": farm.id, "items": [{"productId": product.id, "quantity": 1}]}

    reply = await client.post(
        "/api/orders", json=body, headers={"Authorization": f"Bearer {token}"}
    )

    assert reply.status_code == 201, reply.text
    assert len(await mailbox(factory)) >= 1
