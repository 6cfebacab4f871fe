"""The accounts HTTP surface: register, sign in and out, sessions, throttling, the envelope."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from farmstand.accounts import service as accounts
from farmstand.accounts.models import AuthSession
from farmstand.accounts.roles import Role
from farmstand.app import create_app
from farmstand.db import utcnow
from farmstand.deps import SESSION_COOKIE
from farmstand.errors import TooManyRequests, Unauthenticated
from tests import services
from tests.accounts.helpers import mails_to, register_and_verify
from tests.conftest import TEST_SECRET, make_settings
from tests.factories import PASSWORD, Factory

NEW_PASSWORD = "a brand new passphrase"
ANNS_PASSWORD = "my long orchard passphrase"


def register_body(**fields: Any) -> dict[str, Any]:
    return {
        "email": "ann@example.com",
        "password": ANNS_PASSWORD,
        "name": "Ann Smith",
        "role": "CUSTOMER",
        **fields,
    }


def assert_ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"success", "data"}
    assert body["success"] is True
    return body["data"]


def assert_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False
    assert set(body) <= {"success", "error", "details"}
    assert isinstance(body["error"], str)
    assert body["error"]
    return body


def error_fields(body: dict[str, Any]) -> set[str]:
    return {detail["field"] for detail in body["details"]}


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/api/auth/login", json={"email": email, "password": password})


@asynccontextmanager
async def app_client(
    database_url: str,
    tmp_path: Path,
    *,
    address: str = "127.0.0.1",
    **overrides: object,
) -> AsyncIterator[tuple[httpx.AsyncClient, Factory, FastAPI]]:
    """An app built with overridden settings, and a client connecting from ``address``."""
    application = create_app(make_settings(database_url, tmp_path, **overrides))
    async with services.lifespan(application):
        transport = httpx.ASGITransport(app=application, client=(address, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http, Factory(application.state.runtime, http), application


def second_client(app: FastAPI, address: str = "127.0.0.1") -> httpx.AsyncClient:
    """Another browser: its own cookie jar, optionally its own address."""
    transport = httpx.ASGITransport(app=app, client=(address, 50001))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


# Register


@pytest.mark.parametrize("role", ["CUSTOMER", "FARMER"])
async def test_customer_or_farmer_can_register_then_sign_in(
    client: httpx.AsyncClient, factory: Factory, role: str
) -> None:
    response = await client.post("/api/auth/register", json=register_body(role=role))
    data = assert_ok(response, 202)
    assert "message" in data
    # No account until the emailed link is used
    assert (await login(client, "ann@example.com", ANNS_PASSWORD)).status_code == 401

    (mail,) = await mails_to(factory, "ann@example.com")
    assert mail.verify_path is not None
    verified = await client.post(mail.verify_path)

    assert "sign in" in assert_ok(verified)["message"]
    user = assert_ok(await login(client, "ann@example.com", ANNS_PASSWORD))["user"]
    assert user["role"] == role
    assert user["name"] == "Ann Smith"


async def test_nobody_can_register_as_admin(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/auth/register", json=register_body(role="ADMIN"))

    body = assert_error(response, 422)
    assert "role" in error_fields(body)
    assert (await login(client, "ann@example.com", ANNS_PASSWORD)).status_code == 401


async def test_register_reply_is_the_same_for_new_and_taken_email(
    client: httpx.AsyncClient,
) -> None:
    first = await client.post("/api/auth/register", json=register_body())
    second = await client.post(
        "/api/auth/register", json=register_body(password=NEW_PASSWORD, role="FARMER")
    )

    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()


async def test_registering_a_taken_email_does_not_change_that_account(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    existing = await factory.user(Role.CUSTOMER, email="taken@example.com")

    response = await client.post(
        "/api/auth/register",
        json=register_body(email="Taken@Example.com", password=NEW_PASSWORD, role="FARMER"),
    )

    assert response.status_code == 202
    assert (await login(client, existing.email, NEW_PASSWORD)).status_code == 401
    user = assert_ok(await login(client, existing.email, PASSWORD))["user"]
    assert user["role"] == "CUSTOMER"
    assert user["id"] == existing.id


async def test_email_is_stored_lower_case_and_sign_in_ignores_case(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    await register_and_verify(client, factory, register_body(email="Ann.Smith@Example.COM"))

    user = assert_ok(await login(client, "ANN.SMITH@example.com", ANNS_PASSWORD))
    assert user["user"]["email"] == "ann.smith@example.com"


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"email": ""}, "email"),
        ({"password": "short"}, "password"),
        ({"password": "aaaaaaaaaa"}, "password"),
        ({"password": "x" * 257}, "password"),
        ({"phone": "12345"}, "phone"),
        ({"phone": "call me maybe"}, "phone"),
        ({"name": "   "}, "name"),
        ({"role": "GARDENER"}, "role"),
        ({"nickname": "annie"}, "nickname"),
    ],
)
async def test_invalid_registration_is_refused_with_field_details(
    client: httpx.AsyncClient, fields: dict[str, Any], bad_field: str
) -> None:
    response = await client.post("/api/auth/register", json=register_body(**fields))

    body = assert_error(response, 422)
    assert bad_field in error_fields(body)
    assert all(detail["message"] for detail in body["details"])


async def test_registration_missing_fields_names_each_of_them(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/auth/register", json={})

    body = assert_error(response, 422)
    assert error_fields(body) >= {"email", "password", "name", "role"}


async def test_phone_is_normalised_to_e164(client: httpx.AsyncClient, factory: Factory) -> None:
    await register_and_verify(client, factory, register_body(phone="+1 (415) 555-0123"))

    user = assert_ok(await login(client, "ann@example.com", ANNS_PASSWORD))["user"]
    assert user["phone"] == "+14155550123"


@pytest.mark.parametrize("field", ["email", "password", "name"])
async def test_nul_character_in_registration_is_refused_not_a_crash(
    client: httpx.AsyncClient, field: str
) -> None:
    body = register_body()
    body[field] = body[field][:3] + "\u0000" + body[field][3:]

    response = await client.post("/api/auth/register", json=body)

    assert field in error_fields(assert_error(response, 422))


# Sign in, the session, sign out


async def test_login_returns_token_expiry_and_user_and_sets_a_safe_cookie(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user(Role.FARMER, email="rosa@example.com", phone="+15035550101")

    response = await login(client, "rosa@example.com")

    data = assert_ok(response)
    assert set(data) == {"token", "expiresAt", "user"}
    assert data["user"]["id"] == user.id
    assert data["user"]["email"] == "rosa@example.com"
    assert data["user"]["role"] == "FARMER"
    assert data["user"]["phone"] == "+15035550101"
    assert not any("password" in key.lower() for key in data["user"])
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}={data['token']}")
    assert "httponly" in cookie.lower()
    assert "samesite=lax" in cookie.lower()
    assert "secure" not in cookie.lower()  # the app is served over http here


async def test_session_cookie_is_secure_when_served_over_https(
    database_url: str, tmp_path: Path
) -> None:
    async with app_client(database_url, tmp_path, base_url="https://farm.example") as (
        client,
        factory,
        _app,
    ):
        user = await factory.user()
        response = await login(client, user.email)

    assert response.status_code == 200
    assert "; secure" in response.headers["set-cookie"].lower()


async def test_login_expiry_matches_the_session_ttl(database_url: str, tmp_path: Path) -> None:
    async with app_client(database_url, tmp_path, session_ttl_hours=2) as (client, factory, _):
        user = await factory.user()
        before = utcnow()
        data = assert_ok(await login(client, user.email))
        after = utcnow()

    expires = datetime.fromisoformat(data["expiresAt"])
    assert before + timedelta(hours=2) <= expires <= after + timedelta(hours=2)


async def test_bearer_token_alone_authenticates(
    client: httpx.AsyncClient, factory: Factory, app: FastAPI
) -> None:
    user = await factory.user()
    token = assert_ok(await login(client, user.email))["token"]

    async with second_client(app) as fresh:
        response = await fresh.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})

    assert assert_ok(response)["id"] == user.id


async def test_session_cookie_alone_authenticates(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user()
    await login(client, user.email)

    response = await client.get("/api/auth/me")

    assert assert_ok(response)["email"] == user.email


async def test_wrong_password_and_unknown_email_get_the_same_reply(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user()

    wrong_password = await login(client, user.email, "not the password")
    unknown_email = await login(client, "nobody@example.com", "not the password")

    assert_error(wrong_password, 401)
    assert_error(unknown_email, 401)
    assert wrong_password.json() == unknown_email.json()
    assert SESSION_COOKIE not in client.cookies


async def test_login_with_missing_fields_is_a_validation_error(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/api/auth/login", json={"email": "a@example.com"})

    body = assert_error(response, 422)
    assert "password" in error_fields(body)


@pytest.mark.parametrize(
    "credentials",
    [
        {"email": "ann\u0000@example.com", "password": ANNS_PASSWORD},
        {"email": "ann@example.com", "password": "ann's\u0000 long passphrase"},
    ],
)
async def test_nul_character_in_login_is_refused_not_a_crash(
    client: httpx.AsyncClient, credentials: dict[str, str]
) -> None:
    response = await client.post("/api/auth/login", json=credentials)

    assert_error(response, 422)


async def test_logout_revokes_the_session_and_clears_the_cookie(
    client: httpx.AsyncClient, factory: Factory, app: FastAPI
) -> None:
    user = await factory.user()
    token = assert_ok(await login(client, user.email))["token"]

    response = await client.post("/api/auth/logout")

    assert_ok(response)
    cleared = response.headers["set-cookie"].lower()
    assert cleared.startswith(f"{SESSION_COOKIE}=")
    assert "max-age=0" in cleared or "expires=thu, 01 jan 1970" in cleared
    assert SESSION_COOKIE not in client.cookies
    assert_error(await client.get("/api/auth/me"), 401)
    async with second_client(app) as fresh:
        bearer = {"Authorization": f"Bearer {token}"}
        assert_error(await fresh.get("/api/auth/me", headers=bearer), 401)
        assert_error(await fresh.post("/api/auth/logout", headers=bearer), 401)


async def test_logout_ends_only_that_session(client: httpx.AsyncClient, factory: Factory) -> None:
    user = await factory.user()
    phone = await factory.headers(user)
    laptop = await factory.headers(user)

    assert_ok(await client.post("/api/auth/logout", headers=laptop))

    assert_error(await client.get("/api/auth/me", headers=laptop), 401)
    assert assert_ok(await client.get("/api/auth/me", headers=phone))["id"] == user.id


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "a.b.c",
        "....",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.",
        "x" * 5000,
    ],
)
async def test_garbage_token_is_refused(client: httpx.AsyncClient, token: str) -> None:
    response = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})

    assert_error(response, 401)


async def test_garbage_session_cookie_is_refused(client: httpx.AsyncClient) -> None:
    client.cookies.set(SESSION_COOKIE, "not-a-token")

    assert_error(await client.get("/api/auth/me"), 401)


async def test_token_signed_with_another_key_is_refused(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    from farmstand.accounts.tokens import TokenSigner

    user = await factory.user()
    real = await factory.token(user)
    session_id = factory.runtime.signer.unsign(real)
    assert session_id is not None
    forged = TokenSigner("another-secret-that-is-also-long-enough-000", 3600).sign(session_id)

    response = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {forged}"})

    assert_error(response, 401)


async def test_token_for_a_session_that_does_not_exist_is_refused(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    token = factory.runtime.signer.sign("00000000-0000-0000-0000-000000000000")

    response = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})

    assert_error(response, 401)


async def test_expired_session_is_refused(client: httpx.AsyncClient, factory: Factory) -> None:
    user = await factory.user()
    headers = await factory.headers(user)
    assert_ok(await client.get("/api/auth/me", headers=headers))

    async with factory.db.transaction() as session:
        await session.execute(
            update(AuthSession)
            .where(AuthSession.user_id == user.id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    # Changed behind the app's back: seen once the cached check ages out (auth_cache_seconds).
    factory.runtime.auth.cache.clear()

    body = assert_error(await client.get("/api/auth/me", headers=headers), 401)
    assert "sign in again" in body["error"].lower()


async def test_a_cached_session_still_ends_at_its_expiry(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user()
    headers = await factory.headers(user)
    assert_ok(await client.get("/api/auth/me", headers=headers))  # now cached
    # The session reaches its expiry while cached (as if time passed): the cache checks the
    # session's own expiry on every request and does not serve it.
    expired = utcnow() - timedelta(seconds=1)
    async with factory.db.transaction() as session:
        await session.execute(
            update(AuthSession).where(AuthSession.user_id == user.id).values(expires_at=expired)
        )
    mine = [e for e in factory.runtime.auth.cache._entries.values() if e.principal.id == user.id]
    assert mine
    for entry in mine:
        entry.principal = dataclasses.replace(entry.principal, session_expires_at=expired)

    assert_error(await client.get("/api/auth/me", headers=headers), 401)


async def test_a_session_changed_in_the_database_is_seen_after_the_cache_ttl(
    database_url: str, tmp_path: Path
) -> None:
    async with app_client(database_url, tmp_path, auth_cache_seconds=0.2) as (client, factory, _):
        user = await factory.user()
        headers = await factory.headers(user)
        assert_ok(await client.get("/api/auth/me", headers=headers))
        async with factory.db.transaction() as session:
            await session.execute(
                update(AuthSession)
                .where(AuthSession.user_id == user.id)
                .values(revoked_at=utcnow())
            )
        await asyncio.sleep(0.3)

        assert_error(await client.get("/api/auth/me", headers=headers), 401)


async def test_session_past_its_ttl_is_refused(factory: Factory) -> None:
    user = await factory.user()
    token = await factory.token(user)
    later = utcnow() + timedelta(seconds=factory.runtime.signer.max_age_seconds + 60)

    session_id = factory.runtime.signer.unsign(token)
    assert session_id is not None
    async with factory.db.transaction(write=False) as session:
        with pytest.raises(Unauthenticated):
            await accounts.authenticate(session, session_id, now=later)


async def test_cookie_post_from_a_foreign_origin_is_refused(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user()
    await login(client, user.email)

    refused = await client.post("/api/auth/logout", headers={"Origin": "https://evil.example"})

    body = assert_error(refused, 403)
    assert "cross-site" in body["error"].lower()
    assert assert_ok(await client.get("/api/auth/me"))["id"] == user.id  # still signed in
    assert_ok(await client.post("/api/auth/logout", headers={"Origin": "http://testserver"}))
    assert_error(await client.get("/api/auth/me"), 401)


async def test_cookie_post_from_the_configured_base_url_is_allowed(
    database_url: str, tmp_path: Path
) -> None:
    async with app_client(database_url, tmp_path, base_url="https://farm.example") as (
        client,
        factory,
        _,
    ):
        farmer = await factory.user(Role.FARMER)
        token = assert_ok(await login(client, farmer.email))["token"]
        # The cookie is Secure, so this plain-http test client would not send it by itself.
        cookie = {"Cookie": f"{SESSION_COOKIE}={token}"}
        foreign = await client.post(
            "/api/farms",
            json={"name": "Evil"},
            headers={**cookie, "Origin": "https://farm.example.evil"},
        )
        own = await client.post(
            "/api/farms",
            json={"name": "Mine"},
            headers={**cookie, "Origin": "https://farm.example"},
        )

    assert_error(foreign, 403)
    assert assert_ok(own, 201)["name"] == "Mine"


async def test_bearer_post_is_not_subject_to_the_origin_check(
    client: httpx.AsyncClient, factory: Factory, app: FastAPI
) -> None:
    farmer = await factory.user(Role.FARMER)
    headers = {**await factory.headers(farmer), "Origin": "https://partner.example"}

    async with second_client(app) as fresh:
        response = await fresh.post("/api/farms", json={"name": "Partner"}, headers=headers)

    assert_ok(response, 201)


# Throttling

OWNER = "owner@example.com"


async def attempt(
    factory: Factory, email: str, password: str, *, at: datetime, address: str | None
) -> accounts.SignedIn:
    runtime = factory.runtime
    return await accounts.login(
        runtime.db,
        runtime.passwords,
        runtime.signer,
        runtime.throttle,
        email=email,
        password=password,
        address=address,
        user_agent="tests",
        now=at,
    )


async def test_wrong_guesses_from_elsewhere_never_lock_the_owner_out(
    database_url: str, tmp_path: Path
) -> None:
    async with app_client(
        database_url, tmp_path, address="203.0.113.7", login_free_failures_per_account=3
    ) as (attacker, factory, application):
        admin = await factory.user(Role.ADMIN, email=OWNER)
        guesses = [await login(attacker, OWNER, "wrong password") for _ in range(8)]
        async with second_client(application, address="198.51.100.9") as owner:
            signed_in = await login(owner, OWNER)

    statuses = [r.status_code for r in guesses]
    assert statuses[:3] == [401, 401, 401]
    assert set(statuses[3:]) == {429}
    assert int(guesses[-1].headers["retry-after"]) >= 1
    assert "try again" in guesses[-1].json()["error"].lower()
    assert assert_ok(signed_in)["user"]["id"] == admin.id


async def test_failures_make_the_same_pair_wait_longer_and_longer(
    database_url: str, tmp_path: Path
) -> None:
    async with app_client(
        database_url,
        tmp_path,
        login_free_failures_per_account=2,
        login_backoff_base_seconds=10,
        login_account_backoff_max_seconds=40,
    ) as (_client, factory, _):
        user = await factory.user(email=OWNER)
        t0 = utcnow()
        here = "192.0.2.1"
        waits: list[str] = []

        async def wrong(seconds: float) -> None:
            with pytest.raises(Unauthenticated):
                await attempt(
                    factory,
                    OWNER,
                    "wrong password",
                    at=t0 + timedelta(seconds=seconds),
                    address=here,
                )

        async def refused(password: str, seconds: float) -> None:
            with pytest.raises(TooManyRequests) as refusal:
                await attempt(
                    factory, OWNER, password, at=t0 + timedelta(seconds=seconds), address=here
                )
            assert refusal.value.retry_after is not None
            waits.append(str(refusal.value.retry_after))

        await wrong(0)
        await wrong(0)  # the second free failure: a 10 s wait starts
        await refused(PASSWORD, 1)  # even the right password waits (for this pair only)
        await wrong(10)  # then 20 s
        await refused("wrong password", 11)
        await wrong(30)  # then 40 s, the cap
        await refused("wrong password", 31)
        await wrong(70)  # and 40 s again
        await refused("wrong password", 71)
        signed_in = await attempt(
            factory, OWNER, PASSWORD, at=t0 + timedelta(seconds=110), address=here
        )
        # A success forgets the failures: the next mistake costs nothing.
        await wrong(111)
        again = await attempt(
            factory, OWNER, PASSWORD, at=t0 + timedelta(seconds=111), address=here
        )

    assert waits == ["9", "19", "39", "39"]
    assert signed_in.user.id == user.id
    assert again.user.id == user.id


async def test_parallel_wrong_guesses_are_counted_before_the_password_check(
    database_url: str, tmp_path: Path
) -> None:
    async with app_client(database_url, tmp_path, login_free_failures_per_account=5) as (
        client,
        factory,
        _,
    ):
        await factory.user(email=OWNER)
        passwords = factory.runtime.passwords
        checked = 0
        real_verify = passwords.verify

        async def counting_verify(password_hash: str | None, password: str) -> bool:
            nonlocal checked
            checked += 1
            return await real_verify(password_hash, password)

        passwords.verify = counting_verify  # type: ignore[method-assign]
        replies = await asyncio.gather(
            *(login(client, OWNER, f"wrong password {n}") for n in range(12))
        )

    statuses = sorted(r.status_code for r in replies)
    assert checked <= 5
    assert statuses == [401] * checked + [429] * (12 - checked)


async def test_many_failures_from_one_address_only_slow_it_down_briefly(
    database_url: str, tmp_path: Path
) -> None:
    async with app_client(
        database_url,
        tmp_path,
        login_free_failures_per_address=20,
        login_address_backoff_max_seconds=30,
    ) as (_client, factory, _):
        user = await factory.user(email=OWNER)
        t0 = utcnow()
        shared = "203.0.113.50"  # a market's Wi-Fi: many people behind one address
        for n in range(25):
            with contextlib.suppress(Unauthenticated, TooManyRequests):
                await attempt(
                    factory, f"guess{n}@example.com", "wrong password", at=t0, address=shared
                )
        with pytest.raises(TooManyRequests) as slowed:
            await attempt(factory, OWNER, PASSWORD, at=t0, address=shared)
        signed_in = await attempt(
            factory, OWNER, PASSWORD, at=t0 + timedelta(seconds=31), address=shared
        )
        elsewhere = await attempt(factory, OWNER, PASSWORD, at=t0, address="198.51.100.9")

    assert slowed.value.retry_after is not None
    assert 0 < slowed.value.retry_after <= 30
    assert signed_in.user.id == user.id
    assert elsewhere.user.id == user.id


async def test_successful_sign_in_resets_the_failure_count(
    database_url: str, tmp_path: Path
) -> None:
    async with app_client(database_url, tmp_path, login_free_failures_per_account=3) as (
        client,
        factory,
        _,
    ):
        user = await factory.user()
        statuses = []
        for password in ["bad", "bad", PASSWORD, "bad", "bad", PASSWORD]:
            statuses.append((await login(client, user.email, password)).status_code)

    assert statuses == [401, 401, 200, 401, 401, 200]


async def test_throttling_an_unknown_email_looks_like_throttling_a_real_one(
    database_url: str, tmp_path: Path
) -> None:
    async with app_client(
        database_url, tmp_path, login_free_failures_per_account=2, login_backoff_base_seconds=60
    ) as (client, factory, _):
        await factory.user(email=OWNER)
        for email in (OWNER, "nobody@example.com"):
            for _ in range(2):
                await login(client, email, "wrong password")
        real = await login(client, OWNER, "wrong password")
        unknown = await login(client, "nobody@example.com", "wrong password")

    assert real.status_code == unknown.status_code == 429
    assert real.json() == unknown.json()


async def test_failures_outside_the_window_do_not_add_up(database_url: str, tmp_path: Path) -> None:
    async with app_client(
        database_url,
        tmp_path,
        login_free_failures_per_account=2,
        login_account_window_seconds=60,
        login_backoff_base_seconds=600,
    ) as (_client, factory, _):
        user = await factory.user()
        t0 = utcnow()
        with pytest.raises(Unauthenticated):
            await attempt(factory, user.email, "wrong password", at=t0, address=None)
        with pytest.raises(Unauthenticated):  # the first failure has aged out: no wait starts
            await attempt(
                factory, user.email, "wrong password", at=t0 + timedelta(seconds=120), address=None
            )
        await attempt(factory, user.email, PASSWORD, at=t0 + timedelta(seconds=121), address=None)


async def test_forwarded_for_is_believed_only_from_a_trusted_proxy(
    database_url: str, tmp_path: Path
) -> None:
    """Through a real server configured as `farmstand serve` does: from 127.0.0.1, a spoofed
    X-Forwarded-For must neither give each guess a fresh address nor be recorded as the
    session's address (uvicorn trusts 127.0.0.1 unless told otherwise)."""
    from farmstand.cli import proxy_options
    from tests.live import serve_in_process

    async def through_server(**overrides: object) -> tuple[list[int], str | None]:
        settings = make_settings(
            database_url, tmp_path, login_free_failures_per_account=2, **overrides
        )
        application = create_app(settings)
        async with (
            serve_in_process(application, **proxy_options(settings)) as base,
            httpx.AsyncClient(base_url=base) as http,
        ):
            factory = Factory(application.state.runtime, http)
            user = await factory.user()
            statuses = []
            for n in range(4):
                reply = await http.post(
                    "/api/auth/login",
                    json={"email": "nobody@example.com", "password": "wrong password"},
                    headers={"X-Forwarded-For": f"198.51.100.{n}"},
                )
                statuses.append(reply.status_code)
            signed_in = await http.post(
                "/api/auth/login",
                json={"email": user.email, "password": PASSWORD},
                headers={"X-Forwarded-For": "192.0.2.66"},
            )
            assert signed_in.status_code == 200, signed_in.text
            async with factory.db.transaction(write=False) as session:
                address = (
                    await session.execute(
                        select(AuthSession.address).where(AuthSession.user_id == user.id)
                    )
                ).scalar_one()
            return statuses, address

    assert await through_server() == ([401, 401, 429, 429], "127.0.0.1")
    assert await through_server(trusted_proxies="127.0.0.1") == ([401] * 4, "192.0.2.66")


