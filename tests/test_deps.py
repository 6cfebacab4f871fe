"""Request dependencies against hostile input: a cookie-authenticated write with an Origin
header that is not even a URL is refused, not a 500."""

from __future__ import annotations

import pytest

from farmstand.deps import SESSION_COOKIE


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


@pytest.mark.parametrize("origin", ["http://[", "http://[::1", "https://]", "http://a:99999"])
async def test_an_origin_that_is_not_a_url_is_a_cross_site_refusal(factory, client, origin):
    client.cookies.set(SESSION_COOKIE, await factory.token(await factory.user()))
    response = await client.post("/api/notifications/read-all", headers={"Origin": origin})
    assert response.status_code == 403
    assert response.json()["success"] is False


async def test_the_same_origin_still_works(factory, client):
    client.cookies.set(SESSION_COOKIE, await factory.token(await factory.user()))
    response = await client.post(
        "/api/notifications/read-all", headers={"Origin": "http://testserver"}
    )
    assert response.status_code == 200
