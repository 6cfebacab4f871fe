"""An order as the use cases read it: one row with its farm, customer and items, no ORM.

Loaded by one statement (``repository.load_order``), this is what a decision, a reply, an
event and a notification need; a change produces a new record (``with_status``) instead of
dirtying an ORM object, so the writes can go out in one round trip.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from farmstand.orders.states import FulfillmentType, OrderSnapshot, OrderStatus


@dataclass(frozen=True, slots=True)
class ItemRecord:
    id: str
    product_id: str
    position: int
    product_name: str
    unit: str
    quantity: int
    unit_price: Decimal
    prepared: bool
    prepared_at: datetime | None
    # The product as the catalogue names it now (the item keeps the name it was sold under).
    current_name: str
    current_unit: str

    @property
    def line_total(self) -> Decimal:
        return self.unit_price * self.quantity


@dataclass(frozen=True, slots=True)
class OrderRecord:
    id: str
    order_number: str
    status: OrderStatus
    fulfillment_type: FulfillmentType
    customer_id: str
    farm_id: str
    total_amount: Decimal
    paid_at: datetime | None
    confirmed_at: datetime | None
    preparing_at: datetime | None
    ready_at: datetime | None
    out_for_delivery_at: datetime | None
    completed_at: datetime | None
    cancelled_at: datetime | None
    refunded_at: datetime | None
    estimated_ready_at: datetime | None
    estimated_pickup_at: datetime | None
    pickup_location: str | None
    pickup_instructions: str | None
    delivery_address: dict[str, Any] | None
    delivery_notes: str | None
    tracking_number: str | None
    carrier: str | None
    version: int
    created_at: datetime
    updated_at: datetime
    farm_owner_id: str
    farm_name: str
    farm_timezone: str
    customer_name: str
    items: tuple[ItemRecord, ...]

    def snapshot(self) -> OrderSnapshot:
        return OrderSnapshot(
            status=self.status,
            fulfillment_type=self.fulfillment_type,
            customer_id=self.customer_id,
            farm_owner_id=self.farm_owner_id,
            created_at=self.created_at,
            all_items_prepared=all(item.prepared for item in self.items),
            has_tracking_number=bool(self.tracking_number),
        )

    def changed(self, **values: Any) -> OrderRecord:
        """The record after a write of ``values`` (the caller bumps ``version``)."""
        return dataclasses.replace(self, **values)

    @property
    def item_count(self) -> int:
        return sum(item.quantity for item in self.items)


# Order columns read into a record, in the record's field order.
ORDER_FIELDS = tuple(
    field.name
    for field in dataclasses.fields(OrderRecord)
    if field.name not in ("farm_owner_id", "farm_name", "farm_timezone", "customer_name", "items")
)


def parse_time(value: Any) -> datetime | None:
    """A time from a JSON aggregate: ISO text from PostgreSQL, naive UTC text from SQLite."""
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_items(raw: str | list[Any] | None) -> tuple[ItemRecord, ...]:
    """Items from the JSON array the order query aggregates (see ``repository``)."""
    if raw is None:
        return ()
    rows = json.loads(raw) if isinstance(raw, str) else raw
    items = [
        ItemRecord(
            id=row[0],
            product_id=row[1],
            position=int(row[2]),
            product_name=row[3],
            unit=row[4],
            quantity=int(row[5]),
            unit_price=Decimal(str(row[6])).quantize(Decimal("0.01")),
            prepared=bool(row[7]),
            prepared_at=parse_time(row[8]),
            current_name=row[9],
            current_unit=row[10],
        )
        for row in rows
    ]
    items.sort(key=lambda item: (item.position, item.id))
    return tuple(items)
