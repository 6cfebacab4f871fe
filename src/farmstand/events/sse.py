"""The SSE response: a stream's frames onto the socket, with as little as possible per stream.

An open stream is its request's own task, waiting on its subscription's one future, plus one
task waiting for the client to go away; it runs outside the framework's per-request layers
(``StreamHandoff``). The hub's single timer asks for heartbeats; each event is encoded once by
the hub and written, with whatever else is pending, in one send. sse-starlette's
``EventSourceResponse``, used before, ran a task group of four tasks per stream (sender,
pinger, disconnect listener, exit-signal watcher) inside the whole request stack: five tasks,
about 290 objects and 55 KB per stream against two, about 80 and 20 KB
(docs/real-time-events.md).

How a stream ends, and how the response is finished each time (uvicorn must never see an
unfinished response, which it logs as an error):

- the client goes away: ``receive()`` returns ``http.disconnect`` (uvicorn's ``send()`` then
  does nothing); the waiter ends the subscription and the response returns;
- the server stops: the hub ends every subscription; each response sends its last chunk;
- the client falls ``sse_queue_size`` frames behind: an ``OVERFLOW`` frame, then the last chunk;
- the session that opened it ends (signed out, revoked, expired), or its user may no longer see
  what it carries: a ``SESSION_ENDED`` or ``ACCESS_ENDED`` frame, then the last chunk;
- the client stops reading, so a send waits more than ``sse_send_timeout_seconds``: the
  connection is aborted (under uvicorn, whose request cycle holds the transport; elsewhere the
  last chunk is given one more timeout), and the client reconnects and resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as AsgiScope

from farmstand.events.hub import CloseReason, Subscription
from farmstand.events.streams import EventStream

log = logging.getLogger(__name__)

HEADERS = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"connection", b"keep-alive"),
    (b"x-accel-buffering", b"no"),  # nginx: don't buffer the stream
)
LAST: Message = {"type": "http.response.body", "body": b"", "more_body": False}
HANDOFF = "farmstand.sse.handoff"  # the scope key StreamHandoff offers a stream's response


class _SlowClient(Exception):
    """A send waited longer than the send timeout: the client is not reading."""


class _ClientGone(Exception):
    """A send failed because the client has gone (servers on ASGI 2.4 raise ``OSError``)."""


class EventStreamResponse(Response):
    """``text/event-stream`` for one :class:`EventStream` (a lean ASGI response)."""

    # Left unset: FastAPI would otherwise document the JSON error replies of these routes as
    # text/event-stream. The 200 reply's content is declared on the routes.
    media_type = None

    def __init__(self, stream: EventStream, *, send_timeout: float, status_code: int = 200) -> None:
        # Response.__init__ would render a body; a stream has none up front. (FastAPI reads
        # the default status code from this signature for the OpenAPI document.)
        self.stream = stream
        self.send_timeout = send_timeout
        self.status_code = status_code
        self.background = None
        self.raw_headers = list(HEADERS)

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        start = {"type": "http.response.start", "status": self.status_code}
        await send({**start, "headers": self.raw_headers})
        if scope.get("method") == "HEAD":  # headers only: a HEAD must not open a stream
            await send(LAST)
            return
        if HANDOFF in scope and scope[HANDOFF] is None:
            scope[HANDOFF] = self  # StreamHandoff streams the body once the framework returns
            return
        await self.stream_body(receive, send)

    async def stream_body(self, receive: Receive, send: Send) -> None:
        """Everything after the response head, until the stream ends."""
        hub = self.stream.hub
        sub = hub.subscribe(self.stream.scope, self.stream.owner)
        watcher = asyncio.ensure_future(_until_disconnect(receive, sub))
        try:
            try:
                await self._stream(send, sub)
            except _SlowClient:
                sub.end(CloseReason.SLOW)
            except _ClientGone:
                sub.end(CloseReason.CLIENT)
            except asyncio.CancelledError:
                sub.end(CloseReason.SHUTDOWN)
                raise
            finally:
                hub.unsubscribe(sub)  # an unexpected exception counts as ERROR
            assert sub.ended is not None
            await self._finish(sub, receive, send, watcher)
        finally:
            watcher.cancel()

    async def _stream(self, send: Send, sub: Subscription) -> None:
        await self._open(send, sub)
        stream, hub = self.stream, self.stream.hub
        while True:
            frames = await sub.next()
            if sub.ended is not None:
                return
            chunk = stream.live(frames) if frames else b""
            if sub.ping:
                sub.ping = False
                chunk = chunk or hub.heartbeat_frame
            if chunk:
                await self._write(send, chunk)

    async def _open(self, send: Send, sub: Subscription) -> None:
        async with contextlib.aclosing(self.stream.opening(sub)) as opening:
            async for chunk in opening:
                if sub.ended is not None:
                    return
                await self._write(send, chunk)

    async def _write(self, send: Send, body: bytes) -> None:
        try:
            async with asyncio.timeout(self.send_timeout):
                await send({"type": "http.response.body", "body": body, "more_body": True})
        except TimeoutError:
            raise _SlowClient() from None
        except OSError:
            raise _ClientGone() from None

    async def _finish(
        self, sub: Subscription, receive: Receive, send: Send, watcher: asyncio.Future[None]
    ) -> None:
        """End the response properly for each way a stream can end."""
        reason = sub.ended
        assert reason is not None
        if reason is CloseReason.CLIENT:
            log.debug("event stream closed by its client")
            return
        if reason is not CloseReason.SLOW:
            if reason is CloseReason.OVERFLOW:
                log.info("closed an event stream too slow to keep up (it resumes)")
            body = self.stream.last_frame(reason, sub.note)
            try:
                async with asyncio.timeout(self.send_timeout):
                    if body:
                        await send({"type": "http.response.body", "body": body, "more_body": True})
                    await send(LAST)
                return
            except OSError:  # gone meanwhile
                return
            except TimeoutError:
                pass
        log.info(
            "dropped an event stream whose client stopped reading for %ss (it resumes)",
            self.send_timeout,
        )
        transport = _transport_of(receive)
        if transport is not None:
            # Drop what it has not read: the connection goes, uvicorn sees the disconnect.
            transport.abort()
            await asyncio.wait({watcher}, timeout=1)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.send_timeout):
                await send(LAST)


class StreamHandoff:
    """ASGI middleware: event streams run outside the framework's per-request layers.

    FastAPI answers the request as for any other (authentication, authorisation, parameters,
    error replies) and the stream's response sends its head; then, instead of streaming from
    inside the router, the route, the dependency exit stacks, the exception wrappers and the
    request objects, which would all stay alive as long as the stream (about 70 objects per
    stream, each walked by every full garbage collection), the response hands itself over and
    streams here once they have returned. Keep this the innermost user middleware (added
    first): a middleware inside it sees a stream's request end when the stream starts.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        mark = len(scope)
        scope[HANDOFF] = None  # a slot for an event stream's response
        await self.app(scope, receive, send)
        response = scope.pop(HANDOFF, None)
        if response is None:
            return
        # What the framework added to the scope (its exit stacks, the route) is dead weight.
        for key in list(scope)[mark:]:
            del scope[key]
        await response.stream_body(receive, send)


