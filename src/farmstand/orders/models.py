"""Orders, their items and their status history."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from farmstand.accounts.models import User
from farmstand.catalog.models import Farm, Product
from farmstand.db import Base, JSONType, Money, UTCDateTime, new_id, utcnow
from farmstand.orders.states import FulfillmentType, OrderStatus


def _enum(cls: type) -> Enum:
    return Enum(cls, native_enum=False, length=32, validate_strings=True)


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        Index("ix_orders_farm_id_created_at", "farm_id", "created_at"),
        Index("ix_orders_customer_id_created_at", "customer_id", "created_at"),
        Index("ix_orders_status", "status"),
        # The composite indexes above also serve lookups by farm or customer alone.
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    order_number: Mapped[str] = mapped_column(String(16), unique=True)
    status: Mapped[OrderStatus] = mapped_column(_enum(OrderStatus), default=OrderStatus.PENDING)
    fulfillment_type: Mapped[FulfillmentType] = mapped_column(
        _enum(FulfillmentType), default=FulfillmentType.PICKUP
    )
    customer_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    farm_id: Mapped[str] = mapped_column(ForeignKey("farms.id"))
    total_amount: Mapped[Decimal] = mapped_column(Money())
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    preparing_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    out_for_delivery_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    refunded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    estimated_ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    estimated_pickup_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    pickup_location: Mapped[str | None] = mapped_column(String(500))
    pickup_instructions: Mapped[str | None] = mapped_column(Text)
    delivery_address: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    delivery_notes: Mapped[str | None] = mapped_column(Text)
    tracking_number: Mapped[str | None] = mapped_column(String(100))
    carrier: Mapped[str | None] = mapped_column(String(100))

    version: Mapped[int] = mapped_column(Integer)
    # The ORM adds "WHERE version = <version read>" to every UPDATE of an order (compare-and-
    # set) and raises StaleDataError when another transaction changed it first.
    __mapper_args__ = {"version_id_col": version}
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    customer: Mapped[User] = relationship(lazy="raise")
    farm: Mapped[Farm] = relationship(lazy="raise")
    items: Mapped[list[OrderItem]] = relationship(
        lazy="raise", back_populates="order", order_by="OrderItem.position"
    )
    status_history: Mapped[list[OrderStatusHistory]] = relationship(
        lazy="raise", order_by="OrderStatusHistory.seq"
    )


class OrderItem(Base):
    __tablename__ = "order_items"
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity_positive"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    product_name: Mapped[str] = mapped_column(String(200))
    unit: Mapped[str] = mapped_column(String(50))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal] = mapped_column(Money())
    prepared: Mapped[bool] = mapped_column(Boolean, default=False)
    prepared_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    order: Mapped[Order] = relationship(lazy="raise", back_populates="items")
    product: Mapped[Product] = relationship(lazy="raise")


class OrderStatusHistory(Base):
    __tablename__ = "order_status_history"
    __table_args__ = (UniqueConstraint("order_id", "seq"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # The order's version this step produced: orders the history even when two rows share a
    # timestamp, and (unique per order) refuses a second writer of the same step.
    seq: Mapped[int] = mapped_column(Integer)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    from_status: Mapped[OrderStatus | None] = mapped_column(_enum(OrderStatus))
    to_status: Mapped[OrderStatus] = mapped_column(_enum(OrderStatus))
    changed_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    reason: Mapped[str | None] = mapped_column(Text)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)

    actor: Mapped[User | None] = relationship(lazy="raise")
