"""The order state machine, tested pure: no database, no clock, no HTTP.

The expectations below are written out by hand from the rules in the issue. They never read
``states.TRANSITIONS``, so a wrong rule in the table makes these tests fail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Literal, cast

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from farmstand.accounts.roles import Role
from farmstand.errors import FarmstandError
from farmstand.orders import states
from farmstand.orders.errors import (
    InvalidTransition,
    ReasonRequired,
    TransitionForbidden,
    TransitionGuardFailed,
)
from farmstand.orders.states import (
    Actor,
    FulfillmentType,
    OrderSnapshot,
    OrderStatus,
    Policy,
    StatusChange,
)

S = OrderStatus
F = FulfillmentType

# ---------------------------------------------------------------------------------------------
# The hand-written expectation table (from the issue, not from states.py)
# ---------------------------------------------------------------------------------------------

ANYONE = frozenset({Role.CUSTOMER, Role.FARMER, Role.ADMIN})
STAFF = frozenset({Role.FARMER, Role.ADMIN})
EVERY_TYPE = frozenset({F.PICKUP, F.DELIVERY, F.SHIPPING})
PICKUP_ONLY = frozenset({F.PICKUP})
DELIVERED = frozenset({F.DELIVERY, F.SHIPPING})

# (from, to) -> (roles allowed, fulfilment types it applies to)
EXPECTED_TABLE: dict[tuple[OrderStatus, OrderStatus], tuple[frozenset[Role], frozenset[F]]] = {
    (S.PENDING, S.CONFIRMED): (STAFF, EVERY_TYPE),
    (S.PENDING, S.CANCELLED): (ANYONE, EVERY_TYPE),
    (S.CONFIRMED, S.PREPARING): (STAFF, EVERY_TYPE),
    (S.CONFIRMED, S.CANCELLED): (STAFF, EVERY_TYPE),
    (S.PREPARING, S.READY_FOR_PICKUP): (STAFF, PICKUP_ONLY),
    (S.PREPARING, S.OUT_FOR_DELIVERY): (STAFF, DELIVERED),
    (S.PREPARING, S.CANCELLED): (STAFF, EVERY_TYPE),
    (S.READY_FOR_PICKUP, S.COMPLETED): (ANYONE, PICKUP_ONLY),
    (S.READY_FOR_PICKUP, S.CANCELLED): (STAFF, PICKUP_ONLY),
    (S.OUT_FOR_DELIVERY, S.COMPLETED): (ANYONE, DELIVERED),
    (S.CANCELLED, S.REFUNDED): (STAFF, EVERY_TYPE),
    (S.COMPLETED, S.REFUNDED): (STAFF, EVERY_TYPE),
}

EXPECTED_TIMESTAMP_FIELD: dict[OrderStatus, str] = {
    S.CONFIRMED: "confirmed_at",
    S.PREPARING: "preparing_at",
    S.READY_FOR_PICKUP: "ready_at",
    S.OUT_FOR_DELIVERY: "out_for_delivery_at",
    S.COMPLETED: "completed_at",
    S.CANCELLED: "cancelled_at",
    S.REFUNDED: "refunded_at",
}

PLACED_AT = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)
DAY = timedelta(hours=24)

CUSTOMER = Actor(user_id="customer-1", role=Role.CUSTOMER)
OWNER = Actor(user_id="farmer-1", role=Role.FARMER)
ADMIN = Actor(user_id="admin-1", role=Role.ADMIN)
OTHER_CUSTOMER = Actor(user_id="customer-2", role=Role.CUSTOMER)
OTHER_FARMER = Actor(user_id="farmer-2", role=Role.FARMER)
RELATED_ACTOR: dict[Role, Actor] = {Role.CUSTOMER: CUSTOMER, Role.FARMER: OWNER, Role.ADMIN: ADMIN}


def make_snapshot(
    status: OrderStatus = S.PENDING,
    fulfillment: FulfillmentType = F.PICKUP,
    *,
    all_items_prepared: bool = True,
    has_tracking_number: bool = True,
    created_at: datetime = PLACED_AT,
) -> OrderSnapshot:
    """An order of CUSTOMER at OWNER's farm."""
    return OrderSnapshot(
        status=status,
        fulfillment_type=fulfillment,
        customer_id=CUSTOMER.user_id,
        farm_owner_id=OWNER.user_id,
        created_at=created_at,
        all_items_prepared=all_items_prepared,
        has_tracking_number=has_tracking_number,
    )


def _related(order: OrderSnapshot, actor: Actor) -> bool:
    if actor.role is Role.ADMIN:
        return True
    if actor.role is Role.FARMER:
        return actor.user_id == order.farm_owner_id
    return actor.user_id == order.customer_id


Outcome = StatusChange | type[FarmstandError]


