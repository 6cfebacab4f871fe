"""Typed errors carrying their HTTP status and a message safe to show the user.

Pure: no web framework, no database. The handlers that render these as the JSON envelope live
at the edge (``farmstand.http_errors``), so importing a domain module never loads FastAPI.
"""

from __future__ import annotations

from typing import Any


class FarmstandError(Exception):
    """A failure the user can act on; ``message`` is safe to show."""

    status_code = 400
    message = "The request could not be processed."

    def __init__(
        self,
        message: str | None = None,
        *,
        details: Any = None,
    ) -> None:
        self.message = message or self.message
        self.details = details
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
    """Refused for now; ``retry_after`` is how many seconds to wait (the edge sends it as the
    Retry-After header)."""

    status_code = 429
    message = "Too many attempts; try again later."

    def __init__(
        self, message: str | None = None, *, retry_after: int | None = None, details: Any = None
    ) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after
