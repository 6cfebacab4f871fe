"""One pure ASGI middleware per app: the request id, the latency histogram, the request line.

Cheap on purpose (it runs on every status update): no Request object, no per-request dict
beyond the log record, the route template read after routing from ``scope["route"]`` (which
the router sets), and the histogram's labelled children cached per (method, route, status).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from farmstand.observability.logs import ACCESS_LOGGER, request_id_var
from farmstand.observability.metrics import Metrics
from farmstand.observability.request_id import (
    REQUEST_ID_HEADER,
    REQUEST_ID_KEY,
    from_headers,
    new_request_id,
)

UNMATCHED_ROUTE = "other"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

_access = logging.getLogger(ACCESS_LOGGER)

# Answers an unexpected exception raised before the reply started (``http_errors.answer_bug``).
ErrorAnswer = Callable[[Scope, Receive, Send, Exception], Awaitable[None]]


class ObservabilityMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        access_log: bool = True,
        on_error: ErrorAnswer | None = None,
    ) -> None:
        self.app = app
        self._on_error = on_error
        self._histogram = metrics.http_request_duration
        self._children: dict[tuple[str, str, int], Any] = {}
        self._access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        request_id = from_headers(scope) or new_request_id()
        scope[REQUEST_ID_KEY] = request_id
        token = request_id_var.set(request_id)
        id_header = (REQUEST_ID_HEADER, request_id.encode())
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        failed = False
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if status != 0 or self._on_error is None:
                failed = True
                raise
            # A bug before the reply started: answered (and logged) here, where the reply's
            # start is already watched, rather than by a middleware of its own that would
            # wrap every request's send again (each open event stream would keep it).
            await self._on_error(scope, receive, send_with_id, exc)
        except BaseException:
            failed = True
            raise
        finally:
            if status == 0:
                # Nothing was sent: the server answers 500 for an exception; otherwise the
                # client left first (nginx's 499).
                status = 500 if failed else 499
            self._finish(scope, status, perf_counter() - start, request_id)
            request_id_var.reset(token)

    def _finish(self, scope: Scope, status: int, seconds: float, request_id: str) -> None:
        route = scope.get("route")
        if route is not None:
            path = route.path
        elif "endpoint" in scope:  # a mounted app (/static): its prefix, which is fixed
            path = scope.get("root_path", "") + "/{path}"
        else:
            path = UNMATCHED_ROUTE
        method = scope["method"]
        if method not in KNOWN_METHODS:
            method = "other"
        key = (method, path, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._histogram.labels(method, path, str(status))
        child.observe(seconds)
        if self._access_log and _access.isEnabledFor(logging.INFO):
            client = scope.get("client")
            address = client[0] if client else "-"
            duration_ms = round(seconds * 1000, 2)
            _access.info(
                "%s %s %d %.1fms id=%s client=%s",
                method,
                path,
                status,
                duration_ms,
                request_id,
                address,
                extra={
                    "method": method,
                    "route": path,
                    "status": status,
                    "duration_ms": duration_ms,
                    "request_id": request_id,
                    "client": address,
                },
            )
