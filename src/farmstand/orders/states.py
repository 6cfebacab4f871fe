"""The order state machine: statuses, the transition table and its guards.

Pure: no I/O, no clock, no database. ``transition`` is the only way a status change is
decided; ``service.change_status`` applies what it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from farmstand.accounts.roles import Role
from farmstand.orders.errors import (
    InvalidTransition,
    ReasonRequired,
    TransitionForbidden,
    TransitionGuardFailed,
)


class OrderStatus(StrEnum):
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    PREPARING = "PREPARING"
    READY_FOR_PICKUP = "READY_FOR_PICKUP"
    OUT_FOR_DELIVERY = "OUT_FOR_DELIVERY"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    REFUNDED = "REFUNDED"


class FulfillmentType(StrEnum):
    PICKUP = "PICKUP"
    DELIVERY = "DELIVERY"
    SHIPPING = "SHIPPING"


INITIAL_STATUS = OrderStatus.PENDING

# The column stamped when an order enters each status.
TIMESTAMP_FIELDS: dict[OrderStatus, str] = {
    OrderStatus.CONFIRMED: "confirmed_at",
    OrderStatus.PREPARING: "preparing_at",
    OrderStatus.READY_FOR_PICKUP: "ready_at",
    OrderStatus.OUT_FOR_DELIVERY: "out_for_delivery_at",
    OrderStatus.COMPLETED: "completed_at",
    OrderStatus.CANCELLED: "cancelled_at",
    OrderStatus.REFUNDED: "refunded_at",
}

# Statuses in which the farm still works on the order (items, estimates, pickup details).
OPEN_STATUSES = frozenset(
    {
        OrderStatus.PENDING,
        OrderStatus.CONFIRMED,
        OrderStatus.PREPARING,
        OrderStatus.READY_FOR_PICKUP,
        OrderStatus.OUT_FOR_DELIVERY,
    }
)


@dataclass(frozen=True)
class Actor:
    user_id: str
    role: Role


@dataclass(frozen=True)
class OrderSnapshot:
    """What the rules need to know about an order, read under its lock."""

    status: OrderStatus
    fulfillment_type: FulfillmentType
    customer_id: str
    farm_owner_id: str
    created_at: datetime
    all_items_prepared: bool
    has_tracking_number: bool


@dataclass(frozen=True)
class Policy:
    cancellation_window: timedelta = timedelta(hours=24)


@dataclass(frozen=True)
class StatusChange:
    from_status: OrderStatus
    to_status: OrderStatus
    timestamp_field: str
    at: datetime
    reason: str | None


@dataclass(frozen=True)
class Context:
    now: datetime
    reason: str | None
    policy: Policy


Guard = Callable[[OrderSnapshot, Actor, Context], None]


@dataclass(frozen=True)
class Guarded:
    """A guard plus the sentence that documents it."""

    check: Guard
    description: str


def _all_items_prepared(order: OrderSnapshot, _actor: Actor, _ctx: Context) -> None:
    if not order.all_items_prepared:
        raise TransitionGuardFailed("Mark every item as prepared first.")


def _tracking_number_for_shipping(order: OrderSnapshot, _actor: Actor, _ctx: Context) -> None:
    if order.fulfillment_type is FulfillmentType.SHIPPING and not order.has_tracking_number:
        raise TransitionGuardFailed("Add the tracking number before the order ships.")


def _within_cancellation_window(order: OrderSnapshot, actor: Actor, ctx: Context) -> None:
    if actor.role is Role.CUSTOMER and ctx.now - order.created_at > ctx.policy.cancellation_window:
        hours = ctx.policy.cancellation_window.total_seconds() / 3600
        unit = "hour" if hours == 1 else "hours"
        raise TransitionGuardFailed(
            f"Orders can be cancelled only within {hours:g} {unit} of being placed; "
            "contact the farm."
        )


def _reason_from_staff(_order: OrderSnapshot, actor: Actor, ctx: Context) -> None:
    if actor.role in (Role.FARMER, Role.ADMIN) and not (ctx.reason and ctx.reason.strip()):
        raise ReasonRequired("Give a reason: the customer will see it.")


ITEMS_PREPARED = Guarded(_all_items_prepared, "every item is prepared")
TRACKING_NUMBER = Guarded(_tracking_number_for_shipping, "a SHIPPING order has a tracking number")
CANCELLATION_WINDOW = Guarded(
    _within_cancellation_window, "a customer only within the cancellation window"
)
STAFF_REASON = Guarded(_reason_from_staff, "a farmer or admin gives a reason")


ALL_FULFILMENT = frozenset(FulfillmentType)
STAFF = frozenset({Role.FARMER, Role.ADMIN})
EVERYONE = frozenset(Role)


@dataclass(frozen=True)
class Rule:
    source: OrderStatus
    target: OrderStatus
    roles: frozenset[Role]
    fulfillment: frozenset[FulfillmentType] = ALL_FULFILMENT
    guards: tuple[Guarded, ...] = field(default=())


S = OrderStatus
F = FulfillmentType

# The complete table. Every rule also requires the actor's relation to the order: a farmer
# owns the order's farm, a customer placed the order (an admin acts on any order).
TRANSITIONS: tuple[Rule, ...] = (
    Rule(S.PENDING, S.CONFIRMED, STAFF),
    Rule(S.PENDING, S.CANCELLED, EVERYONE, guards=(CANCELLATION_WINDOW, STAFF_REASON)),
    Rule(S.CONFIRMED, S.PREPARING, STAFF),
    Rule(S.CONFIRMED, S.CANCELLED, STAFF, guards=(STAFF_REASON,)),
    Rule(S.PREPARING, S.READY_FOR_PICKUP, STAFF, frozenset({F.PICKUP}), (ITEMS_PREPARED,)),
    Rule(
        S.PREPARING,
        S.OUT_FOR_DELIVERY,
        STAFF,
        frozenset({F.DELIVERY, F.SHIPPING}),
        (ITEMS_PREPARED, TRACKING_NUMBER),
    ),
    Rule(S.PREPARING, S.CANCELLED, STAFF, guards=(STAFF_REASON,)),
    Rule(S.READY_FOR_PICKUP, S.COMPLETED, EVERYONE, frozenset({F.PICKUP})),
    Rule(S.READY_FOR_PICKUP, S.CANCELLED, STAFF, frozenset({F.PICKUP}), (STAFF_REASON,)),
    Rule(S.OUT_FOR_DELIVERY, S.COMPLETED, EVERYONE, frozenset({F.DELIVERY, F.SHIPPING})),
    Rule(S.CANCELLED, S.REFUNDED, STAFF, guards=(STAFF_REASON,)),
    Rule(S.COMPLETED, S.REFUNDED, STAFF, guards=(STAFF_REASON,)),
)

# Fulfilment is over: nothing moves the order on but a refund (and nothing after a refund).
FINAL_STATUSES = frozenset({OrderStatus.COMPLETED, OrderStatus.REFUNDED})

_RULES: dict[tuple[OrderStatus, OrderStatus], Rule] = {
    (rule.source, rule.target): rule for rule in TRANSITIONS
}


def find_rule(
    source: OrderStatus, target: OrderStatus, fulfillment: FulfillmentType
) -> Rule | None:
    rule = _RULES.get((source, target))
    return rule if rule is not None and fulfillment in rule.fulfillment else None


def is_related(order: OrderSnapshot, actor: Actor) -> bool:
    """Whether the actor may act on this order at all: its farm's owner, its customer, an admin."""
    if actor.role is Role.ADMIN:
        return True
    if actor.role is Role.FARMER:
        return order.farm_owner_id == actor.user_id
    return order.customer_id == actor.user_id