def expected_outcome(
    order: OrderSnapshot,
    target: OrderStatus,
    actor: Actor,
    now: datetime,
    reason: str | None,
    window: timedelta = DAY,
) -> Outcome:
    """What the issue says should happen, written independently of ``states``."""
    entry = EXPECTED_TABLE.get((order.status, target))
    if entry is None or order.fulfillment_type not in entry[1]:
        return InvalidTransition
    roles, _ = entry
    if not _related(order, actor) or actor.role not in roles:
        return TransitionForbidden
    if target in (S.READY_FOR_PICKUP, S.OUT_FOR_DELIVERY) and not order.all_items_prepared:
        return TransitionGuardFailed
    if (
        target is S.OUT_FOR_DELIVERY
        and order.fulfillment_type is F.SHIPPING
        and not order.has_tracking_number
    ):
        return TransitionGuardFailed
    if target is S.CANCELLED and actor.role is Role.CUSTOMER and now - order.created_at > window:
        return TransitionGuardFailed
    clean_reason = (reason or "").strip() or None
    if target in (S.CANCELLED, S.REFUNDED) and actor.role in STAFF and clean_reason is None:
        return ReasonRequired
    return StatusChange(
        from_status=order.status,
        to_status=target,
        timestamp_field=EXPECTED_TIMESTAMP_FIELD[target],
        at=now,
        reason=clean_reason,
    )


def attempt(
    order: OrderSnapshot,
    target: OrderStatus,
    actor: Actor,
    now: datetime,
    reason: str | None,
    policy: Policy = Policy(),
) -> Outcome:
    """Call ``states.transition`` and fold a refusal into its error type."""
    try:
        return states.transition(order, target, actor, now, reason=reason, policy=policy)
    except FarmstandError as exc:
        return type(exc)


# ---------------------------------------------------------------------------------------------
# 1. Exhaustive table: every (from, to) x role x fulfilment type x scenario
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """The circumstances of an attempt: guards satisfied or not, reason given or not."""

    all_items_prepared: bool
    has_tracking_number: bool
    elapsed: timedelta
    reason: str | None


SCENARIOS: dict[str, Scenario] = {
    # Every guard satisfied and a (padded) reason given: only the table and roles decide.
    "ready": Scenario(True, True, timedelta(hours=1), "  Frost took the lettuce  "),
    # Same, but nobody gives a reason: staff cancellations and refunds must be refused.
    "no-reason": Scenario(True, True, timedelta(hours=1), None),
    # Items unprepared, no tracking number, cancellation window passed.
    "blocked": Scenario(False, False, DAY + timedelta(minutes=1), "Out of stock"),
}

TABLE_CASES = [
    pytest.param(
        source,
        target,
        fulfillment,
        role,
        scenario,
        id=f"{fulfillment.lower()}-{role.lower()}-{source}-to-{target}-{scenario}",
    )
    for fulfillment in FulfillmentType
    for role in Role
    for source in OrderStatus
    for target in OrderStatus
    for scenario in SCENARIOS
]


@pytest.mark.parametrize(("source", "target", "fulfillment", "role", "scenario"), TABLE_CASES)
def test_transition_follows_the_table(
    source: OrderStatus,
    target: OrderStatus,
    fulfillment: FulfillmentType,
    role: Role,
    scenario: str,
) -> None:
    # Given an order in `source`, acted on by someone related to it (its customer, its farm's
    # owner, an admin)
    case = SCENARIOS[scenario]
    order = make_snapshot(
        source,
        fulfillment,
        all_items_prepared=case.all_items_prepared,
        has_tracking_number=case.has_tracking_number,
    )
    actor = RELATED_ACTOR[role]
    now = PLACED_AT + case.elapsed
    expected = expected_outcome(order, target, actor, now, case.reason)

    # When they ask for `target`
    outcome = attempt(order, target, actor, now, case.reason)

    # Then the change (or the refusal) is exactly what the table says
    assert outcome == expected


def test_table_covers_every_kind_of_outcome() -> None:
    """The exhaustive test above must exercise every refusal and some successes."""
    seen: set[object] = set()
    for p in TABLE_CASES:
        values = cast(tuple[OrderStatus, OrderStatus, FulfillmentType, Role, str], p.values)
        source, target, fulfillment, role, scenario = values
        case = SCENARIOS[scenario]
        order = make_snapshot(
            source,
            fulfillment,
            all_items_prepared=case.all_items_prepared,
            has_tracking_number=case.has_tracking_number,
        )
        outcome = expected_outcome(
            order, target, RELATED_ACTOR[role], PLACED_AT + case.elapsed, case.reason
        )
        seen.add(StatusChange if isinstance(outcome, StatusChange) else outcome)
    assert seen == {
        StatusChange,
        InvalidTransition,
        TransitionForbidden,
        TransitionGuardFailed,
        ReasonRequired,
    }


STRANGER_CASES = [
    pytest.param(
        source,
        target,
        fulfillment,
        stranger,
        id=f"{fulfillment.lower()}-{stranger.user_id}-{source}-to-{target}",
    )
    for (source, target), (_, fulfillments) in EXPECTED_TABLE.items()
    for fulfillment in sorted(fulfillments)
    for stranger in (OTHER_FARMER, OTHER_CUSTOMER)
]


