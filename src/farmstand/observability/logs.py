"""Logs: one formatter for everything (uvicorn's error log included), text or JSON.

``FARMSTAND_LOG_FORMAT=text`` (the default) writes a readable line per record; ``json`` writes
one JSON object per line with the same facts as fields. The request log line (see
``middleware``) carries ids only: never a query string, body, header, email or name.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from farmstand.config import LogFormat, Settings

ACCESS_LOGGER = "farmstand.access"
HANDLER_NAME = "farmstand"

# The request being served, for every line logged while serving it.
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "farmstand_request_id", default=None
)

# The fields a request line carries, as record attributes (``extra=``) and JSON keys.
ACCESS_FIELDS = ("method", "route", "status", "duration_ms", "request_id", "client")

# Loggers that would write a line per outgoing call with its full URL (push endpoints and
# provider URLs carry tokens): warnings only.
_CHATTY = ("httpx", "httpcore", "hpack", "urllib3")

# What a provider's error text may carry about a person: an email address, a phone number.
_EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
# A phone-like run: digits with spaces, dashes or brackets between (not dots or colons, so
# versions, addresses and times stay), then kept only with 9+ digits or a leading "+".
_PHONE = re.compile(r"(?<![\w.:+-])\+?\(?\d[\d ()-]{5,}\d(?![\w.:])")


def redact(text: object) -> str:
    """``text`` for a log line, without email addresses or phone numbers (an SMTP server's
    "550 <carol@example.com> unknown", Twilio's "'To' number +15555550123 is not valid"): the
    notification's row keeps the whole error for the delivery log, logs keep none."""
    return _PHONE.sub(_phone, _EMAIL.sub("<email>", str(text)))


def _phone(match: re.Match[str]) -> str:
    found = match.group()
    digits = sum(char.isdigit() for char in found)
    return "<phone>" if digits >= 9 or (found.startswith("+") and digits >= 7) else found


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the request
    fields when present, the request id, and the traceback of an exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ACCESS_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if "request_id" not in entry and (request_id := request_id_var.get()) is not None:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def formatter_for(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if log_format is LogFormat.JSON else TextFormatter()


def configure_logging(settings: Settings, stream: Any = None) -> logging.Handler:
    """Send every log record of this process to stderr through the chosen formatter. Safe to
    call again (the handler is replaced, not added twice)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(formatter_for(settings.log_format))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    logging.getLogger("farmstand").setLevel(settings.log_level)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)
    # uvicorn's own lines go through the same handler; its access log is replaced by ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.asgi"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    install_slow_client_filter()
    return handler


# -- the slow SSE client ----------------------------------------------------------------------

SLOW_CLIENT_MESSAGE = "ASGI callable returned without completing response"


class SlowClientFilter(logging.Filter):
    """uvicorn logs an ERROR when an app returns before finishing its response while the client
    is still connected: here, an event stream dropped because its client stopped reading
    (``sse_send_timeout_seconds``). That is the client's doing, not a server fault: the line
    becomes a DEBUG one and a count in ``farmstand_sse_disconnects_total{reason="slow"}``.

    Logging is process-wide, so there is one filter; each running app registers its counter.
    """

    def __init__(self) -> None:
        super().__init__()
        self.counters: list[Any] = []
        self._log = logging.getLogger("farmstand.sse")

    def filter(self, record: logging.LogRecord) -> bool:
        if not (isinstance(record.msg, str) and record.msg.startswith(SLOW_CLIENT_MESSAGE)):
            return True
        for counter in self.counters:
            counter.inc()
        self._log.debug("dropped an event stream whose client stopped reading")
        return False


SLOW_CLIENTS = SlowClientFilter()


def install_slow_client_filter() -> None:
    logging.getLogger("uvicorn.error").addFilter(SLOW_CLIENTS)  # no-op when already there
