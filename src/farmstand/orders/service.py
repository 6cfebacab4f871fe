"""Order use cases: one public function per thing a user does with an order.

Each reads what its decision needs in one statement (``repository.load_order``), decides with
the pure rules (``states``), and writes the order, its history, its events and its
notifications together (``db.write_together``: one round trip on PostgreSQL).
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from farmstand.accounts.principal import Person
from farmstand.catalog import access as farm_access
from farmstand.catalog.errors import FarmNotFound
from farmstand.db import Write, new_id, utcnow, write_together
from farmstand.errors import FarmstandError, Unprocessable
from farmstand.events import service as events
from farmstand.notifications import outbox
from farmstand.notifications import preferences as prefs
from farmstand.notifications.models import NotificationType
from farmstand.notifications.recipients import RecipientFacts
from farmstand.observability.metrics import count_status_change
from farmstand.observability.tracing import span
from farmstand.orders import access, states
from farmstand.orders import events as order_events
from farmstand.orders import repository as repo
from farmstand.orders.errors import (
    ConcurrentUpdate,
    ItemQuantityLimitExceeded,
    OpenOrderLimitReached,
    OrderItemNotFound,
    OrderNotEditable,
    OrderNotFound,
    OutOfStock,
    ProductOffSale,
)
from farmstand.orders.records import ItemRecord, OrderRecord
from farmstand.orders.schemas import (
    ActorOut,
    BulkError,
    BulkResult,
    HistoryOut,
    OrderIn,
    OrderItemOut,
    OrderOut,
    OrderPatch,
    PartyOut,
    ProductRef,
)
from farmstand.orders.states import Actor, FulfillmentType, OrderStatus, Policy
from farmstand.schemas import Page, decode_cursor, iso_z, split_page

# No 0/O, 1/I/L: order numbers are read aloud at the market stall.
ORDER_NUMBER_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
ORDER_NUMBER_LENGTH = 6
# What a NUMERIC(10, 2) total can hold.
MAX_TOTAL = Decimal("99999999.99")
# Cancelled before anything was prepared: the goods go back on the shelf.
RESTOCK_FROM = frozenset({OrderStatus.PENDING, OrderStatus.CONFIRMED})


def new_order_number() -> str:
    body = "".join(secrets.choice(ORDER_NUMBER_ALPHABET) for _ in range(ORDER_NUMBER_LENGTH))
    return f"FS-{body}"


def actor_of(user: Person) -> Actor:
    return Actor(user_id=user.id, role=user.role)


def to_out(
    order: OrderRecord, user: Person, policy: Policy, now: datetime | None = None
) -> OrderOut:
    allowed = states.next_actions(order.snapshot(), actor_of(user), now or utcnow(), policy=policy)
    return OrderOut(
        **{name: getattr(order, name) for name in _OUT_FIELDS},
        customer=PartyOut(id=order.customer_id, name=order.customer_name),
        farm=PartyOut(id=order.farm_id, name=order.farm_name),
        items=[_item_out(item) for item in order.items],
        allowed_statuses=allowed,
    )


_OUT_FIELDS = tuple(
    name
    for name in OrderOut.model_fields
    if name not in ("customer", "farm", "items", "allowed_statuses")
)


def _item_out(item: ItemRecord) -> OrderItemOut:
    return OrderItemOut(
        id=item.id,
        product_id=item.product_id,
        product_name=item.product_name,
        unit=item.unit,
        quantity=item.quantity,
        unit_price=item.unit_price,
        line_total=item.line_total,
        prepared=item.prepared,
        prepared_at=item.prepared_at,
        product=ProductRef(id=item.product_id, name=item.current_name, unit=item.current_unit),
    )


async def get_visible_order(
    session: AsyncSession, user: Person, order_id: str, *, lock: bool = False
) -> OrderRecord:
    """The order if ``user`` may see it; otherwise 404, so its existence is not revealed."""
    loaded = await repo.load_order(session, order_id, lock=lock)
    if loaded is None or not access.may_see(user, loaded[0]):
        raise OrderNotFound()
    return loaded[0]


async def get_managed_order(
    session: AsyncSession, user: Person, order_id: str, *, refusal: str
) -> OrderRecord:
    """The order if ``user`` manages it for the farm: 404 if they may not see it, 403 with
    ``refusal`` if they see it without managing it (its customer)."""
    order = await get_visible_order(session, user, order_id)
    access.ensure_manages(user, order, refusal)
    return order


async def _load_for_change(
    session: AsyncSession, user: Person, order_id: str, notify: NotificationType | None
) -> tuple[OrderRecord, RecipientFacts | None]:
    loaded = await repo.load_order(session, order_id, lock=True, notify=notify)
    if loaded is None or not access.may_see(user, loaded[0]):
        raise OrderNotFound()
    return loaded


def _ensure_farm_side(user: Person, order: OrderRecord) -> None:
    access.ensure_manages(user, order, "Only the farm can change this.")


def _check_version(order: OrderRecord, expected: int | None) -> None:
    if expected is not None and order.version != expected:
        raise ConcurrentUpdate(
            details={"expectedVersion": expected, "currentVersion": order.version}
        )


async def _write(
    session: AsyncSession,
    writes: list[Write],
    event_rows: list[dict[str, Any]],
    planned: Sequence[outbox.Planned] = (),
) -> None:
    """The change's writes, then its events and notifications, in one round trip; a counted
    write (the order's compare-and-set update) must have changed its row."""
    for plan in planned:
        if plan.rows:
            writes.append(outbox.notifications_write(plan.rows, prefix=f"n{len(writes)}_"))
        event_rows = event_rows + plan.events
    if event_rows:
        writes.append(events.events_write(event_rows))
    counts = await write_together(session, writes)
    if any(write.counted and count != 1 for write, count in zip(writes, counts, strict=True)):
        raise ConcurrentUpdate()  # someone else changed the order since it was read
    events.mark_written(session, event_rows)
    for plan in planned:
        outbox.mark_written(session, plan)


# -- placing an order -------------------------------------------------------------------------


async def place_order(
    session: AsyncSession, customer: Person, data: OrderIn, *, now: datetime | None = None
) -> OrderRecord:
    """A customer's paid order: prices from the products, stock taken atomically."""
    now = now or utcnow()
    quantities: dict[str, int] = {}
    for line in data.items:
        quantities[line.product_id] = quantities.get(line.product_id, 0) + line.quantity
    # Locks the products, in id order (no deadlock between two orders of the same products),
    # and the customer's row (their placements queue: see ``_check_limits``).
    farm, products = await repo.lock_products(
        session, data.farm_id, customer.id, sorted(quantities)
    )
    if farm is None:
        raise FarmNotFound()
    unknown = [product_id for product_id in quantities if product_id not in products]
    if unknown:
        raise Unprocessable(
            "Some products are not sold by this farm.",
            details=[
                {"field": "items", "productId": pid, "message": "Unknown product"}
                for pid in unknown
            ],
        )
    off_sale = [products[pid] for pid in sorted(quantities) if not products[pid].on_sale]
    if off_sale:
        names = ", ".join(product.name for product in off_sale)
        raise ProductOffSale(
            f"No longer on sale: {names}. Remove it from your order.",
            details=[
                {"field": "items", "productId": p.id, "name": p.name, "message": "not on sale"}
                for p in off_sale
            ],
        )
    _check_limits(farm, farm.open_orders, quantities)
    short = [pid for pid in sorted(quantities) if products[pid].stock < quantities[pid]]
    if short:
        raise OutOfStock(details=[{"productId": pid, "name": products[pid].name} for pid in short])
    items = tuple(
        ItemRecord(
            id=new_id(),
            product_id=product_id,
            position=position,
            product_name=products[product_id].name,
            unit=products[product_id].unit,
            quantity=quantity,
            unit_price=products[product_id].price,
            prepared=False,
            prepared_at=None,
            current_name=products[product_id].name,
            current_unit=products[product_id].unit,
        )
        for position, (product_id, quantity) in enumerate(quantities.items())
    )
    total = sum((item.line_total for item in items), Decimal("0"))
    if total > MAX_TOTAL:
        raise Unprocessable(
            f"An order cannot total more than {MAX_TOTAL:,.2f}; split it into smaller orders.",
            details=[{"field": "items", "message": "order total too large"}],
        )
    is_pickup = data.fulfillment_type is FulfillmentType.PICKUP
    order = OrderRecord(
        id=new_id(),
        order_number=new_order_number(),
        status=states.INITIAL_STATUS,
        fulfillment_type=data.fulfillment_type,
        customer_id=customer.id,
        farm_id=farm.id,
        total_amount=total,
        paid_at=now,
        confirmed_at=None,
        preparing_at=None,
        ready_at=None,
        out_for_delivery_at=None,
        completed_at=None,
        cancelled_at=None,
        refunded_at=None,
        estimated_ready_at=None,
        estimated_pickup_at=None,
        pickup_location=(data.pickup_location or farm.pickup_location) if is_pickup else None,
        pickup_instructions=farm.pickup_instructions if is_pickup else None,
        delivery_address=(
            data.delivery_address.model_dump(by_alias=True, exclude_none=True)
            if data.delivery_address
            else None
        ),
        delivery_notes=data.delivery_notes or None,
        tracking_number=None,
        carrier=None,
        version=1,
        created_at=now,
        updated_at=now,
        farm_owner_id=farm.owner.id,
        farm_name=farm.name,
        farm_timezone=farm.timezone,
        customer_name=customer.name,
        items=items,
    )
    # The order number is drawn at random: on the rare collision, draw again. The insert
    # counts the open orders again, after the customer's lock was granted: a placement by the
    # same customer that committed meanwhile counts.
    for _attempt in range(5):
        if await repo.insert_order(session, order, farm.max_open_orders):
            break
        _check_limits(farm, await repo.open_orders(session, customer.id, farm.id), {})
        order = order.changed(order_number=new_order_number())
    else:  # pragma: no cover - 31^6 numbers make five collisions in a row unthinkable
        raise ConcurrentUpdate("Could not allocate an order number; try again.")
    planned = outbox.plan(
        outbox.notifier_of(session), order, NotificationType.NEW_ORDER, farm.owner, "farm", now=now
    )
    writes = [
        repo.stock_take([(pid, quantities[pid]) for pid in sorted(quantities)]),
        repo.items_insert(order.id, items),
        repo.history_insert(
            {
                "id": new_id(),
                "seq": order.version,
                "order_id": order.id,
                "from_status": None,
                "to_status": order.status,
                "changed_by": customer.id,
                "reason": "Order placed",
                "metadata": {"paid": True, "totalAmount": str(total)},
                "created_at": now,
            }
        ),
    ]
    await _write(session, writes, [order_events.new_order(order, now)], [planned])
    return order


def _check_limits(farm: repo.FarmFacts, open_orders: int, quantities: dict[str, int]) -> None:
    """The farm's per-customer limits: open orders there, and units of a product per order."""
    if open_orders >= farm.max_open_orders:
        raise OpenOrderLimitReached(
            f"You already have {open_orders} open orders at this farm, its limit per customer "
            f"(maxOpenOrders {farm.max_open_orders}); place another once one is completed "
            "or cancelled.",
            details={"limit": "maxOpenOrders", "max": farm.max_open_orders, "open": open_orders},
        )
    over = [pid for pid, quantity in quantities.items() if quantity > farm.max_item_quantity]
    if over:
        raise ItemQuantityLimitExceeded(
            f"This farm sells at most {farm.max_item_quantity} of each product per order "
            f"(maxItemQuantity).",
            details=[
                {
                    "field": "items",
                    "productId": pid,
                    "limit": "maxItemQuantity",
                    "max": farm.max_item_quantity,
                    "quantity": quantities[pid],
                    "message": f"at most {farm.max_item_quantity} per order",
                }
                for pid in over
            ],
        )


# -- reading --------------------------------------------------------------------------------


async def list_orders(
    session: AsyncSession,
    user: Person,
    *,
    farm_id: str | None,
    statuses: Sequence[OrderStatus],
    cursor: str | None,
    limit: int,
    policy: Policy,
) -> Page[OrderOut]:
    page, next_cursor = await list_order_records(
        session, user, farm_id=farm_id, statuses=statuses, cursor=cursor, limit=limit
    )
    now = utcnow()
    return Page[OrderOut](
        items=[to_out(order, user, policy, now) for order in page], next_cursor=next_cursor
    )


async def list_order_records(
    session: AsyncSession,
    user: Person,
    *,
    farm_id: str | None = None,
    statuses: Sequence[OrderStatus] = (),
    cursor: str | None = None,
    limit: int,
) -> tuple[Sequence[OrderRecord], str | None]:
    """The orders ``user`` may see, newest first: a page of them and the cursor of the next
    (for the API's list and the pages alike)."""
    if farm_id is not None:
        owner = await farm_access.farm_owner(session, farm_id)
        if owner is None or not access.may_filter_by_farm(user, owner):
            raise FarmNotFound()
    before = decode_cursor(cursor) if cursor else None
    rows = await repo.list_orders(
        session,
        access.visible_orders_condition(user),
        farm_id=farm_id,
        statuses=statuses,
        before=before,
        limit=limit + 1,
    )
    return split_page(rows, limit)


async def order_history(session: AsyncSession, user: Person, order_id: str) -> list[HistoryOut]:
    """The order's status history, oldest first (one statement, visibility checked)."""
    rows = await repo.history_with_owners(session, order_id)
    if not rows:
        raise OrderNotFound()
    first = rows[0]
    if not access.may_see_order(user, customer_id=first.customer_id, farm_owner_id=first.owner_id):
        raise OrderNotFound()
    return [
        HistoryOut(
            id=row.id,
            order_id=row.order_id,
            from_status=row.from_status,
            to_status=row.to_status,
            changed_by=row.changed_by,
            actor=ActorOut(id=row.changed_by, name=row.actor_name, role=row.actor_role)
            if row.actor_name is not None
            else None,
            reason=row.reason,
            metadata=row.metadata or {},
            created_at=row.created_at,
        )
        for row in rows
        if row.id is not None
    ]


# -- changing the status ------------------------------------------------------------------------


async def change_status(
    session: AsyncSession,
    user: Person,
    order_id: str,
    target: OrderStatus,
    *,
    policy: Policy,
    reason: str | None = None,
    expected_version: int | None = None,
    meta: dict[str, Any] | None = None,
    notify_customer: bool = True,
    now: datetime | None = None,
) -> OrderRecord:
    """Validate against the locked order, then write status, timestamp, history, the event and
    the customer's notifications together: two statements in all."""
    kind = prefs.STATUS_NOTIFICATIONS.get(target) if notify_customer else None
    with span("order.status_change", order_id=order_id, target=str(target)):
        with span("order.lock"):
            order, recipient = await _load_for_change(session, user, order_id, kind)
        now = now or utcnow()  # once the lock is ours: times follow the order of the changes
        with span("order.decide"):
            change = decide_change(
                order,
                user,
                target,
                now,
                reason=reason,
                policy=policy,
                expected_version=expected_version,
            )
            values = {
                "status": change.to_status,
                change.timestamp_field: change.at,
                "updated_at": now,
            }
            changed = order.changed(**values, version=order.version + 1)
            writes = [
                repo.order_update(order.id, order.version, values),
                repo.history_insert(
                    {
                        "id": new_id(),
                        "seq": changed.version,
                        "order_id": order.id,
                        "from_status": change.from_status,
                        "to_status": change.to_status,
                        "changed_by": user.id,
                        "reason": change.reason,
                        "metadata": {**(meta or {}), "notifyCustomer": notify_customer},
                        "created_at": now,
                    }
                ),
            ]
            if change.to_status is OrderStatus.CANCELLED and change.from_status in RESTOCK_FROM:
                restock = [(item.product_id, item.quantity) for item in order.items]
                writes.append(repo.stock_return(restock))
            planned = []
            if kind is not None and recipient is not None:
                planned.append(
                    outbox.plan(
                        outbox.notifier_of(session),
                        changed,
                        kind,
                        recipient,
                        "customer",
                        now=now,
                        extra={"reason": change.reason},
                    )
                )
            event = order_events.status_change(changed, change, user, now)
        with span("order.write"):
            await _write(session, writes, [event], planned)
    count_status_change(session.info, change.from_status, change.to_status)
    return changed


def decide_change(
    order: OrderRecord,
    user: Person,
    target: OrderStatus,
    now: datetime,
    *,
    reason: str | None,
    policy: Policy,
    expected_version: int | None = None,
) -> states.StatusChange:
    """The decision on one status change, or the typed refusal: the version the caller saw,
    then the state machine. Pure: ``change_status`` applies it under the order's lock, the
    bulk preview shows it without writing."""
    _check_version(order, expected_version)
    return states.transition(
        order.snapshot(), target, actor_of(user), now, reason=reason, policy=policy
    )


@dataclasses.dataclass(frozen=True)
class BulkOutcome:
    """One order of a bulk change: its record (None if there is no such order) and, if it
    is refused, why."""

    order_id: str
    order: OrderRecord | None
    error: FarmstandError | None


async def preview_bulk_change(
    session: AsyncSession,
    admin: Person,
    order_ids: Sequence[str],
    target: OrderStatus,
    *,
    policy: Policy,
    reason: str | None,
    now: datetime | None = None,
) -> list[BulkOutcome]:
    """What ``bulk_change`` would do to each order now, writing nothing: one statement, the
    same decision (``decide_change``). Ordered as ``bulk_change`` goes (by id)."""
    now = now or utcnow()
    ids = sorted(set(order_ids))
    found = {
        order.id: order
        for order in await repo.load_orders(session, ids)
        if access.may_see(admin, order)
    }
    outcomes = []
    for order_id in ids:
        order = found.get(order_id)
        error: FarmstandError | None = OrderNotFound() if order is None else None
        if order is not None:
            try:
                decide_change(order, admin, target, now, reason=reason, policy=policy)
            except FarmstandError as exc:
                error = exc
        outcomes.append(BulkOutcome(order_id, order, error))
    return outcomes


async def bulk_change(
    session: AsyncSession,
    admin: Person,
    order_ids: Sequence[str],
    target: OrderStatus,
    *,
    policy: Policy,
    reason: str | None,
    expected_versions: Mapping[str, int] | None = None,
    notify_customer: bool = True,
    now: datetime | None = None,
) -> list[BulkOutcome]:
    """Each order through ``change_status``, in its own savepoint: one failure stays local.
    With ``expected_versions`` (from a preview), an order changed since is refused
    (``ConcurrentUpdate``)."""
    now = now or utcnow()
    versions = expected_versions or {}
    outcomes = []
    # Sorted, so two bulk updates over overlapping orders lock in the same order.
    for order_id in sorted(set(order_ids)):
        try:
            async with session.begin_nested():
                changed = await change_status(
                    session,
                    admin,
                    order_id,
                    target,
                    policy=policy,
                    reason=reason,
                    expected_version=versions.get(order_id),
                    meta={"bulk": True},
                    notify_customer=notify_customer,
                    now=now,
                )
        except FarmstandError as exc:
            outcomes.append(BulkOutcome(order_id, None, exc))
        else:
            outcomes.append(BulkOutcome(order_id, changed, None))
    # The refused orders as they are now (one statement), for the caller to show.
    refused = [outcome.order_id for outcome in outcomes if outcome.error is not None]
    if refused:
        now_seen = {order.id: order for order in await repo.load_orders(session, refused)}
        outcomes = [
            dataclasses.replace(outcome, order=now_seen.get(outcome.order_id))
            if outcome.error is not None
            else outcome
            for outcome in outcomes
        ]
    return outcomes


async def bulk_change_status(
    session: AsyncSession,
    admin: Person,
    order_ids: Sequence[str],
    target: OrderStatus,
    *,
    policy: Policy,
    reason: str | None,
    notify_customer: bool = True,
    now: datetime | None = None,
) -> BulkResult:
    """``bulk_change`` counted for the API: successes, failures and why each failed."""
    outcomes = await bulk_change(
        session,
        admin,
        order_ids,
        target,
        policy=policy,
        reason=reason,
        notify_customer=notify_customer,
        now=now,
    )
    errors = [
        BulkError(order_id=outcome.order_id, error=outcome.error.message)
        for outcome in outcomes
        if outcome.error is not None
    ]
    return BulkResult(succeeded=len(outcomes) - len(errors), failed=len(errors), errors=errors)


# -- items and details ------------------------------------------------------------------------

PREPARABLE = frozenset({OrderStatus.CONFIRMED, OrderStatus.PREPARING})


async def set_item_prepared(
    session: AsyncSession,
    user: Person,
    order_id: str,
    item_id: str,
    prepared: bool,
    *,
    now: datetime | None = None,
) -> OrderRecord:
    now = now or utcnow()
    # Locks the order: a READY check running concurrently must see this item's final state.
    order, _ = await _load_for_change(session, user, order_id, None)
    _ensure_farm_side(user, order)
    item = next((item for item in order.items if item.id == item_id), None)
    if item is None:
        raise OrderItemNotFound()
    if order.status not in PREPARABLE:
        raise OrderNotEditable(
            f"Items can be marked only while the order is CONFIRMED or PREPARING, "
            f"not {order.status}."
        )
    if item.prepared == prepared:
        return order
    prepared_at = now if prepared else None
    changed = order.changed(
        items=tuple(
            dataclasses.replace(i, prepared=prepared, prepared_at=prepared_at)
            if i.id == item_id
            else i
            for i in order.items
        ),
        updated_at=now,
        version=order.version + 1,
    )
    event = order_events.order_update(
        changed,
        {"items": [{"id": item_id, "prepared": prepared, "preparedAt": iso_z(prepared_at)}]},
        user,
        now,
    )
    writes = [
        repo.order_update(order.id, order.version, {"updated_at": now}),
        repo.item_prepared(order.id, item_id, prepared, prepared_at),
    ]
    await _write(session, writes, [event])
    return changed


SHIPPING_ONLY = frozenset({"tracking_number", "carrier"})
PICKUP_ONLY = frozenset({"pickup_location", "pickup_instructions"})


async def update_details(
    session: AsyncSession,
    user: Person,
    order_id: str,
    patch: OrderPatch,
    *,
    now: datetime | None = None,
) -> OrderRecord:
    now = now or utcnow()
    changes = patch.model_dump(exclude_unset=True, exclude={"expected_version"})
    if not changes:
        raise Unprocessable("Give at least one field to change.")
    # A later estimate tells the customer of the delay: read their preferences with the order.
    delay = "estimated_ready_at" in changes and changes["estimated_ready_at"] is not None
    order, recipient = await _load_for_change(
        session, user, order_id, NotificationType.ORDER_DELAYED if delay else None
    )
    _ensure_farm_side(user, order)
    _check_version(order, patch.expected_version)
    if order.status not in states.OPEN_STATUSES:
        raise OrderNotEditable(f"A {order.status} order can no longer be changed.")
    errors = []
    for key in changes:
        if key in SHIPPING_ONLY and order.fulfillment_type is not FulfillmentType.SHIPPING:
            errors.append({"field": _camel(key), "message": "Only SHIPPING orders are tracked"})
        if key in PICKUP_ONLY and order.fulfillment_type is not FulfillmentType.PICKUP:
            errors.append({"field": _camel(key), "message": "Only PICKUP orders have pickup"})
    ready = changes.get("estimated_ready_at", order.estimated_ready_at)
    pickup = changes.get("estimated_pickup_at", order.estimated_pickup_at)
    if ready is not None and pickup is not None and pickup < ready:
        errors.append(
            {"field": "estimatedPickupAt", "message": "must not be before estimatedReadyAt"}
        )
    if (
        "tracking_number" in changes
        and changes["tracking_number"] is None
        and order.status is OrderStatus.OUT_FOR_DELIVERY
    ):
        errors.append({"field": "trackingNumber", "message": "a shipped order keeps its number"})
    if errors:
        raise Unprocessable("Some fields cannot be changed on this order.", details=errors)
    changed = order.changed(**changes, updated_at=now, version=order.version + 1)
    planned = []
    previous = order.estimated_ready_at
    moved_later = (
        previous is not None
        and changed.estimated_ready_at is not None
        and changed.estimated_ready_at > previous
    )
    if recipient is not None and previous is not None and moved_later:
        tz = recipient.timezone or order.farm_timezone
        planned.append(
            outbox.plan(
                outbox.notifier_of(session),
                changed,
                NotificationType.ORDER_DELAYED,
                recipient,
                "customer",
                now=now,
                extra={"previous_estimate": prefs.format_local(previous, tz)},
                meta={"estimate": iso_z(changed.estimated_ready_at), "moved": True},
            )
        )
    writes = [repo.order_update(order.id, order.version, {**changes, "updated_at": now})]
    event = order_events.order_update(changed, changes, user, now)
    await _write(session, writes, [event], planned)
    return changed


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
