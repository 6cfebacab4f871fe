"""The customer's timeline, built from an order and its history: pure, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from farmstand.orders.records import OrderRecord
from farmstand.orders.schemas import HistoryOut
from farmstand.orders.states import FulfillmentType, OrderStatus
from farmstand.orders.timeline import StepState, build, status_label

S = OrderStatus
T0 = datetime(2026, 6, 1, 9, tzinfo=UTC)


def order(
    status: OrderStatus = S.PENDING,
    fulfillment: FulfillmentType = FulfillmentType.PICKUP,
    reached: tuple[str, ...] = (),
    **fields: object,
) -> OrderRecord:
    stamps: dict[str, datetime | None] = {
        name: None
        for name in (
            "confirmed_at",
            "preparing_at",
            "ready_at",
            "out_for_delivery_at",
            "completed_at",
            "cancelled_at",
            "refunded_at",
        )
    }
    for i, name in enumerate(reached, start=1):
        stamps[name] = T0 + timedelta(hours=i)
    values: dict[str, object] = {
        "id": "o1",
        "order_number": "FS-ABC234",
        "status": status,
        "fulfillment_type": fulfillment,
        "customer_id": "c1",
        "farm_id": "f1",
        "total_amount": Decimal("4.50"),
        "paid_at": T0,
        **stamps,
        "estimated_ready_at": None,
        "estimated_pickup_at": None,
        "pickup_location": "Stall 7" if fulfillment is FulfillmentType.PICKUP else None,
        "pickup_instructions": None,
        "delivery_address": None,
        "delivery_notes": None,
        "tracking_number": None,
        "carrier": None,
        "version": 1,
        "created_at": T0,
        "updated_at": T0,
        "farm_owner_id": "u1",
        "farm_name": "Green Acre",
        "farm_timezone": "UTC",
        "customer_name": "Carol",
        "items": (),
    }
    values.update(fields)
    return OrderRecord(**values)  # type: ignore[arg-type]


def history(*steps: tuple[OrderStatus, str | None]) -> list[HistoryOut]:
    return [
        HistoryOut(
            id=str(i),
            order_id="o1",
            from_status=None,
            to_status=status,
            changed_by=None,
            actor=None,
            reason=reason,
            metadata={},
            created_at=T0,
        )
        for i, (status, reason) in enumerate(steps)
    ]


def states_of(timeline) -> list[tuple[str, StepState]]:
    return [(step.label, step.state) for step in timeline.steps]


def test_a_new_pickup_order_is_placed_and_awaits_the_rest():
    timeline = build(order())
    assert states_of(timeline) == [
        ("Order placed", StepState.CURRENT),
        ("Confirmed", StepState.UPCOMING),
        ("Preparing", StepState.UPCOMING),
        ("Ready for pickup", StepState.UPCOMING),
        ("Completed", StepState.UPCOMING),
    ]
    assert timeline.steps[0].at == T0 and timeline.stop is None
    assert timeline.steps[0].description.endswith("waiting for the farm to confirm it.")
    assert timeline.next_step == "Next: the farm confirms your order."


def test_the_steps_follow_the_fulfilment_type():
    delivery = build(order(fulfillment=FulfillmentType.DELIVERY))
    shipping = build(
        order(fulfillment=FulfillmentType.SHIPPING, tracking_number="1Z9", carrier="UPS")
    )
    assert delivery.steps[3].label == "Out for delivery"
    assert shipping.steps[3].label == "Shipped"
    assert shipping.steps[3].description == "Handed to UPS, tracking number 1Z9."
    assert status_label(S.OUT_FOR_DELIVERY, FulfillmentType.SHIPPING) == "Shipped"


def test_a_ready_order_shows_the_steps_done_with_their_times_and_where_to_collect():
    ready = order(S.READY_FOR_PICKUP, reached=("confirmed_at", "preparing_at", "ready_at"))
    timeline = build(ready)
    assert [s.state for s in timeline.steps] == [StepState.DONE] * 3 + [
        StepState.CURRENT,
        StepState.UPCOMING,
    ]
    assert timeline.steps[3].at == T0 + timedelta(hours=3)
    assert timeline.next_step == "Next: collect it at Stall 7."


def test_a_completed_order_is_done_all_the_way():
    done = order(S.COMPLETED, reached=("confirmed_at", "preparing_at", "ready_at", "completed_at"))
    timeline = build(done)
    assert all(step.state is StepState.DONE for step in timeline.steps)
    assert timeline.next_step is None


def test_a_cancelled_order_shows_where_it_stopped_the_reason_and_the_pending_refund():
    cancelled = order(S.CANCELLED, reached=("confirmed_at", "cancelled_at"))
    timeline = build(cancelled, history((S.PENDING, "Order placed"), (S.CANCELLED, "No eggs")))
    assert states_of(timeline)[:2] == [
        ("Order placed", StepState.DONE),
        ("Confirmed", StepState.DONE),
    ]
    assert [s.state for s in timeline.steps[2:]] == [StepState.SKIPPED] * 3
    assert timeline.steps[0].description == "Paid and sent to Green Acre."
    assert timeline.stop is not None
    assert timeline.stop.label == "Cancelled" and timeline.stop.reason == "No eggs"
    assert not timeline.stop.refunded and "Refund pending" in timeline.stop.refund
    assert timeline.next_step is None


@pytest.mark.parametrize(
    ("reached", "label"),
    [
        (("cancelled_at", "refunded_at"), "Cancelled and refunded"),
        (
            ("confirmed_at", "preparing_at", "ready_at", "completed_at", "refunded_at"),
            "Refunded",
        ),
    ],
)
def test_a_refunded_order_says_the_refund_is_done(reached, label):
    timeline = build(order(S.REFUNDED, reached=reached), history((S.REFUNDED, "Bruised")))
    assert timeline.stop is not None
    assert timeline.stop.label == label and timeline.stop.refunded
    assert timeline.stop.reason == "Bruised"
