"""Two pure ASGI layers every reply passes through: a cap on request bodies, and the security
headers.

Both are cheap on purpose (they run on every request, live streams included): no Request
object, headers precomputed once, one pass over the request's or reply's header list.
"""

from __future__ import annotations

import hashlib
import json
import re
from base64 import b64encode

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOO_LARGE_MESSAGE = "The request is too large."
_TOO_LARGE_BODY = json.dumps({"success": False, "error": TOO_LARGE_MESSAGE}).encode()
_BAD_LENGTH_BODY = json.dumps(
    {"success": False, "error": "The Content-Length header is invalid."}
).encode()
_BODYLESS = frozenset({"GET", "HEAD"})


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the cap (the app's handler for
    HTTP errors answers it with the envelope and 413)."""

    def __init__(self) -> None:
        super().__init__(status_code=413, detail=TOO_LARGE_MESSAGE)


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with 413, without reading them.

    A declared Content-Length over the cap is refused before the app runs. A body without
    one (chunked) is counted as the app reads it, chunk by chunk, never buffered here: past
    the cap, ``receive`` raises ``BodyTooLarge``. A request with a Content-Length within the
    cap is passed on untouched (the server delivers no more than it declares), and so is a
    GET or HEAD with neither header (no body), so the common requests cost one header scan.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared: bytes | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
            elif name == b"transfer-encoding":
                chunked = True
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                length = -1
            if length < 0:
                await _reply(send, 400, _BAD_LENGTH_BODY)
            elif length > self.max_bytes:
                await _reply(send, 413, _TOO_LARGE_BODY)
            else:
                await self.app(scope, receive, send)
            return
        if not chunked and scope["method"] in _BODYLESS:
            await self.app(scope, receive, send)
            return
        await self._counted(scope, receive, send)

    async def _counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0
        started = False

        async def receive_counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge()
            return message

        async def send_started(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive_counted, send_started)
        except BodyTooLarge:
            # Read outside the app's error handlers (by a middleware): answer it here.
            if started:
                raise
            await _reply(send, 413, _TOO_LARGE_BODY)


async def _reply(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),  # the unread body is not worth reading
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# -- security headers -------------------------------------------------------------------------

# The JSON API loads nothing and is framed by nobody.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# Our HTML pages (the unsubscribe page): our own styles and scripts only, no inline code.
HTML_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def inline_script_csp(html: str) -> str:
    """The HTML policy, also allowing exactly the inline scripts of ``html`` (by hash): for a
    page generated once, such as the API docs (whose widgets also set inline styles)."""
    hashes = " ".join(
        "'sha256-" + b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in re.findall(r"<script>(.*?)</script>", html, flags=re.DOTALL)
    )
    return (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    )


_COMMON = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


class SecurityHeaders:
    """Adds the security headers to every reply: JSON, HTML pages, static files, event
    streams and error replies, the 500 included (wrap the whole app, outside Starlette's
    ``ServerErrorMiddleware``).

    The Content-Security-Policy depends on what the reply is (HTML or not) unless the route
    set its own, and the Referrer-Policy is ``no-referrer`` unless the route set its own.
    ``Strict-Transport-Security`` only on requests that came over https (directly,
    or through a trusted proxy's X-Forwarded-Proto, which the server applies to the scheme).
    """

    def __init__(self, app: ASGIApp, *, hsts_max_age: int) -> None:
        self.app = app
        api = (b"content-security-policy", API_CSP.encode())
        html = (b"content-security-policy", HTML_CSP.encode())
        hsts = (b"strict-transport-security", f"max-age={hsts_max_age}".encode())
        self._api = [*_COMMON, api]
        self._html = [*_COMMON, html]
        self._own_csp = list(_COMMON)
        self._api_https = [*self._api, hsts] if hsts_max_age > 0 else self._api
        self._html_https = [*self._html, hsts] if hsts_max_age > 0 else self._html
        self._own_csp_https = [*self._own_csp, hsts] if hsts_max_age > 0 else self._own_csp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", ())
                kind = 0  # 0: API, 1: HTML, 2: the reply has its own policy
                own_referrer = False
                for name, value in headers:
                    if name == b"content-security-policy":
                        kind = 2
                    elif name == b"content-type" and value.startswith(b"text/html") and kind == 0:
                        kind = 1
                    elif name == b"referrer-policy":
                        own_referrer = True
                if kind == 0:
                    extra = self._api_https if https else self._api
                elif kind == 1:
                    extra = self._html_https if https else self._html
                else:
                    extra = self._own_csp_https if https else self._own_csp
                if own_referrer:  # the pages' own (same-origin: see farmstand.web.pages)
                    extra = [header for header in extra if header[0] != b"referrer-policy"]
                message["headers"] = [*headers, *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