def transition(
    order: OrderSnapshot,
    target: OrderStatus,
    actor: Actor,
    now: datetime,
    *,
    reason: str | None = None,
    policy: Policy = Policy(),
) -> StatusChange:
    """Decide a status change, or raise the typed error that explains the refusal."""
    rule = find_rule(order.status, target, order.fulfillment_type)
    if rule is None:
        raise InvalidTransition(
            f"A {order.fulfillment_type.lower()} order cannot go from {order.status} to {target}.",
            details={
                "currentStatus": order.status,
                "requestedStatus": target,
                "allowedStatuses": [
                    r.target
                    for r in TRANSITIONS
                    if r.source is order.status and order.fulfillment_type in r.fulfillment
                ],
            },
        )
    if not is_related(order, actor):
        raise TransitionForbidden("You can only change orders of your own farm or your own orders.")
    if actor.role not in rule.roles:
        raise TransitionForbidden(
            f"A {actor.role.lower()} cannot move an order from {order.status} to {target}."
        )
    clean_reason = reason.strip() if reason and reason.strip() else None
    ctx = Context(now=now, reason=clean_reason, policy=policy)
    for guard in rule.guards:
        guard.check(order, actor, ctx)
    return StatusChange(
        from_status=order.status,
        to_status=target,
        timestamp_field=TIMESTAMP_FIELDS[target],
        at=now,
        reason=clean_reason,
    )


