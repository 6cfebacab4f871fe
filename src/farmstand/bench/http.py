"""A minimal HTTP/1.1 keep-alive client and a Server-Sent Events reader on raw asyncio sockets.

A load generator must cost far less CPU than the server it drives; a general client (httpx)
spends more per request than the request costs the server. Here a request is bytes prepared
before the clock starts, written to a kept-alive connection, and the response is parsed only as
far as the status, the framing (Content-Length or chunked) and, when asked, the body.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

HEAD_END = b"\r\n\r\n"
NO_BODY_STATUSES = frozenset({204, 304})


class ConnectionClosed(ConnectionError):
    """The peer closed the connection before the response was complete."""


def build_request(
    method: str,
    path: str,
    host: str,
    *,
    token: str | None = None,
    body: bytes | None = None,
    extra: str = "",
) -> bytes:
    """The bytes of one request (JSON body), ready to write as many times as needed."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "User-Agent: farmstand-bench"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if body is not None:
        lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(body)}")
    head = "\r\n".join(lines) + "\r\n" + extra + "\r\n"
    return head.encode("latin-1") + (body or b"")


class _Head:
    __slots__ = ("chunked", "close", "length", "status")

    def __init__(self, raw: bytes) -> None:
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise ValueError(f"not an HTTP/1.x response: {lines[0][:80]!r}")
        self.status = int(parts[1])
        self.length: int | None = None
        self.chunked = False
        self.close = parts[0] == "HTTP/1.0"
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                self.length = int(value.strip())
            elif name == "transfer-encoding":
                self.chunked = "chunked" in value.lower()
            elif name == "connection":
                self.close = value.strip().lower() == "close"


class ChunkDecoder:
    """Incremental ``Transfer-Encoding: chunked`` decoding."""

    __slots__ = ("_need", "done")

    def __init__(self) -> None:
        self._need = -1  # bytes left in the current chunk (+2 for its CRLF); -1: a size line
        self.done = False

    def feed(self, buf: bytearray, out: bytearray) -> None:
        """Move what can be decoded from ``buf`` (consumed) to ``out``."""
        while buf and not self.done:
            if self._need < 0:
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                size = int(bytes(buf[:end]).split(b";", 1)[0].strip() or b"0", 16)
                del buf[: end + 2]
                if size == 0:
                    self.done = True  # trailers, if any, are ignored
                    buf.clear()
                    return
                self._need = size + 2
            take = min(self._need, len(buf))
            data_part = max(0, min(take, self._need - 2))
            out += buf[:data_part]
            del buf[:take]
            self._need -= take
            if self._need == 0:
                self._need = -1


