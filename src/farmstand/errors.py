"""Typed errors carrying their HTTP status, and the handlers that render the envelope."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class FarmstandError(Exception):
    """A failure the user can act on; ``message`` is safe to show."""

    status_code = 400
    message = "The request could not be processed."

    def __init__(
        self,
        message: str | None = None,
        *,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.message
        self.details = details
        self.headers = headers
        super().__init__(self.message)


class BadRequest(FarmstandError):
    status_code = 400
    message = "The request is invalid."


class Unauthenticated(FarmstandError):
    status_code = 401
    message = "Sign in to continue."


class Forbidden(FarmstandError):
    status_code = 403
    message = "You are not allowed to do that."


class NotFound(FarmstandError):
    status_code = 404
    message = "Not found."


class Conflict(FarmstandError):
    status_code = 409
    message = "The request conflicts with the current state; reload and try again."


class Unprocessable(FarmstandError):
    status_code = 422
    message = "The request is invalid."


class ServiceUnavailable(FarmstandError):
    status_code = 503
    message = "This service is not available right now."


class TooManyRequests(FarmstandError):
    status_code = 429
    message = "Too many attempts; try again later."


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


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FarmstandError)
    async def _farmstand_error(_request: Request, exc: FarmstandError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.message, exc.details), status_code=exc.status_code, headers=exc.headers
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

    @app.exception_handler(DBAPIError)
    async def _database_error(_request: Request, exc: DBAPIError) -> JSONResponse:
        # A NUL character in a path or query value reaches PostgreSQL, which refuses it
        # (SQLSTATE 22021): the request is at fault, not the server.
        if getattr(exc.orig, "sqlstate", None) == "22021":
            return JSONResponse(error_body("The request contains invalid characters."), 400)
        raise exc

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        log.error(
            "unhandled error on %s %s (request %s)",
            request.method,
            request.url.path,
            request_id,
            exc_info=exc,
        )
        return JSONResponse(
            error_body("Something went wrong on our side.", {"requestId": request_id}),
            status_code=500,
            headers={"X-Request-ID": request_id},
        )