def next_actions(
    order: OrderSnapshot, actor: Actor, now: datetime, *, policy: Policy = Policy()
) -> list[OrderStatus]:
    """Targets this actor could move the order to now, ignoring the reason requirement."""
    allowed = []
    for rule in TRANSITIONS:
        if rule.source is not order.status or order.fulfillment_type not in rule.fulfillment:
            continue
        try:
            transition(order, rule.target, actor, now, reason="(preview)", policy=policy)
        except (InvalidTransition, TransitionForbidden, TransitionGuardFailed, ReasonRequired):
            continue
        allowed.append(rule.target)
    return allowed


def path_to(target: OrderStatus, fulfillment: FulfillmentType) -> list[Rule]:
    """The shortest chain of rules from a new order to ``target`` (empty for PENDING)."""
    paths: dict[OrderStatus, list[Rule]] = {INITIAL_STATUS: []}
    frontier = [INITIAL_STATUS]
    while frontier:
        status = frontier.pop(0)
        for rule in TRANSITIONS:
            reachable = rule.source is status and fulfillment in rule.fulfillment
            if reachable and rule.target not in paths:
                paths[rule.target] = [*paths[status], rule]
                frontier.append(rule.target)
    if target not in paths:
        raise ValueError(f"{target} is unreachable for a {fulfillment} order")
    return paths[target]


def replay(
    history: list[tuple[OrderStatus | None, OrderStatus]],
    fulfillment: FulfillmentType | None = None,
) -> OrderStatus:
    """Walk a history of (from, to) pairs, checking each step against the table (for the
    order's fulfilment type when given).

    Raises ``ValueError`` when the history is not a chain of allowed transitions; returns the
    status it ends in.
    """
    if not history or history[0] != (None, INITIAL_STATUS):
        raise ValueError("history must start with the order being placed (None -> PENDING)")
    current = INITIAL_STATUS
    for source, target in history[1:]:
        rule = _RULES.get((OrderStatus(source), OrderStatus(target))) if source else None
        allowed = rule is not None and (fulfillment is None or fulfillment in rule.fulfillment)
        if source != current or not allowed:
            raise ValueError(f"history step {source} -> {target} does not follow {current}")
        current = OrderStatus(target)
    return current


def render_markdown() -> str:
    """The state-machine document, generated from the table (``farmstand docs``)."""
    lines = [
        "# Order state machine",
        "",
        "<!-- Generated from src/farmstand/orders/states.py by `farmstand docs`; do not edit. -->",
        "",
        "Every status change goes through `states.transition`, which checks the table below "
        "against the order as it is under its lock. Besides the listed guards, every "
        "transition requires the actor's relation to the order: a farmer acts only on orders "
        "of a farm they own, a customer only on their own orders; an admin acts on any order.",
        "",
        "A new order starts as `PENDING` (it is paid). `COMPLETED` and `REFUNDED` are final: "
        "a completed order can only be refunded, and nothing follows a refund. A cancelled "
        "order can still be refunded.",
        "",
        "```mermaid",
        "stateDiagram-v2",
        f"    [*] --> {INITIAL_STATUS}",
    ]
    for rule in TRANSITIONS:
        label = ", ".join(sorted(role.lower() for role in rule.roles))
        if rule.fulfillment != ALL_FULFILMENT:
            label += " (" + "/".join(sorted(f.lower() for f in rule.fulfillment)) + ")"
        lines.append(f"    {rule.source} --> {rule.target}: {label}")
    lines.extend(f"    {status} --> [*]" for status in sorted(FINAL_STATUSES))
    lines += [
        "```",
        "",
        "| From | To | Fulfilment | Roles | Guards | Sets |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for rule in TRANSITIONS:
        fulfilment = (
            "all"
            if rule.fulfillment == ALL_FULFILMENT
            else ", ".join(sorted(f.value for f in rule.fulfillment))
        )
        roles = ", ".join(role.value for role in Role if role in rule.roles)
        guards = "; ".join(g.description for g in rule.guards) or "—"
        lines.append(
            f"| {rule.source} | {rule.target} | {fulfilment} | {roles} | {guards} | "
            f"`{TIMESTAMP_FIELDS[rule.target]}` |"
        )
    lines += [
        "",
        "## Refusals",
        "",
        "| Refusal | HTTP status |",
        "| --- | --- |",
        "| The target cannot follow the current status for this fulfilment type | 409 |",
        "| The actor's role is not allowed, or they are not related to the order | 403 |",
        "| A guard fails (items unprepared, no tracking number, window passed) | 409 |",
        "| A farmer or admin cancels or refunds without a reason | 422 |",
        "| Someone else changed the order first (lost race, stale `expectedVersion`) | 409 |",
        "",
    ]
    return "\n".join(lines)
