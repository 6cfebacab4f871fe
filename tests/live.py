"""Real servers for tests that need a socket: SSE streaming, several processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

ROOT = Path(__file__).resolve().parents[1]
FARMSTAND = str(Path(sys.executable).parent / "farmstand")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def serve_in_process(app: FastAPI, **options: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free port in this event loop; yields its base URL.
    ``options``: more uvicorn settings (such as the proxy ones ``farmstand serve`` uses)."""
    port = free_port()
    options.setdefault("timeout_graceful_shutdown", 2)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", **options
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if task.done():
        task.result()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=10)


@dataclass
class ServerProcess:
    """``farmstand serve`` in a subprocess."""

    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *args: str, timeout: float = 30) -> ServerProcess:
        assert self.log_path is not None
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [FARMSTAND, "serve", "--port", str(self.port), *args],
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        # Never leave it running: it would go on serving (and sending notifications from) the
        # database the next tests use.
        self.stop()
        raise RuntimeError(f"server did not start: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FARMSTAND, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@dataclass
class SseEvent:
    id: str | None
    event: str | None
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


class SseStream:
    """Reads one SSE response frame by frame (comments and retry lines skipped)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()
        self.comments: list[str] = []

    async def next(self, timeout: float = 10) -> SseEvent:
        return await asyncio.wait_for(self._next(), timeout)

    async def _next(self) -> SseEvent:
        event_id = event = None
        data: list[str] = []
        async for line in self._lines:
            if line == "":
                if data or event:
                    return SseEvent(event_id, event, "\n".join(data))
                continue
            if line.startswith(":"):
                self.comments.append(line)
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "id":
                event_id = value
            elif name == "event":
                event = value
            elif name == "data":
                data.append(value)
        raise EOFError("stream ended")

    async def until(self, predicate: Any, timeout: float = 10) -> SseEvent:
        async def _find() -> SseEvent:
            while True:
                event = await self._next()
                if predicate(event):
                    return event

        return await asyncio.wait_for(_find(), timeout)

    async def collect(self, count: int, timeout: float = 10) -> list[SseEvent]:
        return [await self.next(timeout) for _ in range(count)]


@contextlib.asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> AsyncIterator[SseStream]:
    async with client.stream("GET", url, headers=headers, timeout=httpx.Timeout(30, read=60)) as r:
        assert r.status_code == 200, (r.status_code, await r.aread())
        yield SseStream(r)