async def _until_disconnect(receive: Receive, sub: Subscription) -> None:
    """The stream's one extra waiter: uvicorn's ``receive()`` returns ``http.disconnect`` as
    soon as the connection is lost (a GET's empty body comes first)."""
    try:
        while (await receive())["type"] != "http.disconnect":
            pass
    except Exception:  # a server that fails receive() after the end: gone all the same
        log.debug("receive() failed on an event stream", exc_info=True)
    sub.end(CloseReason.CLIENT)


def _transport_of(receive: Receive) -> Any:
    """The connection's transport under uvicorn (whose ``receive`` is a method of the request
    cycle that holds it), to abort a connection that stopped draining; else None."""
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    return transport if callable(getattr(transport, "abort", None)) else None


def server_stopping(app: object) -> Callable[[], bool] | None:
    """A check for "the uvicorn server running ``app`` has begun to shut down", or None.

    uvicorn waits for open responses to finish before it runs the app's shutdown, so streams
    must end when the server starts stopping, not at the app's shutdown. Its flag is on the
    ``Server``, whose ``handle_exit`` is this process's SIGTERM handler while it serves (call
    this from the app's start-up). The server is used only if it serves this very app.
    """
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    served = getattr(getattr(server, "config", None), "loaded_app", None)
    while served is not None and served is not app:
        served = getattr(served, "app", None)  # through uvicorn's middleware
    if served is None or server is None or not hasattr(server, "should_exit"):
        return None
    running = server
    return lambda: bool(running.should_exit)
