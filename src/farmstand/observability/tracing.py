"""OpenTelemetry traces: off unless an OTLP endpoint is configured.

``span(name, **attributes)`` is the one call the rest of the code makes::

    with span("notification.send", channel="EMAIL") as s:
        ...
        s.set_attribute("result", "sent")

Off, it returns one shared do-nothing context manager (a global read and a branch). On, the
spans go by OTLP/HTTP to ``FARMSTAND_OTLP_ENDPOINT`` (or the standard
``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``) with ``service.name=farmstand`` and the process role;
FastAPI's own request spans (``GET /api/...``) use the same provider and are their parents.

The provider is this module's, never the global OpenTelemetry one: tests install their own
(``use_provider``) without leaking it into other apps of the same process.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any

from fastapi.telemetry import TelemetryConfig
from opentelemetry.trace import INVALID_SPAN, Span, Tracer, TracerProvider
from opentelemetry.util.types import AttributeValue

from farmstand import __version__
from farmstand.config import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

SERVICE_NAME = "farmstand"
ROLE_ATTRIBUTE = "farmstand.role"

_provider: TracerProvider | None = None
_tracer: Tracer | None = None


class _NoSpan:
    """What ``span()`` returns while tracing is off: enters to a span that records nothing."""

    __slots__ = ()

    def __enter__(self) -> Span:
        return INVALID_SPAN

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None


_NO_SPAN = _NoSpan()


def span(name: str, **attributes: AttributeValue) -> AbstractContextManager[Span]:
    """A span around the ``with`` block, a child of the current one; nothing when off.
    An exception leaving the block is recorded on the span and marks it as an error."""
    tracer = _tracer
    if tracer is None:
        return _NO_SPAN
    return tracer.start_as_current_span(name, attributes=attributes)


def enabled() -> bool:
    return _tracer is not None


def provider() -> TracerProvider | None:
    return _provider


def install(tracer_provider: TracerProvider | None) -> None:
    """Make ``tracer_provider`` the one spans go to (None: tracing off)."""
    global _provider, _tracer
    _provider = tracer_provider
    _tracer = (
        tracer_provider.get_tracer("farmstand", __version__)
        if tracer_provider is not None
        else None
    )


@contextlib.contextmanager
def use_provider(tracer_provider: TracerProvider | None) -> Iterator[None]:
    """Tests: spans go to ``tracer_provider`` inside the block, as before after it."""
    before = _provider
    install(tracer_provider)
    try:
        yield
    finally:
        install(before)


def otlp_traces_endpoint(settings: Settings) -> str | None:
    """Where spans go: FARMSTAND_OTLP_ENDPOINT + /v1/traces, else the standard variables (read
    by the exporter itself, returned here only to say tracing is on), else None (off)."""
    if settings.otlp_endpoint:
        return f"{settings.otlp_endpoint}/v1/traces"
    traces = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if traces:
        return traces
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if base:
        return f"{base.rstrip('/')}/v1/traces"
    return None


def configure_tracing(settings: Settings, role: str) -> SdkTracerProvider | None:
    """Turn tracing on for this process (role: ``serve`` or ``worker``) when an endpoint is
    configured; returns the provider (shut it down on exit to flush) or None."""
    endpoint = otlp_traces_endpoint(settings)
    if endpoint is None or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        install(None)
        return None
    # Imported only when on: a process without tracing never loads the SDK.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes: dict[str, Any] = {
        "service.version": __version__,
        "service.instance.id": f"{socket.gethostname()}:{os.getpid()}",
        ROLE_ATTRIBUTE: role,
    }
    if not os.environ.get("OTEL_SERVICE_NAME"):  # the standard variable may rename it
        attributes["service.name"] = SERVICE_NAME
    sdk_provider = SdkProvider(resource=Resource.create(attributes))
    exporter = OTLPSpanExporter(endpoint=endpoint if settings.otlp_endpoint else None)
    sdk_provider.add_span_processor(BatchSpanProcessor(exporter))
    install(sdk_provider)
    return sdk_provider


def fastapi_telemetry() -> TelemetryConfig:
    """FastAPI's own telemetry options for a new app: its request spans on our provider when
    tracing is on (parents of ours, with the route and the incoming ``traceparent``), and
    nothing at all otherwise. Its metrics and logs stay off: Prometheus and our logs cover
    them, and each would cost time on every request."""
    if _provider is None:
        return {"tracing": False, "metrics": False, "logs": False}
    return {
        "tracer_provider": _provider,
        "metrics": False,
        "logs": False,
        "operation_spans": False,
    }
