"""Shedding load early: a busy server answers 503 with Retry-After at once, instead of queueing
requests until they time out with a 500.

Two limits: a cap on the requests a process handles at once (``max_requests_in_flight``; live
event streams are long-lived and not counted), checked before any work is done, and a bounded
wait for a database connection (``db_pool_timeout_seconds``; see ``errors``). A refused request
wrote nothing, so the client can safely try again.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

BUSY_MESSAGE = "The server is busy; try again in a moment."
BUSY_BODY = json.dumps({"success": False, "error": BUSY_MESSAGE}).encode()
RETRY_AFTER_SECONDS = 1
# Streams are long-lived by design; health checks and scrapes must answer a busy server.
UNCOUNTED_PREFIXES = ("/api/events", "/api/orders/events", "/healthz", "/metrics")


class InFlightLimit:
    """Pure ASGI middleware (cheap: one comparison and two integer updates per request)."""

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        on_shed: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.limit = limit
        self.in_flight = 0
        self.shed = 0
        self._on_shed = on_shed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or self.limit <= 0
            or scope["path"].startswith(UNCOUNTED_PREFIXES)
        ):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            self.shed += 1
            if self._on_shed is not None:
                self._on_shed("in_flight")
            await send_busy(send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


async def send_busy(send: Send, retry_after: int = RETRY_AFTER_SECONDS) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(BUSY_BODY)).encode()),
                (b"retry-after", str(retry_after).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": BUSY_BODY})