@pytest.mark.parametrize(("source", "target", "fulfillment", "stranger"), STRANGER_CASES)
def test_nobody_unrelated_to_the_order_can_change_it(
    source: OrderStatus, target: OrderStatus, fulfillment: FulfillmentType, stranger: Actor
) -> None:
    # Given an order of someone else, at someone else's farm, with every guard satisfied
    order = make_snapshot(source, fulfillment)

    # When a farmer or customer unrelated to it tries an allowed transition
    # Then they are refused, whatever their role
    with pytest.raises(TransitionForbidden):
        states.transition(order, target, stranger, PLACED_AT, reason="Because")


# ---------------------------------------------------------------------------------------------
# 2. Guards, one behaviour each
# ---------------------------------------------------------------------------------------------


def test_farmer_who_does_not_own_the_farm_cannot_confirm_an_order() -> None:
    # Given a pending order at farmer-1's farm
    order = make_snapshot(S.PENDING)

    # When farmer-2 confirms it (a pair farmers are normally allowed)
    # Then they are refused
    with pytest.raises(TransitionForbidden):
        states.transition(order, S.CONFIRMED, OTHER_FARMER, PLACED_AT)
    # ... while the owning farmer may
    assert states.transition(order, S.CONFIRMED, OWNER, PLACED_AT).to_status is S.CONFIRMED


def test_farmer_who_does_not_own_the_farm_cannot_cancel_or_refund() -> None:
    for status, target in [(S.PREPARING, S.CANCELLED), (S.COMPLETED, S.REFUNDED)]:
        with pytest.raises(TransitionForbidden):
            states.transition(
                make_snapshot(status), target, OTHER_FARMER, PLACED_AT, reason="Spoiled"
            )


def test_admin_can_act_on_any_order() -> None:
    # Given an order where the admin is neither customer nor farm owner
    order = make_snapshot(S.PENDING)

    # When the admin confirms it
    change = states.transition(order, S.CONFIRMED, ADMIN, PLACED_AT)

    # Then it is confirmed
    assert change.to_status is S.CONFIRMED


def test_customer_cannot_cancel_someone_elses_order() -> None:
    order = make_snapshot(S.PENDING)
    with pytest.raises(TransitionForbidden):
        states.transition(order, S.CANCELLED, OTHER_CUSTOMER, PLACED_AT)


def test_customer_cannot_complete_someone_elses_order() -> None:
    order = make_snapshot(S.READY_FOR_PICKUP, F.PICKUP)
    with pytest.raises(TransitionForbidden):
        states.transition(order, S.COMPLETED, OTHER_CUSTOMER, PLACED_AT)


def test_customer_cannot_confirm_their_own_order() -> None:
    order = make_snapshot(S.PENDING)
    with pytest.raises(TransitionForbidden):
        states.transition(order, S.CONFIRMED, CUSTOMER, PLACED_AT)


def test_customer_can_complete_their_own_pickup() -> None:
    order = make_snapshot(S.READY_FOR_PICKUP, F.PICKUP)
    change = states.transition(order, S.COMPLETED, CUSTOMER, PLACED_AT)
    assert (change.from_status, change.to_status) == (S.READY_FOR_PICKUP, S.COMPLETED)
    assert change.timestamp_field == "completed_at"


def test_order_cannot_be_ready_for_pickup_until_every_item_is_prepared() -> None:
    # Given a pickup order being prepared, with an item not yet prepared
    order = make_snapshot(S.PREPARING, F.PICKUP, all_items_prepared=False)

    # When the farmer marks it ready, Then it is refused
    with pytest.raises(TransitionGuardFailed, match="prepared"):
        states.transition(order, S.READY_FOR_PICKUP, OWNER, PLACED_AT)

    # And once every item is prepared, it goes through
    prepared = replace(order, all_items_prepared=True)
    assert states.transition(prepared, S.READY_FOR_PICKUP, OWNER, PLACED_AT).to_status is (
        S.READY_FOR_PICKUP
    )


@pytest.mark.parametrize("fulfillment", [F.DELIVERY, F.SHIPPING])
def test_order_cannot_go_out_for_delivery_until_every_item_is_prepared(
    fulfillment: FulfillmentType,
) -> None:
    order = make_snapshot(S.PREPARING, fulfillment, all_items_prepared=False)
    with pytest.raises(TransitionGuardFailed, match="prepared"):
        states.transition(order, S.OUT_FOR_DELIVERY, ADMIN, PLACED_AT)
    prepared = replace(order, all_items_prepared=True)
    assert states.transition(prepared, S.OUT_FOR_DELIVERY, ADMIN, PLACED_AT).to_status is (
        S.OUT_FOR_DELIVERY
    )


