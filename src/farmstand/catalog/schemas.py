"""Farm and product shapes."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import Field, StringConstraints

from farmstand.catalog.models import DEFAULT_MAX_ITEM_QUANTITY, DEFAULT_MAX_OPEN_ORDERS
from farmstand.schemas import CamelInput, CamelModel, MoneyOut, TimeZone

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Location = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]
Instructions = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]
Unit = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]
Stock = Annotated[int, Field(ge=0, le=1_000_000)]
# A product is never given away: more than 0, in cents, within what NUMERIC(10, 2) holds.
Price = Annotated[Decimal, Field(gt=0, le=Decimal("99999999.99"), decimal_places=2)]
MaxOpenOrders = Annotated[int, Field(ge=1, le=1_000)]
MaxItemQuantity = Annotated[int, Field(ge=1, le=10_000)]  # an order line holds at most 10,000


class FarmIn(CamelInput):
    name: Name
    pickup_location: Location | None = None
    pickup_instructions: Instructions | None = None
    timezone: TimeZone = "UTC"
    max_open_orders: MaxOpenOrders = DEFAULT_MAX_OPEN_ORDERS
    max_item_quantity: MaxItemQuantity = DEFAULT_MAX_ITEM_QUANTITY


class FarmPatch(CamelInput):
    """The farm's details and limits; only the fields given change."""

    name: Name | None = None
    pickup_location: Location | None = None
    pickup_instructions: Instructions | None = None
    timezone: TimeZone | None = None
    max_open_orders: MaxOpenOrders | None = None
    max_item_quantity: MaxItemQuantity | None = None


class FarmOut(CamelModel):
    id: str
    owner_id: str
    name: str
    pickup_location: str | None
    pickup_instructions: str | None
    timezone: str
    max_open_orders: int = Field(
        description="How many orders one customer may have open (not yet COMPLETED, "
        "CANCELLED or REFUNDED) at this farm at a time"
    )
    max_item_quantity: int = Field(description="How many units of one product one order may hold")
    created_at: datetime


class ProductIn(CamelInput):
    name: Name
    unit: Unit
    price: Price
    stock: Stock
    on_sale: bool = Field(default=True, description="Shown in the shop and orderable")


class ProductPatch(CamelInput):
    """The product's details; only the fields given change."""

    name: Name | None = None
    unit: Unit | None = None
    price: Price | None = None
    stock: Stock | None = None
    on_sale: bool | None = Field(
        default=None,
        description="false takes the product off sale: hidden from the shop, refused when "
        "ordered (409); true puts it back",
    )
    expected_stock: Stock | None = Field(
        default=None,
        description="The stock as you last saw it: when given and orders have changed it "
        "since, nothing changes and the reply is 409 with the stock now",
    )


class ProductOut(CamelModel):
    id: str
    farm_id: str
    name: str
    unit: str
    price: MoneyOut
    stock: int
    on_sale: bool = Field(description="false: off sale (hidden from the shop, not orderable)")
    created_at: datetime
    updated_at: datetime
