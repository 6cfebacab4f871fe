"""The app shell: the API docs page works offline, health check."""

from __future__ import annotations

import re


async def test_api_docs_page_loads_its_assets_from_this_server(client) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    # Every asset is ours (no CDN: the servers have no internet), and each one is served.
    assert assets and all(url.startswith("/static/") for url in assets), assets
    for url in assets:
        response = await client.get(url)
        assert response.status_code == 200, url
        assert len(response.content) > 0
    schema = await client.get("/openapi.json")
    assert schema.json()["info"]["title"] == "Farmstand"


async def test_health_check(client) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
