"""Spans: exported when tracing is on (a span per channel batch, FastAPI's request spans as
parents), nothing when off, and OTLP/HTTP to the configured endpoint."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from farmstand.app import create_app
from farmstand.deps import Runtime
from farmstand.observability import tracing
from farmstand.orders.states import OrderStatus
from tests import services
from tests.conftest import make_settings
from tests.factories import Factory


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


async def _confirm_and_dispatch(sqlite_url: str, tmp_path: Path) -> None:
    """An order confirmed (an email queued to the mailbox sender), then one dispatch round."""
    app = create_app(make_settings(sqlite_url, tmp_path))
    async with (
        services.lifespan(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        runtime: Runtime = app.state.runtime
        await Factory(runtime, client).order(status=OrderStatus.CONFIRMED)
        assert await runtime.dispatcher.run_once() >= 1


async def test_each_channel_batch_is_a_span_with_channel_and_result(
    sqlite_url: str, tmp_path: Path, provider: TracerProvider, exporter: InMemorySpanExporter
):
    with tracing.use_provider(provider):
        await _confirm_and_dispatch(sqlite_url, tmp_path)

    sends = [s for s in exporter.get_finished_spans() if s.name == "notification.send"]
    assert sends, [s.name for s in exporter.get_finished_spans()]
    attributes = dict(sends[0].attributes or {})
    assert attributes["channel"] == "EMAIL"
    assert attributes["result"] == "sent"
    batch = attributes["batch"]
    assert isinstance(batch, int) and batch >= 1
    assert attributes["sent"] == batch


async def test_nothing_is_traced_or_exported_when_off(
    sqlite_url: str, tmp_path: Path, provider: TracerProvider, exporter: InMemorySpanExporter
):
    # Given an SDK provider that exists in the process but was never configured for us
    settings = make_settings(sqlite_url, tmp_path)
    assert tracing.configure_tracing(settings, role="serve") is None
    assert not tracing.enabled()

    await _confirm_and_dispatch(sqlite_url, tmp_path)

    assert exporter.get_finished_spans() == ()
    with tracing.span("anything", key="value") as span:
        assert not span.is_recording()
    assert tracing.span("a") is tracing.span("b")  # one shared object: no allocation


async def test_request_spans_are_the_parents_of_ours(
    sqlite_url: str, tmp_path: Path, provider: TracerProvider, exporter: InMemorySpanExporter
):
    with tracing.use_provider(provider):
        app = create_app(make_settings(sqlite_url, tmp_path))

        @app.get("/traced")
        async def traced() -> dict[str, str]:
            with tracing.span("inner", step="one"):
                return {"ok": "yes"}

        async with (
            services.lifespan(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://t"
            ) as client,
        ):
            traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            assert (await client.get("/traced", headers={"traceparent": traceparent})).is_success

    spans = {s.name: s for s in exporter.get_finished_spans()}
    request, inner = spans["GET /traced"], spans["inner"]
    assert inner.parent is not None and request.context is not None
    assert inner.parent.span_id == request.context.span_id
    assert f"{request.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"


class _Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, self.headers["Content-Type"], body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    received: list[tuple[str, str, bytes]] = []
    handler = type("Handler", (_Collector,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def test_spans_go_by_otlp_http_with_the_service_and_the_role(
    sqlite_url: str, tmp_path: Path, collector: tuple[str, list[tuple[str, str, bytes]]]
):
    endpoint, received = collector
    settings = make_settings(sqlite_url, tmp_path, otlp_endpoint=endpoint + "/")
    provider = tracing.configure_tracing(settings, role="worker")
    try:
        assert provider is not None and tracing.enabled()
        with tracing.span("notification.send", channel="SMS"):
            pass
        assert provider.force_flush(10_000)
    finally:
        tracing.install(None)
        if provider is not None:
            provider.shutdown()

    (path, content_type, body), *_ = received
    assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
    export = ExportTraceServiceRequest.FromString(body)
    resource = {a.key: a.value.string_value for a in export.resource_spans[0].resource.attributes}
    assert resource["service.name"] == "farmstand"
    assert resource["farmstand.role"] == "worker"
    (span,) = export.resource_spans[0].scope_spans[0].spans
    assert span.name == "notification.send"
    assert {a.key: a.value.string_value for a in span.attributes} == {"channel": "SMS"}
