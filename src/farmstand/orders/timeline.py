"""What the customer's order page shows: the steps of the order's journey, where it stands,
and what comes next. Pure: built from the order and its history, no I/O.

The steps follow the fulfilment type: Order placed, Confirmed, Preparing, then Ready for
pickup (pickup), Out for delivery (delivery) or Shipped (shipping, with the tracking number),
and Completed. A cancelled or refunded order shows the steps it reached, where it stopped,
the reason and the refund.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from farmstand.orders.records import OrderRecord
from farmstand.orders.schemas import HistoryOut
from farmstand.orders.states import FulfillmentType, OrderStatus

S = OrderStatus


class StepState(StrEnum):
    DONE = "done"
    CURRENT = "current"
    UPCOMING = "upcoming"
    SKIPPED = "skipped"  # never reached: the order stopped before


@dataclass(frozen=True)
class Step:
    status: OrderStatus
    label: str
    description: str
    icon: str
    at: datetime | None
    state: StepState


@dataclass(frozen=True)
class Stop:
    """Where a cancelled or refunded order left the journey."""

    status: OrderStatus
    label: str
    at: datetime | None
    reason: str | None
    refund: str
    refunded: bool


@dataclass(frozen=True)
class Timeline:
    steps: tuple[Step, ...]
    stop: Stop | None
    next_step: str | None  # what the customer can expect next; None once it is over


STATUS_LABELS: dict[OrderStatus, str] = {
    S.PENDING: "Awaiting confirmation",
    S.CONFIRMED: "Confirmed",
    S.PREPARING: "Preparing",
    S.READY_FOR_PICKUP: "Ready for pickup",
    S.OUT_FOR_DELIVERY: "Out for delivery",
    S.COMPLETED: "Completed",
    S.CANCELLED: "Cancelled",
    S.REFUNDED: "Refunded",
}


def status_label(status: OrderStatus, fulfillment: FulfillmentType) -> str:
    if status is S.OUT_FOR_DELIVERY and fulfillment is FulfillmentType.SHIPPING:
        return "Shipped"
    return STATUS_LABELS[status]


def _steps_for(order: OrderRecord) -> list[tuple[OrderStatus, str, str, str, datetime | None]]:
    """(status, label, description, icon, time) for each step of this order's journey."""
    kind = order.fulfillment_type
    steps = [
        (
            S.PENDING,
            "Order placed",
            f"Paid and sent to {order.farm_name}"
            + (", waiting for the farm to confirm it." if order.status is S.PENDING else "."),
            "receipt",
            order.created_at,
        ),
        (
            S.CONFIRMED,
            "Confirmed",
            "The farm has accepted your order.",
            "check",
            order.confirmed_at,
        ),
        (
            S.PREPARING,
            "Preparing",
            "The farm is picking and packing your items.",
            "basket",
            order.preparing_at,
        ),
    ]
    if kind is FulfillmentType.PICKUP:
        where = order.pickup_location or "the farm's pickup place"
        steps.append(
            (
                S.READY_FOR_PICKUP,
                "Ready for pickup",
                f"Collect it at {where}.",
                "box",
                order.ready_at,
            )
        )
        done = "You collected your order. Thank you!"
    elif kind is FulfillmentType.DELIVERY:
        steps.append(
            (
                S.OUT_FOR_DELIVERY,
                "Out for delivery",
                "The farm is bringing your order to your address.",
                "truck",
                order.out_for_delivery_at,
            )
        )
        done = "Your order was delivered. Thank you!"
    else:
        shipped = "Handed to the carrier"
        if order.carrier:
            shipped = f"Handed to {order.carrier}"
        if order.tracking_number:
            shipped += f", tracking number {order.tracking_number}"
        steps.append(
            (S.OUT_FOR_DELIVERY, "Shipped", shipped + ".", "truck", order.out_for_delivery_at)
        )
        done = "Your order was delivered. Thank you!"
    steps.append((S.COMPLETED, "Completed", done, "home", order.completed_at))
    return steps


def _last_reason(history: Sequence[HistoryOut], status: OrderStatus) -> str | None:
    for row in reversed(history):
        if row.to_status is status:
            return row.reason
    return None


def build(order: OrderRecord, history: Sequence[HistoryOut] = ()) -> Timeline:
    raw = _steps_for(order)
    order_of = [status for status, *_ in raw]
    stopped = order.status in (S.CANCELLED, S.REFUNDED)
    if stopped:
        # The last step it reached: the latest one with a time (the order placed, at least).
        current = max(i for i, (*_, at) in enumerate(raw) if at is not None or i == 0)
    else:
        current = order_of.index(order.status)
    steps = []
    for i, (status, label, description, icon, at) in enumerate(raw):
        if i < current or (i == current and (stopped or status is S.COMPLETED)):
            state = StepState.DONE
        elif i == current:
            state = StepState.CURRENT
        else:
            state = StepState.SKIPPED if stopped else StepState.UPCOMING
        steps.append(Step(status, label, description, icon, at if i <= current else None, state))
    stop = _stop(order, history) if stopped else None
    return Timeline(steps=tuple(steps), stop=stop, next_step=_next_step(order))


def _stop(order: OrderRecord, history: Sequence[HistoryOut]) -> Stop:
    cancelled = order.cancelled_at is not None
    if order.status is S.REFUNDED:
        refund = "Your payment has been refunded."
        label = "Cancelled and refunded" if cancelled else "Refunded"
        reason = _last_reason(history, S.REFUNDED) or _last_reason(history, S.CANCELLED)
        at = order.refunded_at
    else:
        refund = "Refund pending: your payment will be refunded within 3 to 5 business days."
        label = "Cancelled"
        reason = _last_reason(history, S.CANCELLED)
        at = order.cancelled_at
    return Stop(
        status=order.status,
        label=label,
        at=at,
        reason=reason,
        refund=refund,
        refunded=order.status is S.REFUNDED,
    )


def _next_step(order: OrderRecord) -> str | None:
    pickup = order.fulfillment_type is FulfillmentType.PICKUP
    match order.status:
        case S.PENDING:
            return "Next: the farm confirms your order."
        case S.CONFIRMED:
            return "Next: the farm starts preparing your order."
        case S.PREPARING:
            return (
                "Next: your order will be ready for pickup."
                if pickup
                else "Next: your order goes out for delivery."
            )
        case S.READY_FOR_PICKUP:
            where = order.pickup_location or "the farm's pickup place"
            return f"Next: collect it at {where}."
        case S.OUT_FOR_DELIVERY:
            return "Next: your order arrives."
        case _:
            return None
