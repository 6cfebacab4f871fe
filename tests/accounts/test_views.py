"""The account pages through the app (no browser): profile, password change (other sessions
end, this one stays signed in), and resending the verification email without telling who has
an account."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from farmstand.config import Settings
from farmstand.deps import SESSION_COOKIE
from tests.accounts.helpers import mails_to
from tests.accounts.test_api import register_body
from tests.conftest import make_settings
from tests.factories import PASSWORD, Factory
from tests.web.test_pages import sign_in, token_of

NEW_PASSWORD = "a quiet barn at dawn"


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url  # the services under these pages are tested on both databases


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path)


async def test_the_profile_is_shown_and_changed(client: httpx.AsyncClient, factory: Factory):
    customer = await factory.user(name="Ann Old")
    await sign_in(client, customer.email)
    page = await client.get("/account")
    assert customer.email in page.text and 'value="Ann Old"' in page.text

    refused = await client.post(
        "/account/profile", data={"csrf_token": token_of(page), "name": " ", "phone": "12"}
    )
    assert refused.status_code == 422
    assert 'id="f-name-error">Enter your name.' in refused.text
    assert 'id="f-phone-error">Must be an international number' in refused.text
    assert 'aria-invalid="true"' in refused.text

    saved = await client.post(
        "/account/profile",
        data={"csrf_token": token_of(page), "name": "Ann New", "phone": "+1 415 555 0123"},
    )
    assert saved.headers["location"] == "/account?notice=saved"
    page = await client.get("/account?notice=saved")
    assert "Your details are saved." in page.text
    assert 'value="Ann New"' in page.text and 'value="+14155550123"' in page.text
    assert '<a class="who" href="/account" aria-current="page">Ann New</a>' in page.text


async def test_changing_the_password_ends_other_sessions_and_keeps_this_one(
    client: httpx.AsyncClient, factory: Factory
):
    customer = await factory.user()
    other_device = await factory.headers(customer)
    await sign_in(client, customer.email)
    page = await client.get("/account")
    form = {"csrf_token": token_of(page), "current_password": PASSWORD}

    mismatch = await client.post(
        "/account/password",
        data={**form, "new_password": NEW_PASSWORD, "new_password_again": "something else"},
    )
    assert mismatch.status_code == 422
    assert "The two new passwords are not the same." in mismatch.text
    weak = await client.post(
        "/account/password",
        data={**form, "new_password": "password", "new_password_again": "password"},
    )
    assert weak.status_code == 422 and 'id="f-new_password-error"' in weak.text
    wrong = await client.post(
        "/account/password",
        data={
            **form,
            "current_password": "not my password",
            "new_password": NEW_PASSWORD,
            "new_password_again": NEW_PASSWORD,
        },
    )
    assert wrong.status_code == 422
    assert 'id="f-current_password-error">The current password is not right.' in wrong.text
    assert (await client.get("/api/auth/me", headers=other_device)).status_code == 200

    changed = await client.post(
        "/account/password",
        data={**form, "new_password": NEW_PASSWORD, "new_password_again": NEW_PASSWORD},
    )
    assert changed.status_code == 303
    assert SESSION_COOKIE in changed.cookies
    page = await client.get(changed.headers["location"])
    assert page.status_code == 200 and "Your password is changed." in page.text
    assert (await client.get("/api/auth/me", headers=other_device)).status_code == 401


async def test_resending_the_email_says_the_same_whoever_asks(
    client: httpx.AsyncClient, factory: Factory
):
    await client.post("/api/auth/register", json=register_body())
    member = await factory.user(email="member@example.com")
    answers = []
    for email in ("ann@example.com", "nobody@example.com", member.email):
        page = await client.get("/register/resend")
        reply = await client.post(
            "/register/resend", data={"csrf_token": token_of(page), "email": email}
        )
        assert reply.status_code == 303
        answers.append((await client.get(reply.headers["location"])).text)
    assert answers[0] == answers[1] == answers[2]
    assert "If a registration for this email is waiting" in answers[0]
    assert len(await mails_to(factory, "ann@example.com")) == 2
    assert not await mails_to(factory, "nobody@example.com")
    assert not await mails_to(factory, member.email)


async def test_resend_refuses_a_malformed_email_in_place(client: httpx.AsyncClient):
    page = await client.get("/register/resend")
    refused = await client.post(
        "/register/resend", data={"csrf_token": token_of(page), "email": "not an email"}
    )
    assert refused.status_code == 422
    assert 'id="f-email-error">Enter the email address you signed up with.' in refused.text
    assert 'value="not an email"' in refused.text
    assert (await client.post("/register/resend", data={"email": "a@b.example"})).status_code == 403


async def test_the_session_probe_answers_who_is_signed_in(
    client: httpx.AsyncClient, factory: Factory
):
    assert (await client.get("/session")).status_code == 401
    await sign_in(client, (await factory.user()).email)
    reply = await client.get("/session")
    assert reply.status_code == 204 and reply.headers["cache-control"] == "no-store"