# Secrets stay secret


async def test_secret_key_never_appears_in_logs(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with app_client(database_url, tmp_path, log_level="DEBUG") as (client, factory, app):
        settings = app.state.runtime.settings
        user = await factory.user()
        await client.post("/api/auth/register", json=register_body())
        await login(client, user.email, "wrong password")
        await login(client, user.email, TEST_SECRET)  # even typed as a password
        await login(client, user.email)
        await client.get("/api/auth/me")
        await client.get("/api/farms")
        await client.post("/api/auth/logout")
        await client.get("/api/nowhere")

    assert caplog.records  # the app and its libraries did log at DEBUG
    logged = caplog.text + "".join(repr(r.args) for r in caplog.records)
    assert TEST_SECRET not in logged
    assert TEST_SECRET not in repr(settings)
    assert TEST_SECRET not in str(settings)
    assert TEST_SECRET not in settings.model_dump_json()


# The envelope


PROTECTED = [
    ("GET", "/api/auth/me", None),
    ("POST", "/api/auth/logout", None),
    ("GET", "/api/farms", None),
    ("GET", "/api/farms?mine=true", None),
    ("POST", "/api/farms", {"name": "A farm"}),
    ("GET", "/api/farms/some-farm", None),
    ("GET", "/api/farms/some-farm/products", None),
    (
        "POST",
        "/api/farms/some-farm/products",
        {"name": "Eggs", "unit": "dz", "price": "1.00", "stock": 1},
    ),
    ("PATCH", "/api/farms/some-farm/products/some-product", {"stock": 1}),
    ("GET", "/api/orders", None),
]


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
async def test_protected_routes_need_a_session(
    client: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    response = await client.request(method, path, json=body)

    assert_error(response, 401)


async def test_unknown_route_is_a_not_found_envelope(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/no-such-thing")

    body = assert_error(response, 404)
    assert body["error"] == "Not found."


async def test_wrong_method_is_an_envelope(client: httpx.AsyncClient) -> None:
    response = await client.delete("/api/auth/me")

    assert_error(response, 405)


@pytest.mark.parametrize(
    "content",
    [
        b'{"email": "a@example.com", "password": ',
        b"not json at all",
        b"",
        b"[1, 2, 3]",
        b'"just a string"',
        b"null",
        b'{"email": "\xff\xfe", "password": "x"}',
        b"\xff\xfe\x00garbage",
    ],
)
async def test_malformed_body_is_a_client_error_envelope_never_500(
    client: httpx.AsyncClient, content: bytes
) -> None:
    response = await client.post(
        "/api/auth/login", content=content, headers={"Content-Type": "application/json"}
    )

    assert response.status_code in (400, 422), response.text
    assert_error(response, response.status_code)


async def test_body_with_wrong_content_type_is_a_client_error(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/auth/register",
        content=b"email=a@example.com&password=long+enough+password",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert response.status_code in (400, 415, 422), response.text
    assert_error(response, response.status_code)


async def test_replies_on_success_are_enveloped(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    register = await client.post("/api/auth/register", json=register_body())
    (mail,) = await mails_to(factory, "ann@example.com")
    assert mail.verify_path is not None
    verify = await client.post(mail.verify_path)
    login_reply = await login(client, "ann@example.com", ANNS_PASSWORD)
    me = await client.get("/api/auth/me")
    logout = await client.post("/api/auth/logout")

    assert_ok(register, 202)
    assert_ok(verify)
    assert_ok(login_reply)
    assert_ok(me)
    assert assert_ok(logout) == {"message": "Signed out."}


async def test_passwords_are_taken_exactly_as_typed(client, factory) -> None:
    # Given an account whose password starts and ends with spaces
    response = await register_and_verify(
        client,
        factory,
        {
            "email": "spaces@example.com",
            "password": "  padded secret  ",
            "name": "Sam",
            "role": "CUSTOMER",
        },
    )
    assert response.status_code == 200
    # Then only the exact password signs in (before, spaces were silently stripped).
    exact = await client.post(
        "/api/auth/login", json={"email": "spaces@example.com", "password": "  padded secret  "}
    )
    stripped = await client.post(
        "/api/auth/login", json={"email": "spaces@example.com", "password": "padded secret"}
    )
    assert exact.status_code == 200
    assert stripped.status_code == 401


async def test_a_password_of_only_spaces_is_refused(client) -> None:
    response = await client.post(
        "/api/auth/register",
        json={
            "email": "blank@example.com",
            "password": " " * 12,
            "name": "Sam",
            "role": "CUSTOMER",
        },
    )
    assert response.status_code == 422


async def test_malformed_json_names_the_body_not_a_character_offset(client) -> None:
    response = await client.post(
        "/api/auth/login", content=b'{"email": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "body"


async def test_role_refusals_read_naturally(client, factory) -> None:
    farmer = await factory.user(Role.FARMER)
    response = await client.post(
        "/api/orders/bulk-status",
        json={"orderIds": ["x"], "status": "CONFIRMED"},
        headers=await factory.headers(farmer),
    )
    assert response.status_code == 403
    assert response.json()["error"] == "Only an admin can do that."


# The session cache across processes


async def test_signing_out_through_one_server_ends_the_session_on_another(
    database_url: str, tmp_path: Path
) -> None:
    """Two servers on one database (the in-process bus: each hub catches up from the
    database): the other server's cached session is cleared by the ACCOUNT_CHANGED event."""
    async with (
        app_client(database_url, tmp_path / "a", event_poll_interval_seconds=0.1) as (a, fa, _),
        app_client(database_url, tmp_path / "b", event_poll_interval_seconds=0.1) as (b, _, _),
    ):
        user = await fa.user()
        headers = await fa.headers(user)
        assert_ok(await b.get("/api/auth/me", headers=headers))  # cached by server b
        assert_ok(await b.get("/api/auth/me", headers=headers))

        assert_ok(await a.post("/api/auth/logout", headers=headers))

        for _ in range(100):
            if (await b.get("/api/auth/me", headers=headers)).status_code == 401:
                break
            await asyncio.sleep(0.05)
        assert_error(await b.get("/api/auth/me", headers=headers), 401)


async def test_a_profile_change_is_seen_at_once_by_the_cached_session(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    user = await factory.user()
    headers = await factory.headers(user)
    assert_ok(await client.get("/api/auth/me", headers=headers))

    assert_ok(await client.patch("/api/me", json={"name": "Renamed"}, headers=headers))

    assert assert_ok(await client.get("/api/auth/me", headers=headers))["name"] == "Renamed"
