"""The edge: turning errors into the JSON envelope ``{"success": false, "error", "details"}``.

Installed by ``create_app``. Domain code raises ``farmstand.errors`` types (pure, carrying a
status and data such as ``retry_after``); only this module knows about HTTP responses and
headers.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from farmstand.errors import FarmstandError, TooManyRequests
from farmstand.observability.request_id import request_id_of
from farmstand.shedding import BUSY_MESSAGE

log = logging.getLogger(__name__)


def error_body(message: str, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"success": False, "error": message}
    if details is not None:
        body["details"] = details
    return body


_HTTP_MESSAGES = {
    400: "The request is invalid.",
    401: "Sign in to continue.",
    403: "You are not allowed to do that.",
    404: "Not found.",
    405: "Method not allowed.",
    406: "Not acceptable.",
    413: "The request is too large.",
    415: "Unsupported media type.",
}


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    details = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ())]
        if error.get("type") == "json_invalid":  # loc holds a character offset, not a field
            loc = loc[:1]
        details.append(
            {
                "field": ".".join(loc[1:]) if len(loc) > 1 else ".".join(loc),
                "location": loc[0] if loc else "body",
                "message": str(error.get("msg", "Invalid value")).removeprefix("Value error, "),
                "type": error.get("type", "value_error"),
            }
        )
    return details


def error_headers(exc: FarmstandError) -> dict[str, str] | None:
    """The HTTP headers an error's data calls for: Retry-After for a refusal with a wait."""
    if isinstance(exc, TooManyRequests) and exc.retry_after is not None:
        return {"Retry-After": str(max(0, exc.retry_after))}
    return None


def _route_of(request: Request) -> str:
    """The route's template (``/api/notifications/unsubscribe/{token}``), never the path: a
    path can carry a secret (an unsubscribe token), and logs keep none."""
    route = request.scope.get("route")
    return getattr(route, "path", None) or "other"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FarmstandError)
    async def _farmstand_error(_request: Request, exc: FarmstandError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.message, exc.details),
            status_code=exc.status_code,
            headers=error_headers(exc),
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            error_body("The request is invalid.", _validation_details(exc)), status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = _HTTP_MESSAGES.get(exc.status_code, "The request could not be processed.")
        return JSONResponse(
            error_body(message), status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(PoolTimeout)
    async def _pool_timeout(request: Request, _exc: PoolTimeout) -> JSONResponse:
        # Every connection stayed busy for db_pool_timeout_seconds: the server is overloaded.
        log.warning("no database connection within the pool timeout: %s", _route_of(request))
        return _busy(request, "db_pool")

    @app.exception_handler(DBAPIError)
    async def _database_error(request: Request, exc: DBAPIError) -> JSONResponse:
        # A NUL character in a path or query value reaches PostgreSQL, which refuses it
        # (SQLSTATE 22021): the request is at fault, not the server.
        if getattr(exc.orig, "sqlstate", None) == "22021":
            return JSONResponse(error_body("The request contains invalid characters."), 400)
        if database_unavailable(exc):
            # The database turned the work away (no connection slot left, starting up or
            # shutting down, out of resources; SQLite's write lock not had within its busy
            # timeout): overload, as with the pool timeout.
            log.warning(
                "the database refused the work (%s): %s",
                _sqlstate_or_message(exc),
                _route_of(request),
            )
            return _busy(request, "db_unavailable")
        raise exc


def _busy(request: Request, reason: str) -> JSONResponse:
    """503 for a request refused under overload, counted by ``reason``. Nothing was written,
    so the client may try again."""
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is not None:
        runtime.note_shed(reason)
    return JSONResponse(error_body(BUSY_MESSAGE), status_code=503, headers={"Retry-After": "2"})


def database_unavailable(exc: DBAPIError) -> bool:
    """PostgreSQL's class 53 (insufficient resources: too many connections, out of memory or
    disk) or 57P03 (cannot connect now), or SQLite's "database is locked"."""
    code = getattr(exc.orig, "sqlstate", None) or ""
    if code.startswith("53") or code == "57P03":
        return True
    return "database is locked" in str(exc.orig)


def _sqlstate_or_message(exc: DBAPIError) -> str:
    return getattr(exc.orig, "sqlstate", None) or str(exc.orig)[:80]


async def answer_bug(scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
    """An unexpected exception before the reply started: logged once with its request id,
    answered with the generic 500 (a page for a page's route, the envelope otherwise).

    Called by the request-line middleware (``observability.middleware``), not installed as an
    ``Exception`` handler: Starlette runs such a handler in its ServerErrorMiddleware, which
    re-raises after replying, so the server logged every bug a second time ("Exception in
    ASGI application").
    """
    request = Request(scope)
    request_id = request_id_of(scope)
    log.error(
        "unhandled error on %s %s (request %s)",
        request.method,
        _route_of(request),
        request_id,
        exc_info=exc,
        extra={"request_id": request_id},
    )
    # X-Request-ID is added by the request-line middleware.
    page = getattr(scope.get("route"), "unexpected_error", None)
    response = (
        page(request, request_id)
        if page is not None
        else JSONResponse(
            error_body("Something went wrong on our side.", {"requestId": request_id}),
            status_code=500,
        )
    )
    await response(scope, receive, send)
