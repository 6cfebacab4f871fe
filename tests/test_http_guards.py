"""The request body cap and the security headers, on every kind of reply."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from farmstand.accounts.roles import Role
from farmstand.app import create_app
from farmstand.config import Settings
from farmstand.http_guards import API_CSP, HTML_CSP
from tests import services
from tests.conftest import make_settings
from tests.factories import Factory

CAP = 64 * 1024


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url  # what is checked here does not depend on the database


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path, max_request_body_bytes=CAP)


def assert_envelope(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["error"]


def assert_security_headers(response: httpx.Response, csp: str = API_CSP) -> None:
    assert response.headers["content-security-policy"] == csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cross-origin-opener-policy"] == "same-origin"


# -- body cap ---------------------------------------------------------------------------------


async def test_a_declared_body_over_the_cap_is_refused_before_it_is_read(client):
    # Given a sign-in whose Content-Length is over the cap
    body = b'{"email": "a@example.com", "password": "' + b"x" * CAP + b'"}'

    # When it is sent
    response = await client.post(
        "/api/auth/login", content=body, headers={"Content-Type": "application/json"}
    )

    # Then 413 with the envelope and the security headers
    assert_envelope(response, 413)
    assert_security_headers(response)


async def test_a_chunked_body_is_counted_and_cut_off_at_the_cap(client):
    # Given a body streamed without a length (chunked), much larger than the cap
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"email": "a@example.com", "password": "'
        for _ in range(1000):  # 16 MB if read to the end
            sent += 1
            yield b"x" * 16384

    # When it is sent
    response = await client.post(
        "/api/auth/login", content=chunks(), headers={"Content-Type": "application/json"}
    )

    # Then 413, and the server stopped reading just past the cap
    assert_envelope(response, 413)
    assert sent <= CAP // 16384 + 1


async def test_a_chunked_body_within_the_cap_goes_through(client, factory):
    user = await factory.user()

    async def chunks() -> AsyncIterator[bytes]:
        yield json.dumps({"email": user.email, "password": "wrong password"}).encode()

    response = await client.post(
        "/api/auth/login", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_envelope(response, 401)


def http_scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }


async def response_start(app: FastAPI, scope: dict[str, Any]) -> dict[str, Any]:
    """The first message the app sends (speaking ASGI directly: a stream never ends, and
    httpx always sends a true Content-Length); then the client goes away."""
    started: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    gone = asyncio.Event()
    first = True

    async def receive() -> dict[str, Any]:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start" and not started.done():
            started.set_result(dict(message))
            gone.set()

    task = asyncio.create_task(app(scope, receive, send))
    try:
        return await asyncio.wait_for(started, 10)
    finally:
        await asyncio.wait_for(task, 10)


async def test_an_invalid_content_length_is_a_400(app):
    scope = http_scope("POST", "/api/auth/login", [(b"content-length", b"-5")])
    start = await response_start(app, scope)
    assert start["status"] == 400


# -- security headers -------------------------------------------------------------------------


async def test_json_replies_and_errors_carry_the_security_headers(client, factory):
    ok = await client.get("/api/auth/me", headers=await factory.headers(await factory.user()))
    assert ok.status_code == 200
    assert_security_headers(ok)
    for response in (
        await client.get("/api/auth/me"),  # 401
        await client.get("/no-such-page"),  # 404
        await client.post("/api/auth/login", json={}),  # 422
        await client.get("/static/swagger-ui/swagger-ui.css"),  # a static file
    ):
        assert response.status_code in (200, 401, 404, 422)
        assert_security_headers(response)
        assert "strict-transport-security" not in response.headers  # plain http


async def test_an_unexpected_error_500_carries_them_too(settings: Settings):
    app = create_app(settings)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        services.lifespan(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        response = await client.get("/boom")
    assert_envelope(response, 500)
    assert_security_headers(response)


async def test_html_pages_get_the_page_policy_and_the_docs_their_own(client):
    page = await client.get("/api/notifications/unsubscribe/not-a-token")
    assert page.headers["content-type"].startswith("text/html")
    assert_security_headers(page, HTML_CSP)
    assert "<style" not in page.text and "<script" not in page.text
    assert (await client.get("/static/pages.css")).status_code == 200
    docs = await client.get("/docs")
    assert docs.status_code == 200
    policy = docs.headers["content-security-policy"]
    assert "script-src 'self' 'sha256-" in policy and "unsafe-inline" not in policy.split(";")[1]
    assert docs.headers["x-frame-options"] == "DENY"


async def test_event_streams_carry_them(app, factory):
    headers = await factory.headers(await factory.user())
    auth = (b"authorization", headers["Authorization"].encode())
    start = await response_start(app, http_scope("GET", "/api/events", [auth]))
    assert start["status"] == 200
    response = httpx.Response(start["status"], headers=start["headers"])
    assert response.headers["content-type"].startswith("text/event-stream")
    assert_security_headers(response)


async def test_hsts_only_over_https(app: FastAPI):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        secure = await client.get("/healthz")
    assert secure.headers["strict-transport-security"] == "max-age=31536000"


async def test_metrics_are_only_for_an_admin_or_the_token(client, factory: Factory):
    for role in (Role.CUSTOMER, Role.FARMER):
        headers = await factory.headers(await factory.user(role))
        assert (await client.get("/metrics", headers=headers)).status_code == 404
    assert (await client.get("/metrics")).status_code == 404
    admin = await factory.headers(await factory.user(Role.ADMIN))
    assert (await client.get("/metrics", headers=admin)).status_code == 200
