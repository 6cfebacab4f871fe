"""The garbage collector of a server process: no long pauses with thousands of open streams.

CPython's cyclic collector walks every container object of the generation it collects; a full
(oldest-generation) collection walks them all. A server process holds the app itself (modules,
classes, SQLAlchemy mappers, the OpenAPI schema: ~200,000 objects) plus everything its open
streams hold, and a full collection stops the event loop for as long as the walk takes.

Two settings, applied once the app has started (``farmstand serve`` only, as they are
process-wide):

- ``FARMSTAND_GC_FREEZE`` (on): after start-up, and after warming what the first requests would
  otherwise build, move every object into the permanent generation (``gc.freeze()``), which
  collections skip. What it trades: a reference cycle among those start-up objects that
  becomes garbage later is never reclaimed (start-up objects live as long as the process).
- ``FARMSTAND_GC_YOUNG_THRESHOLD`` (10,000; 0 keeps Python's 700): net allocations between
  collections of the youngest generation. At 700, the objects of requests still in flight
  (opening 10,000 streams, for instance) are promoted to the oldest generation, which then
  grows fast enough to trigger a full collection every few hundred streams; at 10,000 they
  die young, and full collections come about 14 times less often. What it trades: each young
  collection walks up to 10,000 objects (a few milliseconds instead of well under one), a
  middle one up to ~100,000 (tens of milliseconds), and cyclic garbage waits a little
  longer to be freed. Much larger values make those middle collections long pauses too.
"""

from __future__ import annotations

import gc
import logging

from fastapi import FastAPI
from sqlalchemy.orm import configure_mappers

log = logging.getLogger(__name__)


def tune_after_startup(app: FastAPI, *, freeze: bool, young_threshold: int) -> None:
    if young_threshold:
        _, middle, oldest = gc.get_threshold()
        gc.set_threshold(young_threshold, middle, oldest)
    if freeze:
        # Built on first use otherwise, then walked by every full collection.
        configure_mappers()
        app.openapi()
        gc.collect()
        gc.freeze()
    log.debug(
        "garbage collector: thresholds %s, %d objects frozen",
        gc.get_threshold(),
        gc.get_freeze_count(),
    )
