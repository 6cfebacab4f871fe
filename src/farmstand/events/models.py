"""Event records, written in the same transaction as the change they describe."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from farmstand.db import Base, JSONType, UTCDateTime, utcnow

# SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class EventType(StrEnum):
    STATUS_CHANGE = "STATUS_CHANGE"
    NEW_ORDER = "NEW_ORDER"
    ORDER_UPDATE = "ORDER_UPDATE"
    NOTIFICATION = "NOTIFICATION"
    # Internal: a session ended or an account changed; every server process clears what it
    # cached about the user (never sent to clients).
    ACCOUNT_CHANGED = "ACCOUNT_CHANGED"


INTERNAL_EVENTS = frozenset({EventType.ACCOUNT_CHANGED})


class OrderEvent(Base):
    """One change, as subscribers see it.

    ``id`` is handed out at insert, so on PostgreSQL a lower id can commit after a higher one.
    ``position`` is handed out after commit, one sequencing transaction at a time, so positions
    are gap-free and follow commit order: a reader that sees position p can also see every
    position below p. Streams are ordered and resumed by position.
    """

    __tablename__ = "order_events"
    __table_args__ = (
        Index(
            "ix_order_events_unsequenced",
            "id",
            postgresql_where=text("position IS NULL"),
            sqlite_where=text("position IS NULL"),
        ),
        Index("ix_order_events_created_at", "created_at"),
        Index("ix_order_events_farm_id_position", "farm_id", "position"),
        Index("ix_order_events_customer_id_position", "customer_id", "position"),
        Index("ix_order_events_order_id_position", "order_id", "position"),
        Index("ix_order_events_user_id_position", "user_id", "position"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    position: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    type: Mapped[EventType] = mapped_column(String(32))
    order_id: Mapped[str | None] = mapped_column(String(36))
    farm_id: Mapped[str | None] = mapped_column(String(36))
    customer_id: Mapped[str | None] = mapped_column(String(36))
    # Set for events meant for one user only (NOTIFICATION): nobody else's stream gets them.
    user_id: Mapped[str | None] = mapped_column(String(36))
    data: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class EventCounter(Base):
    """The last position handed out; its row lock serialises sequencing."""

    __tablename__ = "event_counter"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger, default=0)
