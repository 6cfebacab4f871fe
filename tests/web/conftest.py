"""Browser tests: a real server (``farmstand serve``) on a SQLite database, Debian's chromium
driven by Playwright, screenshots of every page at phone and desktop widths, and axe."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Response,
    async_playwright,
    expect,
)

from farmstand.accounts.models import User
from farmstand.app import build_runtime
from tests import services
from tests.conftest import TEST_SECRET, make_settings
from tests.factories import PASSWORD, Factory
from tests.live import ROOT, ServerProcess

SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WIDTHS = (360, 1280)
# An assertion passes as soon as it holds; the wait only matters on a host slowed by a whole
# parallel run, where a live update can take longer than Playwright's default 5 s.
expect.set_options(timeout=15_000)
SERIOUS = ("serious", "critical")


@dataclass
class Site:
    url: str
    seed: Factory
    server: ServerProcess

    async def api_token(self, user: User) -> str:
        async with httpx.AsyncClient(base_url=self.url) as http:
            reply = await http.post(
                "/api/auth/login", json={"email": user.email, "password": PASSWORD}
            )
            reply.raise_for_status()
            return str(reply.json()["data"]["token"])

    async def api(self, user: User, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A call to the JSON API as ``user`` (the farmer's side of a test)."""
        headers = {"Authorization": f"Bearer {await self.api_token(user)}"}
        async with httpx.AsyncClient(base_url=self.url, headers=headers) as http:
            return await http.request(method, path, **kwargs)


@pytest.fixture(scope="module")
def chromium() -> str:
    return services.require_browser()


@pytest.fixture(scope="module")
async def site(
    chromium: str, sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Site]:
    data = tmp_path_factory.mktemp("site")
    database = data / "farmstand.db"
    shutil.copyfile(sqlite_template, database)
    url = f"sqlite+aiosqlite:///{database}"
    server = ServerProcess(
        {
            "FARMSTAND_DATABASE_URL": url,
            "FARMSTAND_SECRET_KEY": TEST_SECRET,
            "FARMSTAND_DATA_DIR": str(data),
            "FARMSTAND_PASSWORD_HASH_TIME_COST": "1",
            "FARMSTAND_PASSWORD_HASH_MEMORY_KIB": "64",
            "FARMSTAND_LOG_LEVEL": "WARNING",
        },
        log_path=data / "server.log",
    )
    server.env["FARMSTAND_BASE_URL"] = server.url
    server.start()
    runtime = build_runtime(make_settings(url, data))
    try:
        yield Site(url=server.url, seed=Factory(runtime), server=server)
    finally:
        server.stop()
        await runtime.db.dispose()


@pytest.fixture(scope="module")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class Watched:
    """A browser context whose pages' console errors (a CSP refusal, a failed script) fail the
    test."""

    context: BrowserContext
    problems: list[str] = field(default_factory=list)

    async def new_page(self) -> Page:
        page = await self.context.new_page()
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("response", self._response)
        return page

    def _console(self, message: ConsoleMessage) -> None:
        # A refused form answers its page with a 4xx, which the console reports too; failed
        # scripts, styles and requests are caught by ``_response`` instead.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.problems.append(f"console: {message.text}")

    def _response(self, response: Response) -> None:
        if response.status >= 400 and response.request.resource_type != "document":
            self.problems.append(f"{response.status} for {response.url}")


async def _watched(browser: Browser, **options: Any) -> AsyncIterator[Watched]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, **options)
    watched = Watched(context)
    try:
        yield watched
    finally:
        await context.close()
    assert watched.problems == []


@pytest.fixture
async def browsing(browser: Browser) -> AsyncIterator[Watched]:
    async for watched in _watched(browser):
        yield watched


@pytest.fixture
async def browsing_without_js(browser: Browser) -> AsyncIterator[Watched]:
    async for watched in _watched(browser, java_script_enabled=False):
        yield watched


@pytest.fixture(scope="session")
def screenshots() -> Iterator[Path]:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield SCREENSHOTS


_axe = Axe()


async def check_page(page: Page, name: str, folder: Path, *, axe: bool = True) -> None:
    """Screenshots at a phone's and a desktop's width, and no serious or critical axe
    violation at either. (axe is a script: ``axe=False`` where scripts are off.)"""
    for width in WIDTHS:
        await page.set_viewport_size({"width": width, "height": 800})
        await page.screenshot(path=str(folder / f"{name}-{width}.png"), full_page=True)
        if not axe:
            continue
        results = await _axe.run(page)
        serious = [
            f"{v['id']} ({v['impact']}): {v['help']} at "
            + ", ".join(str(node["target"]) for node in v["nodes"])
            for v in results.response["violations"]
            if v.get("impact") in SERIOUS
        ]
        assert serious == [], f"{name} at {width} px: {serious}"
    await page.set_viewport_size({"width": 1280, "height": 900})


async def sign_in(page: Page, site: Site, user: User, *, start: str = "/login") -> None:
    await page.goto(site.url + start)
    await page.get_by_label("Email").fill(user.email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.locator("main").get_by_role("button", name="Sign in").click()
    await page.wait_for_url(lambda url: "/login" not in url)
