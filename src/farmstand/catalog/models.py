"""Farms and the products they sell."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String, Text, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from farmstand.accounts.models import User
from farmstand.db import Base, Money, UTCDateTime, new_id, utcnow

# A customer's orders at one farm not yet COMPLETED, CANCELLED or REFUNDED: enough for this
# week's market, next week's and one more (pre-orders), too few to empty the stall.
DEFAULT_MAX_OPEN_ORDERS = 3
# Units of one product in one order: a household's (or a small restaurant's) weekly amount.
DEFAULT_MAX_ITEM_QUANTITY = 20


class Farm(Base):
    __tablename__ = "farms"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    pickup_location: Mapped[str | None] = mapped_column(String(500))
    pickup_instructions: Mapped[str | None] = mapped_column(Text)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # Per-customer limits, so one account cannot hoard the farm's stock (see docs/api.md).
    max_open_orders: Mapped[int] = mapped_column(
        Integer, default=DEFAULT_MAX_OPEN_ORDERS, server_default=str(DEFAULT_MAX_OPEN_ORDERS)
    )
    max_item_quantity: Mapped[int] = mapped_column(
        Integer, default=DEFAULT_MAX_ITEM_QUANTITY, server_default=str(DEFAULT_MAX_ITEM_QUANTITY)
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    owner: Mapped[User] = relationship(lazy="raise")


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (CheckConstraint("stock >= 0", name="stock_not_negative"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    farm_id: Mapped[str] = mapped_column(ForeignKey("farms.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    unit: Mapped[str] = mapped_column(String(50))
    price: Mapped[Decimal] = mapped_column(Money())
    stock: Mapped[int] = mapped_column(Integer)
    # Off sale: hidden from the shop and refused when ordered (stock 0 only means sold out:
    # the product still shows, as "Sold out").
    on_sale: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    farm: Mapped[Farm] = relationship(lazy="raise")
