"""What each order change tells live subscribers: the event rows, written with the change."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from farmstand.accounts.principal import Person
from farmstand.events import service as events
from farmstand.events.models import EventType
from farmstand.orders.records import OrderRecord
from farmstand.orders.states import TIMESTAMP_FIELDS, StatusChange
from farmstand.schemas import iso_z

_TIMESTAMPS = ("created_at", *TIMESTAMP_FIELDS.values(), "updated_at")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


_CAMEL_TIMESTAMPS = {field: _camel(field) for field in _TIMESTAMPS}


def _who(user: Person) -> dict[str, str]:
    return {"id": user.id, "name": user.name, "role": str(user.role)}


def _row(
    order: OrderRecord, type: EventType, data: dict[str, Any], now: datetime
) -> dict[str, Any]:
    return events.event_row(
        type,
        order_id=order.id,
        farm_id=order.farm_id,
        customer_id=order.customer_id,
        data={"orderNumber": order.order_number, **data},
        now=now,
    )


def summary(order: OrderRecord) -> dict[str, Any]:
    """Enough for a dashboard card to render a new order without another request."""
    return {
        "orderNumber": order.order_number,
        "status": str(order.status),
        "fulfillmentType": str(order.fulfillment_type),
        "totalAmount": f"{order.total_amount:.2f}",
        "customer": {"id": order.customer_id, "name": order.customer_name},
        "farm": {"id": order.farm_id, "name": order.farm_name},
        "itemCount": order.item_count,
        "items": [
            {
                "id": item.id,
                "productId": item.product_id,
                "productName": item.product_name,
                "unit": item.unit,
                "quantity": item.quantity,
                "unitPrice": f"{item.unit_price:.2f}",
                "prepared": item.prepared,
            }
            for item in order.items
        ],
        "pickupLocation": order.pickup_location,
        "estimatedReadyAt": iso_z(order.estimated_ready_at),
        "createdAt": iso_z(order.created_at),
        "version": order.version,
    }


def new_order(order: OrderRecord, now: datetime) -> dict[str, Any]:
    return _row(order, EventType.NEW_ORDER, {"order": summary(order)}, now)


def status_change(
    order: OrderRecord, change: StatusChange, actor: Person, now: datetime
) -> dict[str, Any]:
    """``order`` as it is after the change."""
    return _row(
        order,
        EventType.STATUS_CHANGE,
        {
            "previousStatus": str(change.from_status),
            "status": str(change.to_status),
            "fulfillmentType": str(order.fulfillment_type),
            "changedBy": _who(actor),
            "reason": change.reason,
            "version": order.version,
            "timestamps": {
                camel: iso_z(getattr(order, field)) for field, camel in _CAMEL_TIMESTAMPS.items()
            },
        },
        now,
    )


def order_update(
    order: OrderRecord, changes: dict[str, Any], actor: Person, now: datetime
) -> dict[str, Any]:
    """``changes`` maps snake_case fields (or "items") to their new values."""
    wire = {
        _camel(key): iso_z(value) if isinstance(value, datetime) else value
        for key, value in changes.items()
    }
    return _row(
        order,
        EventType.ORDER_UPDATE,
        {"changes": wire, "changedBy": _who(actor), "version": order.version},
        now,
    )