def test_shipping_order_needs_tracking_number_before_going_out() -> None:
    # Given a prepared shipping order with no tracking number
    order = make_snapshot(S.PREPARING, F.SHIPPING, has_tracking_number=False)

    # When the farmer sends it out, Then it is refused with a message about tracking
    with pytest.raises(TransitionGuardFailed, match="tracking number"):
        states.transition(order, S.OUT_FOR_DELIVERY, OWNER, PLACED_AT)

    # And with a tracking number it ships
    tracked = replace(order, has_tracking_number=True)
    assert states.transition(tracked, S.OUT_FOR_DELIVERY, OWNER, PLACED_AT).to_status is (
        S.OUT_FOR_DELIVERY
    )


def test_delivery_order_goes_out_without_tracking_number() -> None:
    order = make_snapshot(S.PREPARING, F.DELIVERY, has_tracking_number=False)
    change = states.transition(order, S.OUT_FOR_DELIVERY, OWNER, PLACED_AT)
    assert change.to_status is S.OUT_FOR_DELIVERY
    assert change.timestamp_field == "out_for_delivery_at"


def test_customer_can_cancel_exactly_at_the_end_of_the_window() -> None:
    # Given a pending order placed exactly 24 hours ago
    order = make_snapshot(S.PENDING)
    now = PLACED_AT + DAY

    # When its customer cancels it, without a reason
    change = states.transition(order, S.CANCELLED, CUSTOMER, now)

    # Then it is cancelled
    assert change == StatusChange(S.PENDING, S.CANCELLED, "cancelled_at", now, None)


def test_customer_cannot_cancel_after_window() -> None:
    # Given a pending order placed 24 hours and one microsecond ago
    order = make_snapshot(S.PENDING)
    now = PLACED_AT + DAY + timedelta(microseconds=1)

    # When its customer cancels it, Then they are told about the 24-hour window
    with pytest.raises(TransitionGuardFailed, match="within 24 hours") as refused:
        states.transition(order, S.CANCELLED, CUSTOMER, now, reason="Changed my mind")
    assert refused.value.status_code == 409


def test_customer_cancellation_window_follows_the_policy() -> None:
    # Given a farm policy of a 2-hour cancellation window
    policy = Policy(cancellation_window=timedelta(hours=2))
    order = make_snapshot(S.PENDING)

    # Then cancelling exactly at 2 hours works
    at_boundary = PLACED_AT + timedelta(hours=2)
    assert states.transition(
        order, S.CANCELLED, CUSTOMER, at_boundary, policy=policy
    ).to_status is (S.CANCELLED)
    # And one second later it is refused, naming the policy's window
    with pytest.raises(TransitionGuardFailed, match="within 2 hours"):
        states.transition(
            order, S.CANCELLED, CUSTOMER, at_boundary + timedelta(seconds=1), policy=policy
        )
    # And 3 hours in (fine by the default 24 hours) it is refused too
    with pytest.raises(TransitionGuardFailed):
        states.transition(
            order, S.CANCELLED, CUSTOMER, PLACED_AT + timedelta(hours=3), policy=policy
        )


def test_longer_policy_window_lets_customer_cancel_after_a_day() -> None:
    policy = Policy(cancellation_window=timedelta(hours=48))
    order = make_snapshot(S.PENDING)
    now = PLACED_AT + timedelta(hours=30)
    assert states.transition(order, S.CANCELLED, CUSTOMER, now, policy=policy).to_status is (
        S.CANCELLED
    )


@pytest.mark.parametrize("staff", [OWNER, ADMIN], ids=["farmer", "admin"])
def test_staff_can_cancel_after_the_customer_window(staff: Actor) -> None:
    order = make_snapshot(S.PENDING)
    now = PLACED_AT + timedelta(days=10)
    change = states.transition(order, S.CANCELLED, staff, now, reason="Farm closed")
    assert change.to_status is S.CANCELLED


STAFF_REASON_CASES = [
    pytest.param(source, target, staff, reason, id=f"{staff.role.lower()}-{source}-{reason!r}")
    for source, target in [
        (S.PENDING, S.CANCELLED),
        (S.CONFIRMED, S.CANCELLED),
        (S.PREPARING, S.CANCELLED),
        (S.READY_FOR_PICKUP, S.CANCELLED),
        (S.CANCELLED, S.REFUNDED),
        (S.COMPLETED, S.REFUNDED),
    ]
    for staff in (OWNER, ADMIN)
    for reason in (None, "", "   \t\n")
]


@pytest.mark.parametrize(("source", "target", "staff", "reason"), STAFF_REASON_CASES)
def test_staff_cancellation_or_refund_without_reason_is_refused(
    source: OrderStatus, target: OrderStatus, staff: Actor, reason: str | None
) -> None:
    # Given a pickup order the farmer or admin may cancel or refund
    order = make_snapshot(source, F.PICKUP)

    # When they do it without a real reason, Then they are asked for one
    with pytest.raises(ReasonRequired) as refused:
        states.transition(order, target, staff, PLACED_AT, reason=reason)
    assert refused.value.status_code == 422


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_customer_cancellation_needs_no_reason(reason: str | None) -> None:
    change = states.transition(
        make_snapshot(S.PENDING), S.CANCELLED, CUSTOMER, PLACED_AT, reason=reason
    )
    assert change.to_status is S.CANCELLED
    assert change.reason is None