class HttpConnection(asyncio.Protocol):
    """One keep-alive connection; one request at a time (HTTP/1.1, no pipelining)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._buf = bytearray()
        self._head: _Head | None = None
        self._body = bytearray()
        self._chunks: ChunkDecoder | None = None
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None

    @classmethod
    async def open(cls, host: str, port: int, limit: float = 10) -> HttpConnection:
        """Connect (within ``limit`` seconds)."""
        loop = asyncio.get_running_loop()
        _, protocol = await asyncio.wait_for(loop.create_connection(cls, host, port), timeout=limit)
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if self._head is not None and self._head.length is None and not self._head.chunked:
                waiter.set_result((self._head.status, bytes(self._body)))  # read until close
            else:
                waiter.set_exception(ConnectionClosed("connection closed mid-response"))

    async def request(self, data: bytes) -> tuple[int, bytes]:
        """Send one request; its status and body."""
        if self.closed or self.transport is None:
            raise ConnectionClosed("connection already closed")
        self._waiter = asyncio.get_running_loop().create_future()
        self._head = None
        self._body = bytearray()
        self._chunks = None
        self.transport.write(data)
        return await self._waiter

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self._waiter is None or self._waiter.done():
            self._buf.clear()  # nothing asked for it (a server closing an idle connection)
            return
        try:
            self._parse()
        except ValueError as exc:
            self._waiter.set_exception(exc)
            self.close()

    def _parse(self) -> None:
        assert self._waiter is not None
        if self._head is None:
            end = self._buf.find(HEAD_END)
            if end < 0:
                return
            self._head = _Head(bytes(self._buf[:end]))
            del self._buf[: end + 4]
            if self._head.status < 200:  # 100 Continue and friends: wait for the real one
                self._head = None
                self._parse()
                return
            if self._head.chunked:
                self._chunks = ChunkDecoder()
        head = self._head
        if head.status in NO_BODY_STATUSES:
            self._finish(head, b"")
        elif self._chunks is not None:
            self._chunks.feed(self._buf, self._body)
            if self._chunks.done:
                self._finish(head, bytes(self._body))
        elif head.length is not None:
            if len(self._buf) >= head.length:
                body = bytes(self._buf[: head.length])
                del self._buf[: head.length]
                self._finish(head, body)
        else:
            self._body += self._buf
            self._buf.clear()

    def _finish(self, head: _Head, body: bytes) -> None:
        assert self._waiter is not None
        waiter, self._waiter = self._waiter, None
        if head.close:
            self.close()
        waiter.set_result((head.status, body))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


FrameHandler = Callable[["SseConnection", bytes, float], None]


class SseConnection(asyncio.Protocol):
    """One open ``text/event-stream`` response, split into frames as they arrive.

    ``opened`` resolves when the first ``event: CONNECTED`` frame arrives (or fails with the
    refusal). Each later frame goes to ``on_frame(connection, frame, arrival)`` with the wall
    clock time it arrived (``time.time()``, comparable to the server's timestamps on this
    host). Heartbeat comments are counted, not handed on.
    """

    __slots__ = (
        "_buf",
        "_chunks",
        "_head",
        "_payload",
        "closed",
        "frames",
        "heartbeats",
        "index",
        "on_frame",
        "opened",
        "transport",
    )

    def __init__(self, index: int, on_frame: FrameHandler) -> None:
        self.index = index
        self.on_frame = on_frame
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # A stream that fails after its opener gave up: nobody is left to read the error.
        self.opened.add_done_callback(_retrieve)
        self.closed = False
        self.frames = 0
        self.heartbeats = 0
        self._buf = bytearray()
        self._payload = bytearray()
        self._head: _Head | None = None
        self._chunks: ChunkDecoder | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.opened.done():
            self.opened.set_exception(ConnectionClosed("stream closed before CONNECTED"))

    def data_received(self, data: bytes) -> None:
        arrival = time.time()
        self._buf += data
        if self._head is None:
            end = self._buf.find(HEAD_END)
            if end < 0:
                return
            try:
                self._head = _Head(bytes(self._buf[:end]))
            except ValueError as exc:
                self._fail(exc)
                return
            del self._buf[: end + 4]
            if self._head.status != 200:
                self._fail(ConnectionError(f"HTTP {self._head.status}"))
                return
            if self._head.chunked:
                self._chunks = ChunkDecoder()
        if self._chunks is not None:
            try:
                self._chunks.feed(self._buf, self._payload)
            except ValueError as exc:
                self._fail(exc)
                return
        else:
            self._payload += self._buf
            self._buf.clear()
        self._frames(arrival)

    def _frames(self, arrival: float) -> None:
        payload = self._payload
        start = 0
        while True:
            end = payload.find(b"\n\n", start)
            if end < 0:
                break
            frame = bytes(payload[start:end])
            start = end + 2
            if frame.startswith(b":"):
                self.heartbeats += 1
            elif frame.startswith(b"retry:"):
                continue
            elif not self.opened.done() and b"event: CONNECTED" in frame:
                self.opened.set_result(None)
            else:
                self.frames += 1
                self.on_frame(self, frame, arrival)
        if start:
            del payload[:start]

    def _fail(self, exc: Exception) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


async def open_stream(
    host: str, port: int, request: bytes, index: int, on_frame: FrameHandler, limit: float
) -> SseConnection:
    """Connect, ask for the stream, and wait for its CONNECTED frame."""
    loop = asyncio.get_running_loop()
    _, conn = await asyncio.wait_for(
        loop.create_connection(lambda: SseConnection(index, on_frame), host, port),
        timeout=limit,
    )
    assert conn.transport is not None
    conn.transport.write(request)
    try:
        await asyncio.wait_for(asyncio.shield(conn.opened), timeout=limit)
    except BaseException:
        conn.close()
        raise
    return conn


def sse_field(frame: bytes, name: bytes) -> bytes | None:
    """The value of the first ``name: value`` line of a frame."""
    marker = name + b": "
    start = 0 if frame.startswith(marker) else frame.find(b"\n" + marker)
    if start < 0:
        return None
    if start:
        start += 1
    start += len(marker)
    end = frame.find(b"\n", start)
    return frame[start:] if end < 0 else frame[start:end]
