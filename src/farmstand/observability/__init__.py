"""Seeing the server run: Prometheus metrics, structured logs, OpenTelemetry spans.

- ``metrics``: every metric on a registry of its own per app (``runtime.metrics``), summed over
  the processes of ``farmstand serve --workers N``.
- ``middleware``: one pure ASGI middleware timing each request by route template and writing
  its log line, with the request id.
- ``logs``: the text or JSON formatter for everything, uvicorn's error log included.
- ``tracing``: ``span(name, **attributes)``, next to free while tracing is off.
- ``endpoint`` and ``exporter``: ``GET /metrics`` (token or admin) and the separate port.
"""