def test_reasons_are_stripped() -> None:
    # Given a farmer cancelling with a padded reason
    order = make_snapshot(S.CONFIRMED)

    # When the change is decided
    change = states.transition(order, S.CANCELLED, OWNER, PLACED_AT, reason="  Hail storm \n")

    # Then the reason the customer sees has no stray whitespace
    assert change.reason == "Hail storm"


def test_customer_reason_is_stripped_too() -> None:
    change = states.transition(
        make_snapshot(S.PENDING), S.CANCELLED, CUSTOMER, PLACED_AT, reason="\tOrdered twice  "
    )
    assert change.reason == "Ordered twice"


def test_change_carries_the_time_it_was_decided() -> None:
    now = PLACED_AT + timedelta(minutes=7)
    change = states.transition(make_snapshot(S.PENDING), S.CONFIRMED, OWNER, now)
    assert change == StatusChange(S.PENDING, S.CONFIRMED, "confirmed_at", now, None)


def test_invalid_transition_lists_the_allowed_next_statuses() -> None:
    # Given a pickup order being prepared
    order = make_snapshot(S.PREPARING, F.PICKUP)

    # When someone sends it out for delivery
    with pytest.raises(InvalidTransition) as refused:
        states.transition(order, S.OUT_FOR_DELIVERY, OWNER, PLACED_AT)

    # Then the error says where it can go instead
    details = refused.value.details
    assert details["currentStatus"] == S.PREPARING
    assert details["requestedStatus"] == S.OUT_FOR_DELIVERY
    assert set(details["allowedStatuses"]) == {S.READY_FOR_PICKUP, S.CANCELLED}
    assert "pickup order" in refused.value.message


def test_moving_to_the_same_status_is_an_invalid_transition() -> None:
    for status in OrderStatus:
        with pytest.raises(InvalidTransition):
            states.transition(make_snapshot(status), status, ADMIN, PLACED_AT, reason="Again")


ERROR_CASES = [
    pytest.param(
        InvalidTransition,
        409,
        lambda: states.transition(make_snapshot(S.PENDING), S.COMPLETED, ADMIN, PLACED_AT),
        id="invalid-transition-409",
    ),
    pytest.param(
        TransitionForbidden,
        403,
        lambda: states.transition(make_snapshot(S.PENDING), S.CONFIRMED, CUSTOMER, PLACED_AT),
        id="forbidden-403",
    ),
    pytest.param(
        TransitionGuardFailed,
        409,
        lambda: states.transition(
            make_snapshot(S.PREPARING, all_items_prepared=False),
            S.READY_FOR_PICKUP,
            OWNER,
            PLACED_AT,
        ),
        id="guard-failed-409",
    ),
    pytest.param(
        ReasonRequired,
        422,
        lambda: states.transition(make_snapshot(S.COMPLETED), S.REFUNDED, ADMIN, PLACED_AT),
        id="reason-required-422",
    ),
]


@pytest.mark.parametrize(("error", "status_code", "refused_call"), ERROR_CASES)
def test_each_refusal_carries_its_http_status(
    error: type[FarmstandError], status_code: int, refused_call: Callable[[], object]
) -> None:
    assert error.status_code == status_code
    with pytest.raises(error) as refused:
        refused_call()
    assert type(refused.value) is error
    assert refused.value.status_code == status_code
    assert refused.value.message  # a user-safe sentence, never empty


# ---------------------------------------------------------------------------------------------
# 3. next_actions, path_to, replay, FINAL_STATUSES
# ---------------------------------------------------------------------------------------------


def test_farmer_can_confirm_or_cancel_a_pending_order() -> None:
    actions = states.next_actions(make_snapshot(S.PENDING), OWNER, PLACED_AT)
    assert set(actions) == {S.CONFIRMED, S.CANCELLED}


def test_customer_can_only_cancel_a_pending_order_within_the_window() -> None:
    order = make_snapshot(S.PENDING)
    assert states.next_actions(order, CUSTOMER, PLACED_AT + DAY) == [S.CANCELLED]
    late = PLACED_AT + DAY + timedelta(seconds=1)
    assert states.next_actions(order, CUSTOMER, late) == []
    short = Policy(cancellation_window=timedelta(hours=1))
    assert states.next_actions(order, CUSTOMER, PLACED_AT + timedelta(hours=2), policy=short) == []


def test_next_actions_wait_for_prepared_items_and_tracking_number() -> None:
    unprepared = make_snapshot(S.PREPARING, F.PICKUP, all_items_prepared=False)
    assert states.next_actions(unprepared, OWNER, PLACED_AT) == [S.CANCELLED]
    prepared = replace(unprepared, all_items_prepared=True)
    assert set(states.next_actions(prepared, OWNER, PLACED_AT)) == {
        S.READY_FOR_PICKUP,
        S.CANCELLED,
    }
    untracked = make_snapshot(S.PREPARING, F.SHIPPING, has_tracking_number=False)
    assert states.next_actions(untracked, OWNER, PLACED_AT) == [S.CANCELLED]
    undelivered = make_snapshot(S.PREPARING, F.DELIVERY, has_tracking_number=False)
    assert set(states.next_actions(undelivered, OWNER, PLACED_AT)) == {
        S.OUT_FOR_DELIVERY,
        S.CANCELLED,
    }


