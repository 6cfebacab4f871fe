"""What each order change tells live subscribers: the event payloads, built in the transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from farmstand.accounts.models import User
from farmstand.events import service as events
from farmstand.events.models import EventType
from farmstand.orders.models import Order
from farmstand.orders.states import TIMESTAMP_FIELDS, StatusChange
from farmstand.schemas import iso_z


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _who(user: User) -> dict[str, str]:
    return {"id": user.id, "name": user.name, "role": str(user.role)}


def _record(
    session: AsyncSession, order: Order, type: EventType, data: dict[str, Any], now: datetime
) -> None:
    events.record(
        session,
        type,
        order_id=order.id,
        farm_id=order.farm_id,
        customer_id=order.customer_id,
        data={"orderNumber": order.order_number, **data},
        now=now,
    )


def summary(order: Order) -> dict[str, Any]:
    """Enough for a dashboard card to render a new order without another request."""
    return {
        "orderNumber": order.order_number,
        "status": str(order.status),
        "fulfillmentType": str(order.fulfillment_type),
        "totalAmount": f"{order.total_amount:.2f}",
        "customer": {"id": order.customer.id, "name": order.customer.name},
        "farm": {"id": order.farm.id, "name": order.farm.name},
        "itemCount": sum(item.quantity for item in order.items),
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


def new_order(session: AsyncSession, order: Order, now: datetime) -> None:
    _record(session, order, EventType.NEW_ORDER, {"order": summary(order)}, now)


def status_change(
    session: AsyncSession, order: Order, change: StatusChange, actor: User, now: datetime
) -> None:
    _record(
        session,
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
                _camel(field): iso_z(getattr(order, field))
                for field in ("created_at", *TIMESTAMP_FIELDS.values(), "updated_at")
            },
        },
        now,
    )


def order_update(
    session: AsyncSession, order: Order, changes: dict[str, Any], actor: User, now: datetime
) -> None:
    """``changes`` maps snake_case fields (or "items") to their new values."""
    wire = {
        _camel(key): iso_z(value) if isinstance(value, datetime) else value
        for key, value in changes.items()
    }
    _record(
        session,
        order,
        EventType.ORDER_UPDATE,
        {"changes": wire, "changedBy": _who(actor), "version": order.version},
        now,
    )
