"""The background parts of observability in one process (``serve`` or ``worker``).

- A metrics listener on a port of its own (``FARMSTAND_METRICS_PORT`` for ``serve``,
  ``FARMSTAND_WORKER_METRICS_PORT`` for ``worker``), on ``FARMSTAND_METRICS_HOST``
  (127.0.0.1 by default), without authentication: whoever can reach that address may scrape.
  It runs in the process's event loop, so it can read the notification queue from the
  database like ``/metrics`` does. With several server processes every one listens on the
  port (SO_REUSEPORT) and any of them answers with the sum.
- With several processes, the pool gauges are refreshed every few seconds in each one (a
  scrape only refreshes the process that answers it).
- The filter that turns uvicorn's slow-client ERROR into a counted DEBUG line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST

from farmstand.db import Database
from farmstand.observability import multiprocess
from farmstand.observability.logs import SLOW_CLIENTS, install_slow_client_filter
from farmstand.observability.metrics import Metrics

log = logging.getLogger(__name__)

POOL_SAMPLE_SECONDS = 5.0
_MAX_REQUEST_HEAD = 8192
_READ_TIMEOUT = 5.0
_MAX_CONNECTIONS = 16


class MetricsListener:
    """A minimal HTTP/1.1 server: ``GET /metrics`` (or ``/``), one request per connection."""

    def __init__(
        self,
        render: Callable[[], Awaitable[bytes]],
        host: str,
        port: int,
        *,
        reuse_port: bool = False,
    ) -> None:
        self._render = render
        self.host = host
        self.port = port
        self._reuse_port = reuse_port
        self._server: asyncio.Server | None = None
        self._slots = asyncio.Semaphore(_MAX_CONNECTIONS)

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle,
            self.host,
            self.port,
            reuse_port=self._reuse_port or None,
            limit=_MAX_REQUEST_HEAD,
        )
        if self.port == 0:  # tests: the port the system chose
            self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=2)
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._slots.locked():  # a flood of connections: refuse rather than queue
            writer.close()
            return
        async with self._slots:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT)
                await self._answer(head, writer)
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                pass
            except ConnectionError:
                pass
            except Exception:
                log.exception("metrics listener failed to answer")
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    async def _answer(self, head: bytes, writer: asyncio.StreamWriter) -> None:
        method, _, rest = head.partition(b" ")
        path = rest.partition(b" ")[0].partition(b"?")[0]
        if method not in (b"GET", b"HEAD"):
            status, content_type, body = b"405 Method Not Allowed", b"text/plain", b"GET only\n"
        elif path not in (b"/metrics", b"/"):
            status, content_type, body = b"404 Not Found", b"text/plain", b"Not found\n"
        else:
            status, content_type, body = (
                b"200 OK",
                CONTENT_TYPE_LATEST.encode(),
                await self._render(),
            )
        writer.write(
            b"HTTP/1.1 "
            + status
            + b"\r\nContent-Type: "
            + content_type
            + b"\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
            + (b"" if method == b"HEAD" else body)
        )
        await writer.drain()


class ProcessTelemetry:
    """Started after the runtime, stopped before it."""

    def __init__(
        self, metrics: Metrics, db: Database, *, host: str = "127.0.0.1", port: int | None = None
    ) -> None:
        self.metrics = metrics
        self.db = db
        self.listener = (
            MetricsListener(
                self.render, host, port, reuse_port=metrics.multiprocess_dir is not None
            )
            if port is not None
            else None
        )
        self._slow_counter = metrics.sse_disconnects.labels("slow")
        self._sampler: asyncio.Task[None] | None = None

    async def render(self) -> bytes:
        return await self.metrics.render(self.db)

    async def start(self) -> None:
        install_slow_client_filter()
        SLOW_CLIENTS.counters.append(self._slow_counter)
        if self.metrics.multiprocess_dir is not None:
            self._sampler = asyncio.create_task(self._sample_pool(), name="metrics-pool-sampler")
        if self.listener is not None:
            try:
                await self.listener.start()
            except OSError as exc:  # metrics must not keep the app from serving
                log.error(
                    "metrics listener could not bind %s:%s: %s",
                    self.listener.host,
                    self.listener.port,
                    exc,
                )
                self.listener = None
            else:
                log.info("metrics on http://%s:%s/metrics", self.listener.host, self.listener.port)

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            SLOW_CLIENTS.counters.remove(self._slow_counter)
        if self.listener is not None:
            await self.listener.stop()
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None
        multiprocess.forget_this_process()

    async def _sample_pool(self) -> None:
        while True:
            try:
                self.metrics.sample_pool(self.db)
            except Exception:  # pragma: no cover - a pool without these figures
                log.debug("pool sampling failed", exc_info=True)
            await asyncio.sleep(POOL_SAMPLE_SECONDS)
