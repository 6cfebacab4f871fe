"""The request id: the client's ``X-Request-ID`` when it is a sane token, else a new one; the
same id in the response header, the request's log line and the 500 handler's reply."""

from __future__ import annotations

import os
import re
from collections.abc import MutableMapping
from typing import Any

REQUEST_ID_KEY = "farmstand.request_id"  # where the middleware keeps it in the ASGI scope
REQUEST_ID_HEADER = b"x-request-id"

# A proxy or load balancer usually sets one. Accepted only as a short token, so it cannot carry
# a secret of any size, spaces or control characters into the logs.
_SANE = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}")


def new_request_id() -> str:
    return os.urandom(16).hex()


def sane_request_id(value: str | bytes | None) -> str | None:
    if value is None:
        return None
    raw = value.encode("latin-1", "replace") if isinstance(value, str) else value
    return raw.decode() if _SANE.fullmatch(raw) else None


def from_headers(scope: MutableMapping[str, Any]) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER:
            return sane_request_id(value)
    return None


def request_id_of(scope: MutableMapping[str, Any]) -> str:
    """The id the middleware gave this request; outside it, one made the same way (and kept)."""
    request_id = scope.get(REQUEST_ID_KEY)
    if request_id is None:
        request_id = scope[REQUEST_ID_KEY] = from_headers(scope) or new_request_id()
    return str(request_id)