def test_strangers_have_no_next_actions() -> None:
    for status in OrderStatus:
        order = make_snapshot(status)
        assert states.next_actions(order, OTHER_FARMER, PLACED_AT) == []
        assert states.next_actions(order, OTHER_CUSTOMER, PLACED_AT) == []


def test_refunded_order_has_no_next_actions() -> None:
    for actor in (CUSTOMER, OWNER, ADMIN):
        assert states.next_actions(make_snapshot(S.REFUNDED), actor, PLACED_AT) == []


def test_completed_order_can_only_be_refunded_by_staff() -> None:
    order = make_snapshot(S.COMPLETED)
    assert states.next_actions(order, OWNER, PLACED_AT) == [S.REFUNDED]
    assert states.next_actions(order, ADMIN, PLACED_AT) == [S.REFUNDED]
    assert states.next_actions(order, CUSTOMER, PLACED_AT) == []


@pytest.mark.parametrize("fulfillment", list(FulfillmentType), ids=str.lower)
@pytest.mark.parametrize("role", list(Role), ids=str.lower)
@pytest.mark.parametrize("status", list(OrderStatus))
def test_next_actions_match_the_table(
    status: OrderStatus, role: Role, fulfillment: FulfillmentType
) -> None:
    # Given an order whose guards are all satisfied, and someone related to it
    order = make_snapshot(status, fulfillment)
    actor = RELATED_ACTOR[role]

    # Then the offered actions are exactly the table's targets for this role and type
    expected = {
        target
        for (source, target), (roles, types) in EXPECTED_TABLE.items()
        if source is status and role in roles and fulfillment in types
    }
    assert set(states.next_actions(order, actor, PLACED_AT)) == expected


def _shortest_distances(fulfillment: FulfillmentType) -> dict[OrderStatus, int]:
    """Breadth-first over the hand-written table."""
    distance = {S.PENDING: 0}
    frontier = [S.PENDING]
    while frontier:
        status = frontier.pop(0)
        for (source, target), (_, types) in EXPECTED_TABLE.items():
            if source is status and fulfillment in types and target not in distance:
                distance[target] = distance[status] + 1
                frontier.append(target)
    return distance


def test_path_to_pending_is_empty() -> None:
    for fulfillment in FulfillmentType:
        assert states.path_to(S.PENDING, fulfillment) == []


def test_path_to_completed_follows_the_fulfilment_type() -> None:
    pickup = [rule.target for rule in states.path_to(S.COMPLETED, F.PICKUP)]
    assert pickup == [S.CONFIRMED, S.PREPARING, S.READY_FOR_PICKUP, S.COMPLETED]
    for fulfillment in (F.DELIVERY, F.SHIPPING):
        delivered = [rule.target for rule in states.path_to(S.COMPLETED, fulfillment)]
        assert delivered == [S.CONFIRMED, S.PREPARING, S.OUT_FOR_DELIVERY, S.COMPLETED]


def test_path_to_refunded_is_the_shortest_one_through_cancellation() -> None:
    for fulfillment in FulfillmentType:
        path = states.path_to(S.REFUNDED, fulfillment)
        assert [(rule.source, rule.target) for rule in path] == [
            (S.PENDING, S.CANCELLED),
            (S.CANCELLED, S.REFUNDED),
        ]


def test_path_to_an_unreachable_status_raises() -> None:
    with pytest.raises(ValueError, match="unreachable"):
        states.path_to(S.OUT_FOR_DELIVERY, F.PICKUP)
    for fulfillment in (F.DELIVERY, F.SHIPPING):
        with pytest.raises(ValueError, match="unreachable"):
            states.path_to(S.READY_FOR_PICKUP, fulfillment)


@pytest.mark.parametrize("fulfillment", list(FulfillmentType), ids=str.lower)
@pytest.mark.parametrize("target", list(OrderStatus))
def test_path_to_is_a_shortest_valid_chain(
    target: OrderStatus, fulfillment: FulfillmentType
) -> None:
    distances = _shortest_distances(fulfillment)
    if target not in distances:
        with pytest.raises(ValueError):
            states.path_to(target, fulfillment)
        return
    path = states.path_to(target, fulfillment)
    assert len(path) == distances[target]
    current = S.PENDING
    for rule in path:
        assert rule.source is current
        assert fulfillment in EXPECTED_TABLE[(rule.source, rule.target)][1]
        current = rule.target
    assert current is target
    history = [(None, S.PENDING), *((rule.source, rule.target) for rule in path)]
    assert states.replay(history) is target


def test_replay_of_a_placed_order_is_pending() -> None:
    assert states.replay([(None, S.PENDING)]) is S.PENDING


