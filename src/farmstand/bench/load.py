"""The load process: drives the server over HTTP, in an OS process of its own.

    python -m farmstand.bench.load DATASET.json PORT

It reads one JSON command per line on stdin and answers on stdout with ``{"progress": ...}``
lines while it works and one ``{"result": ...}`` (or ``{"error": ...}``) line when done. Every
result carries the CPU this process used (``generator``), so a figure is never the generator's
own limit. Requests are built as bytes before the clock starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import signal
import sys
import time
from typing import Any

from farmstand.bench import engine
from farmstand.bench.dataset import Dataset
from farmstand.bench.engine import CpuClock, Pool
from farmstand.bench.http import build_request
from farmstand.bench.streams import Streams

HOST = "127.0.0.1"


def emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class Load:
    def __init__(self, data: Dataset, port: int) -> None:
        self.data = data
        self.port = port
        self.authority = f"{HOST}:{port}"
        self.farmer_tokens: list[str | None] = [None] * len(data.farmers)
        self.customer_tokens: list[str | None] = [None] * len(data.customers)
        self.streams = Streams(HOST, port, self.authority)

    # -- commands ------------------------------------------------------------------------------

    async def run(self, command: dict[str, Any]) -> dict[str, Any]:
        op = command["op"]
        clock = CpuClock()
        if op == "login":
            result = await self.login(command)
        elif op == "open":
            result = await self.open(command)
        elif op == "closed":
            result = await self.closed(command)
        elif op == "sse_open":
            result = await self.streams.open(
                self._stream_requests(command["farms"], command["customers"]),
                concurrency=command.get("concurrency", 100),
                limit=command.get("timeout", 60),
                progress=_progress,
            )
        elif op == "sse_wait":
            result = await self.streams.wait(within=command.get("timeout", 30))
        elif op == "sse_close":
            result = self.streams.close()
        else:
            raise ValueError(f"unknown command {op!r}")
        result["generator"] = clock.report()
        return result

    async def login(self, command: dict[str, Any]) -> dict[str, Any]:
        """Sign in the first N farmers and customers over HTTP (skipping those signed in)."""
        wanted: list[tuple[list[str | None], int, str]] = []
        for tokens, emails, count in (
            (self.farmer_tokens, self.data.farmers, command.get("farmers", 0)),
            (self.customer_tokens, self.data.customers, command.get("customers", 0)),
        ):
            for i in range(min(count, len(emails))):
                if tokens[i] is None:
                    wanted.append((tokens, i, emails[i]))
        password = self.data.password
        requests = [
            build_request(
                "POST",
                "/api/auth/login",
                self.authority,
                body=json.dumps({"email": email, "password": password}).encode(),
            )
            for _, _, email in wanted
        ]

        def on_response(index: int, status: int, body: bytes) -> None:
            if status == 200:
                tokens, i, _ = wanted[index]
                tokens[i] = json.loads(body)["data"]["token"]

        if not requests:
            return {"requests": 0, "failed": 0, "errors": {}}
        result = await engine.closed_loop(
            Pool(HOST, self.port),
            requests,
            concurrency=min(command.get("concurrency", 16), len(requests)),
            duration=command.get("timeout", 600),
            drain=30,
            progress=_progress,
            on_response=on_response,
        )
        return result

    def _requests(self, command: dict[str, Any], count: int) -> list[bytes]:
        scenario = command["scenario"]
        if scenario == "place":
            return self._placements(command, count)
        rows = self.data.orders[command["segment"]]
        start = command.get("start", 0)
        if scenario == "status":
            body = json.dumps({"status": command.get("target", "CONFIRMED")}).encode()
            if start + count > len(rows):
                raise ValueError(
                    f"segment {command['segment']} has {len(rows)} orders; {start + count} needed"
                )
            return [
                build_request(
                    "PUT",
                    f"/api/orders/{order_id}/status",
                    self.authority,
                    token=self._farmer(farm),
                    body=body,
                )
                for order_id, farm, _, _ in rows[start : start + count]
            ]
        if scenario == "history":
            picked = [rows[(start + i) % len(rows)] for i in range(count)]
            return [
                build_request(
                    "GET",
                    f"/api/orders/{order_id}/status",
                    self.authority,
                    token=self._farmer(farm),
                )
                for order_id, farm, _, _ in picked
            ]
        raise ValueError(f"unknown scenario {scenario!r}")

    def _placements(self, command: dict[str, Any], count: int) -> list[bytes]:
        signed_in = [i for i, t in enumerate(self.customer_tokens) if t is not None]
        if not signed_in:
            raise ValueError("no customer is signed in")
        farms = len(self.data.farm_ids)
        out = []
        for i in range(count):
            farm = i % farms
            products = self.data.products[farm]
            body = {
                "farmId": self.data.farm_ids[farm],
                "items": [{"productId": products[i % len(products)], "quantity": 1}],
                "fulfillmentType": "PICKUP",
            }
            token = self.customer_tokens[signed_in[i % len(signed_in)]]
            out.append(
                build_request(
                    "POST",
                    "/api/orders",
                    self.authority,
                    token=token,
                    body=json.dumps(body, separators=(",", ":")).encode(),
                )
            )
        return out

    def _farmer(self, farm: int) -> str:
        token = self.farmer_tokens[farm]
        if token is None:
            raise ValueError(f"farmer {farm} is not signed in")
        return token

    def _stream_requests(self, farms: int, customers: int) -> list[tuple[str, int, bytes]]:
        out = []
        for kind, tokens, count in (
            ("farm", self.farmer_tokens, farms),
            ("customer", self.customer_tokens, customers),
        ):
            for i in range(count):
                token = tokens[i]
                if token is None:
                    raise ValueError(f"{kind} {i} is not signed in")
                request = build_request(
                    "GET",
                    "/api/events",
                    self.authority,
                    token=token,
                    extra="Accept: text/event-stream\r\n",
                )
                out.append((kind, i, request))
        return out

    async def open(self, command: dict[str, Any]) -> dict[str, Any]:
        rate, duration = float(command["rate"]), float(command["duration"])
        count = max(1, int(rate * duration))
        requests = self._requests(command, count)
        on_response = None
        if command.get("track"):
            rows = self.data.orders[command["segment"]][command.get("start", 0) :]
            on_response = self.streams.tracker(rows)
        _settle()
        return await engine.open_loop(
            Pool(HOST, self.port),
            requests,
            rate=rate,
            duration=duration,
            connections=min(command.get("pool", 256), count),
            drain=command.get("drain", max(10.0, duration)),
            progress=_progress,
            on_response=on_response,
        )

    async def closed(self, command: dict[str, Any]) -> dict[str, Any]:
        requests = self._requests(command, int(command["count"]))
        _settle()
        return await engine.closed_loop(
            Pool(HOST, self.port),
            requests,
            concurrency=int(command["concurrency"]),
            duration=float(command["duration"]),
            drain=command.get("drain", 30.0),
            progress=_progress,
        )


def _settle() -> None:
    """Collect now, and keep what exists out of later collections: no pause mid-run."""
    gc.collect()
    gc.freeze()


_last_progress = [0.0]


def _progress(done: int, total: int) -> None:
    now = time.monotonic()
    if now - _last_progress[0] >= 0.25 or done >= total:
        _last_progress[0] = now
        emit({"progress": {"done": done, "total": total}})


async def serve(load: Load) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            return  # the parent went away: stop
        command = json.loads(line)
        if command.get("op") == "quit":
            load.streams.close()
            emit({"result": {"bye": True}})
            return
        try:
            result = await load.run(command)
        except Exception as exc:
            emit({"error": f"{type(exc).__name__}: {exc}"})
        else:
            emit({"result": result})


def main() -> None:
    from farmstand.bench.servers import raise_nofile_limit

    raise_nofile_limit()
    # SIGTERM ends the process as an exit would (atexit handlers run), not mid-write.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with open(sys.argv[1]) as handle:
        data = Dataset.from_json(json.load(handle))
    load = Load(data, int(sys.argv[2]))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(load))


if __name__ == "__main__":
    main()
