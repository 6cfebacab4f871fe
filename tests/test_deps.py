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


def _dependencies(dependant):
    for sub in dependant.dependencies:
        yield sub
        yield from _dependencies(sub)


def test_no_dependency_runs_in_the_thread_pool(settings):
    """FastAPI runs a plain-function dependency in its thread pool: a thread hop per request,
    and a request that waits for a free thread when others hold them (order placement and
    sign-in waited on one that only read the peer's address)."""
    import inspect

    from farmstand.app import create_app
    from farmstand.deps import _api_routes

    app = create_app(settings)
    routes = list(_api_routes(app.routes))
    assert len(routes) > 50
    sync = {
        f"{route.path}: {sub.call.__qualname__}"
        for route in routes
        for sub in _dependencies(route.dependant)
        if sub.call is not None
        and not inspect.iscoroutinefunction(sub.call)
        and not inspect.isasyncgenfunction(sub.call)
    }
    assert not sync, sorted(sync)
