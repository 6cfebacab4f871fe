"""Time zones by their IANA names, as farms and people store them."""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@lru_cache(maxsize=512)
def zone(name: str | None) -> ZoneInfo:
    """The zone called ``name``, or UTC when there is none or it is unknown: a name stored
    before the time-zone database dropped it must not break a page or a send."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")