@pytest.mark.parametrize(
    "history",
    [
        pytest.param(
            [
                (None, S.PENDING),
                (S.PENDING, S.CONFIRMED),
                (S.CONFIRMED, S.PREPARING),
                (S.PREPARING, S.READY_FOR_PICKUP),
                (S.READY_FOR_PICKUP, S.COMPLETED),
                (S.COMPLETED, S.REFUNDED),
            ],
            id="pickup-refunded",
        ),
        pytest.param(
            [
                (None, S.PENDING),
                (S.PENDING, S.CONFIRMED),
                (S.CONFIRMED, S.PREPARING),
                (S.PREPARING, S.OUT_FOR_DELIVERY),
                (S.OUT_FOR_DELIVERY, S.COMPLETED),
            ],
            id="delivered",
        ),
        pytest.param(
            [(None, S.PENDING), (S.PENDING, S.CONFIRMED), (S.CONFIRMED, S.CANCELLED)],
            id="cancelled",
        ),
    ],
)
def test_replay_of_a_valid_history_ends_in_its_last_status(
    history: list[tuple[OrderStatus | None, OrderStatus]],
) -> None:
    assert states.replay(history) is history[-1][1]


@pytest.mark.parametrize(
    "history",
    [
        pytest.param([(None, S.PENDING), (S.PENDING, S.PREPARING)], id="skips-confirmation"),
        pytest.param(
            [(None, S.PENDING), (S.PENDING, S.CONFIRMED), (S.PENDING, S.CANCELLED)],
            id="broken-chain",
        ),
        pytest.param(
            [
                (None, S.PENDING),
                (S.PENDING, S.CONFIRMED),
                (S.CONFIRMED, S.PREPARING),
                (S.PREPARING, S.READY_FOR_PICKUP),
                (S.READY_FOR_PICKUP, S.COMPLETED),
                (S.COMPLETED, S.CANCELLED),
            ],
            id="leaves-completed",
        ),
        pytest.param(
            [
                (None, S.PENDING),
                (S.PENDING, S.CANCELLED),
                (S.CANCELLED, S.REFUNDED),
                (S.REFUNDED, S.PENDING),
            ],
            id="leaves-refunded",
        ),
        pytest.param([(None, S.PENDING), (None, S.PENDING)], id="placed-twice"),
        pytest.param([(None, S.PENDING), (S.PENDING, S.PENDING)], id="stays-put"),
    ],
)
def test_replay_rejects_an_invalid_step(
    history: list[tuple[OrderStatus | None, OrderStatus]],
) -> None:
    with pytest.raises(ValueError, match="does not follow"):
        states.replay(history)


@pytest.mark.parametrize(
    "history",
    [
        pytest.param([], id="empty"),
        pytest.param([(S.PENDING, S.CONFIRMED)], id="no-placement"),
        pytest.param([(None, S.CONFIRMED)], id="placed-confirmed"),
    ],
)
def test_replay_must_start_with_the_order_being_placed(
    history: list[tuple[OrderStatus | None, OrderStatus]],
) -> None:
    with pytest.raises(ValueError, match="must start"):
        states.replay(history)


def test_final_statuses_are_completed_and_refunded() -> None:
    assert set(states.FINAL_STATUSES) == {S.COMPLETED, S.REFUNDED}


@pytest.mark.parametrize("final", [S.COMPLETED, S.REFUNDED])
def test_only_a_refund_follows_a_final_status(final: OrderStatus) -> None:
    # Given a finished order, any type, acted on by anyone related with every guard satisfied
    for fulfillment in FulfillmentType:
        order = make_snapshot(final, fulfillment)
        for actor in (CUSTOMER, OWNER, ADMIN):
            for target in OrderStatus:
                outcome = attempt(order, target, actor, PLACED_AT, "Reason")
                # Then the only change ever accepted is staff refunding a completed order
                accepted = isinstance(outcome, StatusChange)
                assert accepted == (
                    final is S.COMPLETED and target is S.REFUNDED and actor.role in STAFF
                )


# ---------------------------------------------------------------------------------------------
# 4. Property: random attempts on a simulated order never leave the table
# ---------------------------------------------------------------------------------------------

ACTORS: dict[str, Actor] = {
    "customer": CUSTOMER,
    "owning-farmer": OWNER,
    "other-farmer": OTHER_FARMER,
    "other-customer": OTHER_CUSTOMER,
    "admin": ADMIN,
}


@dataclass(frozen=True)
class Attempt:
    target: OrderStatus
    actor: str
    reason: str | None
    all_items_prepared: bool
    has_tracking_number: bool
    # Time since the order was placed, or exactly at / just past the cancellation window.
    elapsed: timedelta | Literal["at-window", "past-window"]

    def now(self, window: timedelta) -> datetime:
        if isinstance(self.elapsed, timedelta):
            return PLACED_AT + self.elapsed
        if self.elapsed == "at-window":
            return PLACED_AT + window
        return PLACED_AT + window + timedelta(microseconds=1)


