"""The pages through the app (no browser): CSRF, headers, caching, redirects, refusals."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from farmstand.accounts.roles import Role
from farmstand.config import Settings
from farmstand.http_guards import HTML_CSP
from farmstand.orders.states import OrderStatus
from farmstand.web.pages import CSRF_COOKIE, PAGE_HEADERS
from tests.conftest import make_settings
from tests.factories import PASSWORD, Factory


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url  # the pages call the services the API tests cover on both databases


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path)


def token_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, email: str) -> None:
    form = await client.get("/login")
    reply = await client.post(
        "/login", data={"csrf_token": token_of(form), "email": email, "password": PASSWORD}
    )
    assert reply.status_code == 303, reply.text


async def test_signed_out_visitors_are_sent_to_sign_in_and_back(client):
    assert (await client.get("/")).headers["location"] == "/login"
    reply = await client.get("/orders?cursor=x")
    assert reply.status_code == 303
    assert reply.headers["location"] == "/login?next=/orders%3Fcursor%3Dx"


async def test_a_fragment_of_an_ended_session_sends_the_whole_page_to_sign_in(client):
    reply = await client.get(
        "/orders/abc/live",
        headers={"HX-Request": "true", "HX-Current-URL": "http://testserver/orders/abc"},
    )
    assert reply.status_code == 204
    assert reply.headers["hx-redirect"] == "/login?next=/orders/abc"


async def test_pages_carry_the_html_policy_same_origin_referrer_and_no_caching(client):
    page = await client.get("/login")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == HTML_CSP
    assert page.headers["referrer-policy"] == PAGE_HEADERS["Referrer-Policy"]
    assert page.headers.get_list("referrer-policy") == ["same-origin"]
    assert page.headers["cache-control"] == "no-store"
    cookie = page.headers["set-cookie"]
    assert cookie.startswith(f"{CSRF_COOKIE}=") and "HttpOnly" in cookie
    assert "samesite=lax" in cookie.lower()
    assert "<script>" not in page.text and "style=" not in page.text  # nothing inline


async def test_a_form_without_a_valid_token_is_refused(client, factory: Factory):
    customer = await factory.user(Role.CUSTOMER)
    await client.get("/login")  # the CSRF cookie
    data = {"email": customer.email, "password": PASSWORD}
    for token in (None, "forged", token_of(await client.get("/login")) + "x"):
        reply = await client.post("/login", data={**data, "csrf_token": token} if token else data)
        assert reply.status_code == 403
        assert "This form has expired" in reply.text
        assert "farmstand_session" not in reply.headers.get("set-cookie", "")


async def test_a_token_works_only_with_its_own_browser_cookie(client, factory: Factory, app):
    customer = await factory.user(Role.CUSTOMER)
    token = token_of(await client.get("/login"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as other:
        await other.get("/login")  # a cookie of its own
        reply = await other.post(
            "/login",
            data={"csrf_token": token, "email": customer.email, "password": PASSWORD},
        )
    assert reply.status_code == 403


async def test_a_token_is_bound_to_the_session_it_was_rendered_for(client, factory: Factory):
    customer = await factory.user(Role.CUSTOMER)
    signed_out_token = token_of(await client.get("/login"))
    await sign_in(client, customer.email)
    reply = await client.post("/logout", data={"csrf_token": signed_out_token})
    assert reply.status_code == 403
    page = await client.get("/orders")
    reply = await client.post("/logout", headers={"X-CSRF-Token": token_of(page)})
    assert reply.status_code == 303 and reply.headers["location"] == "/login?signed_out=1"
    assert (await client.get("/orders")).status_code == 303  # the session ended


async def test_a_form_posted_from_another_site_is_refused(client, factory: Factory):
    customer = await factory.user(Role.CUSTOMER)
    token = token_of(await client.get("/login"))
    reply = await client.post(
        "/login",
        data={"csrf_token": token, "email": customer.email, "password": PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert reply.status_code == 403


async def test_signing_in_sets_the_session_cookie_like_the_api(client, factory: Factory):
    customer = await factory.user(Role.CUSTOMER)
    form = await client.get("/login?next=//evil.example")
    reply = await client.post(
        "/login",
        data={
            "csrf_token": token_of(form),
            "email": customer.email,
            "password": PASSWORD,
            "next": "//evil.example",
        },
    )
    assert reply.headers["location"] == "/"  # never to another site
    cookie = reply.headers["set-cookie"]
    assert "farmstand_session=" in cookie and "HttpOnly" in cookie
    assert "samesite=lax" in cookie.lower() and "Secure" not in cookie  # http base URL


async def test_the_front_door_depends_on_who_signs_in(client, factory: Factory):
    farmer = await factory.user(Role.FARMER)
    farm = await factory.farm(farmer)
    order = await factory.order(farm=farm)
    await sign_in(client, farmer.email)
    assert (await client.get("/")).headers["location"] == "/orders"
    # The farm side's list of orders is its board.
    assert (await client.get("/orders")).headers["location"] == "/manage"
    assert (await client.get("/manage")).headers["location"] == f"/manage/{farm.id}"
    page = await client.get(f"/manage/{farm.id}")
    assert order.order_number in page.text
    # The farm side's order page has the farm's actions, not the customer's.
    page = await client.get(f"/orders/{order.id}")
    assert page.status_code == 200 and "I've collected it" not in page.text
    assert "For the farm" in page.text and "Confirm order" in page.text


async def test_another_customers_order_is_not_found(client, factory: Factory):
    order = await factory.order()
    someone = await factory.user(Role.CUSTOMER)
    await sign_in(client, someone.email)
    page = await client.get(f"/orders/{order.id}")
    assert page.status_code == 404 and "Not found" in page.text
    page_token = token_of(await client.get("/orders"))
    reply = await client.post(
        f"/orders/{order.id}/cancel", data={"csrf_token": page_token, "reason": "mine now"}
    )
    assert reply.status_code == 404


async def test_a_refused_cancellation_is_shown_by_the_form_and_changes_nothing(
    client, factory: Factory
):
    customer = await factory.user(Role.CUSTOMER)
    order = await factory.order(customer=customer, status=OrderStatus.CONFIRMED)
    await sign_in(client, customer.email)
    page = await client.get(f"/orders/{order.id}")
    reply = await client.post(
        f"/orders/{order.id}/cancel", data={"csrf_token": token_of(page), "reason": "too late"}
    )
    assert reply.status_code == 403  # CONFIRMED -> CANCELLED is the farm's to do
    assert 'role="alert"' in reply.text and "can no longer be cancelled here" in reply.text
    assert "Confirmed" in (await client.get(f"/orders/{order.id}")).text


async def test_the_live_fragment_announces_only_when_asked(client, factory: Factory):
    customer = await factory.user(Role.CUSTOMER)
    order = await factory.order(customer=customer)
    await sign_in(client, customer.email)
    quiet = await client.get(f"/orders/{order.id}/live")
    assert "hx-swap-oob" not in quiet.text and "Awaiting confirmation" in quiet.text
    loud = await client.get(f"/orders/{order.id}/live?announce=true")
    assert f"Order {order.order_number} is now Awaiting confirmation." in loud.text


async def test_a_shop_refuses_an_order_without_items_in_place(client, factory: Factory):
    customer = await factory.user(Role.CUSTOMER)
    farm = await factory.farm()
    await factory.product(farm, name="Kale")
    await sign_in(client, customer.email)
    page = await client.get(f"/farms/{farm.id}")
    assert "Kale" in page.text
    reply = await client.post(f"/farms/{farm.id}/orders", data={"csrf_token": token_of(page)})
    assert reply.status_code == 422
    assert "Choose how many of at least one product" in reply.text


async def test_static_assets_with_a_content_hash_are_cached_for_a_year(client):
    page = await client.get("/login")
    css = re.search(r'href="(/static/site\.css\?v=[0-9a-f]+)"', page.text)
    assert css
    versioned = await client.get(css.group(1))
    assert versioned.headers["cache-control"] == "public, max-age=31536000, immutable"
    for script in re.findall(r'<script src="([^"]+)"', page.text):
        reply = await client.get(script)
        assert reply.status_code == 200 and "immutable" in reply.headers["cache-control"]
    plain = await client.get("/static/site.css")
    assert plain.headers["cache-control"] == "no-cache"


def test_a_page_loads_less_than_100_kb_of_css_and_scripts():
    static = Path(__file__).resolve().parents[2] / "src" / "farmstand" / "web" / "static"
    from farmstand.web.pages import ASSETS

    assert sum((static / path).stat().st_size for path in ASSETS.values()) < 100_000


def test_a_missing_browser_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch):
    from tests import services

    monkeypatch.setattr(services, "CHROMIUM", "/nonexistent/chromium")
    monkeypatch.setenv("FARMSTAND_REQUIRE_SERVICES", "")
    with pytest.raises(pytest.skip.Exception):
        services.require_browser()
    monkeypatch.setenv("FARMSTAND_REQUIRE_SERVICES", "1")
    with pytest.raises(pytest.fail.Exception):
        services.require_browser()