def _attempts_on(status: OrderStatus) -> st.SearchStrategy[Attempt]:
    """A random attempt, biased so that sequences get past PENDING and reach the final
    statuses: targets the table lets follow ``status`` are drawn more often than others (and
    cancellation less often than moving on), and guards are more often satisfied than not."""
    successors = sorted(target for source, target in EXPECTED_TABLE if source is status)
    onwards = [target for target in successors if target is not S.CANCELLED]
    return st.builds(
        Attempt,
        target=st.sampled_from(list(OrderStatus) + successors * 2 + onwards * 4),
        actor=st.sampled_from(list(ACTORS)),
        reason=st.one_of(
            st.sampled_from([None, "", "  ", "Hail", "  Sold out \n"]), st.text(max_size=8)
        ),
        all_items_prepared=st.sampled_from([True, True, False]),
        has_tracking_number=st.sampled_from([True, True, False]),
        elapsed=st.one_of(
            st.sampled_from(["at-window", "past-window"]),
            st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3)),
        ),
    )


ATTEMPTS_ON = {status: _attempts_on(status) for status in OrderStatus}


@settings(max_examples=300, deadline=None)
@given(
    fulfillment=st.sampled_from(list(FulfillmentType)),
    window=st.sampled_from([timedelta(hours=h) for h in (1, 2, 24, 48)]),
    length=st.integers(min_value=0, max_value=30),
    data=st.data(),
)
def test_random_attempts_only_ever_follow_the_table(
    fulfillment: FulfillmentType, window: timedelta, length: int, data: st.DataObject
) -> None:
    # Given a newly placed order
    policy = Policy(cancellation_window=window)
    status = S.PENDING
    history: list[tuple[OrderStatus | None, OrderStatus]] = [(None, S.PENDING)]

    for _ in range(length):
        step = data.draw(ATTEMPTS_ON[status])
        order = make_snapshot(
            status,
            fulfillment,
            all_items_prepared=step.all_items_prepared,
            has_tracking_number=step.has_tracking_number,
        )
        actor = ACTORS[step.actor]
        now = step.now(window)
        expected = expected_outcome(order, step.target, actor, now, step.reason, window)
        offered = states.next_actions(order, actor, now, policy=policy)

        # When someone attempts a change
        outcome = attempt(order, step.target, actor, now, step.reason, policy)

        # Then it is accepted or refused exactly as the issue says
        assert outcome == expected
        # and the preview of next actions agrees (it ignores only the reason requirement)
        accepted_but_for_reason = isinstance(outcome, StatusChange) or outcome is ReasonRequired
        assert (step.target in offered) == accepted_but_for_reason
        if not isinstance(outcome, StatusChange):
            # A refusal leaves the order where it was: the next attempt starts from `status`
            continue

        # An accepted change is a rule of the table, for this type and role, by someone related
        roles, types = EXPECTED_TABLE[(status, step.target)]
        assert fulfillment in types
        assert actor.role in roles
        assert _related(order, actor)
        assert outcome.from_status is status
        # Once finished, the only way on is a refund of a completed order
        if status in states.FINAL_STATUSES:
            assert (status, step.target) == (S.COMPLETED, S.REFUNDED)

        event(f"accepted {status} -> {step.target}")
        status = outcome.to_status
        history.append((outcome.from_status, outcome.to_status))
        # The recorded history always replays to where the order is
        assert states.replay(history) is status

    event(f"ended {status}")


def test_replay_refuses_a_step_of_another_fulfilment_type() -> None:
    # Given a delivery order's history that claims it went through READY_FOR_PICKUP
    history = [
        (None, OrderStatus.PENDING),
        (OrderStatus.PENDING, OrderStatus.CONFIRMED),
        (OrderStatus.CONFIRMED, OrderStatus.PREPARING),
        (OrderStatus.PREPARING, OrderStatus.READY_FOR_PICKUP),
    ]
    # Then it replays for a pickup order and is refused for a delivery order.
    assert states.replay(history, FulfillmentType.PICKUP) is OrderStatus.READY_FOR_PICKUP
    with pytest.raises(ValueError):
        states.replay(history, FulfillmentType.DELIVERY)


def test_replay_accepts_statuses_read_back_as_plain_strings() -> None:
    history = [(None, "PENDING"), ("PENDING", "CONFIRMED")]
    assert states.replay(history) is OrderStatus.CONFIRMED  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Purity: the rules load no web framework and no database library


def test_importing_the_state_machine_loads_no_web_framework_or_database() -> None:
    import subprocess
    import sys

    # Given a fresh interpreter (this one has loaded everything already)
    code = (
        "import sys, farmstand.orders.states, farmstand.errors, farmstand.orders.errors\n"
        "print(','.join(sorted({m.split('.')[0] for m in sys.modules} "
        "& {'fastapi', 'starlette', 'sqlalchemy'})))"
    )
    # When it imports the state machine and the error types
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    # Then none of FastAPI, Starlette or SQLAlchemy came along
    assert result.stdout.strip() == ""
