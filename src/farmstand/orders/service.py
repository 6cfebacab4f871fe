"""Order use cases: one public function per thing a user does with an order."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from farmstand.accounts.models import User
from farmstand.accounts.roles import Role
from farmstand.catalog import service as catalog
from farmstand.db import utcnow
from farmstand.errors import FarmstandError, Forbidden, Unprocessable
from farmstand.notifications import service as notifications
from farmstand.orders import events as order_events
from farmstand.orders import repository as repo
from farmstand.orders import states
from farmstand.orders.errors import (
    ConcurrentUpdate,
    OrderItemNotFound,
    OrderNotEditable,
    OrderNotFound,
    OutOfStock,
)
from farmstand.orders.models import Order, OrderItem, OrderStatusHistory
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


def actor_of(user: User) -> Actor:
    return Actor(user_id=user.id, role=user.role)


def can_see(order: Order, user: User) -> bool:
    """Whether ``user`` may see ``order`` (its customer, its farm's owner, an admin)."""
    return states.is_related(snapshot(order, items=False), actor_of(user))


def snapshot(order: Order, *, items: bool = True) -> states.OrderSnapshot:
    return states.OrderSnapshot(
        status=order.status,
        fulfillment_type=order.fulfillment_type,
        customer_id=order.customer_id,
        farm_owner_id=order.farm.owner_id,
        created_at=order.created_at,
        all_items_prepared=items and all(item.prepared for item in order.items),
        has_tracking_number=bool(order.tracking_number),
    )


def to_out(order: Order, user: User, policy: Policy, now: datetime | None = None) -> OrderOut:
    allowed = states.next_actions(snapshot(order), actor_of(user), now or utcnow(), policy=policy)
    return OrderOut.model_validate(
        {
            **{key: getattr(order, key) for key in OrderOut.model_fields if hasattr(order, key)},
            "customer": PartyOut(id=order.customer.id, name=order.customer.name),
            "farm": PartyOut(id=order.farm.id, name=order.farm.name),
            "items": [
                OrderItemOut(
                    id=item.id,
                    product_id=item.product_id,
                    product_name=item.product_name,
                    unit=item.unit,
                    quantity=item.quantity,
                    unit_price=item.unit_price,
                    line_total=item.unit_price * item.quantity,
                    prepared=item.prepared,
                    prepared_at=item.prepared_at,
                    product=ProductRef.model_validate(item.product),
                )
                for item in order.items
            ],
            "allowed_statuses": allowed,
        }
    )


def history_out(row: OrderStatusHistory) -> HistoryOut:
    return HistoryOut(
        id=row.id,
        order_id=row.order_id,
        from_status=row.from_status,
        to_status=row.to_status,
        changed_by=row.changed_by,
        actor=ActorOut.model_validate(row.actor) if row.actor else None,
        reason=row.reason,
        metadata=row.meta or {},
        created_at=row.created_at,
    )


async def get_visible_order(
    session: AsyncSession, user: User, order_id: str, *, lock: bool = False
) -> Order:
    """The order if ``user`` may see it; otherwise 404, so its existence is not revealed."""
    order = await repo.get_order(session, order_id, lock=lock)
    if order is None or not can_see(order, user):
        raise OrderNotFound()
    return order


def _ensure_farm_side(order: Order, user: User) -> None:
    if user.role is Role.CUSTOMER:
        raise Forbidden("Only the farm can change this.")


async def _flush_version_checked(session: AsyncSession) -> None:
    try:
        await session.flush()
    except (StaleDataError, IntegrityError):
        raise ConcurrentUpdate() from None


def _check_version(order: Order, expected: int | None) -> None:
    if expected is not None and order.version != expected:
        raise ConcurrentUpdate(
            details={"expectedVersion": expected, "currentVersion": order.version}
        )


async def place_order(
    session: AsyncSession, customer: User, data: OrderIn, *, now: datetime | None = None
) -> Order:
    """A customer's paid order: prices from the products, stock taken atomically."""
    now = now or utcnow()
    farm = await catalog.get_farm(session, data.farm_id)
    quantities: dict[str, int] = {}
    for line in data.items:
        quantities[line.product_id] = quantities.get(line.product_id, 0) + line.quantity
    products = await repo.products_of_farm(session, farm.id, list(quantities))
    unknown = [product_id for product_id in quantities if product_id not in products]
    if unknown:
        raise Unprocessable(
            "Some products are not sold by this farm.",
            details=[
                {"field": "items", "productId": pid, "message": "Unknown product"}
                for pid in unknown
            ],
        )
    # A savepoint: when one product is short, what was already taken goes back.
    async with session.begin_nested():
        short = [
            product_id
            # A fixed order, so two concurrent orders of the same products cannot deadlock.
            for product_id in sorted(quantities)
            if not await repo.take_stock(session, product_id, quantities[product_id])
        ]
        if short:
            raise OutOfStock(
                details=[{"productId": pid, "name": products[pid].name} for pid in short]
            )
    items = [
        OrderItem(
            product_id=product_id,
            position=position,
            product_name=products[product_id].name,
            unit=products[product_id].unit,
            quantity=quantity,
            unit_price=products[product_id].price,
        )
        for position, (product_id, quantity) in enumerate(quantities.items())
    ]
    total = sum((item.unit_price * item.quantity for item in items), Decimal("0"))
    if total > MAX_TOTAL:
        raise Unprocessable(
            f"An order cannot total more than {MAX_TOTAL:,.2f}; split it into smaller orders.",
            details=[{"field": "items", "message": "order total too large"}],
        )
    is_pickup = data.fulfillment_type is FulfillmentType.PICKUP
    for _attempt in range(5):
        order = Order(
            order_number=new_order_number(),
            status=states.INITIAL_STATUS,
            fulfillment_type=data.fulfillment_type,
            customer_id=customer.id,
            farm_id=farm.id,
            total_amount=total,
            paid_at=now,
            pickup_location=(data.pickup_location or farm.pickup_location) if is_pickup else None,
            pickup_instructions=farm.pickup_instructions if is_pickup else None,
            delivery_address=(
                data.delivery_address.model_dump(by_alias=True, exclude_none=True)
                if data.delivery_address
                else None
            ),
            delivery_notes=data.delivery_notes or None,
            created_at=now,
            updated_at=now,
            items=items,
        )
        try:
            async with session.begin_nested():
                session.add(order)
        except IntegrityError:  # an order number drawn twice: draw again
            continue
        break
    else:  # pragma: no cover - 31^6 numbers make five collisions in a row unthinkable
        raise ConcurrentUpdate("Could not allocate an order number; try again.")
    session.add(
        OrderStatusHistory(
            order_id=order.id,
            seq=order.version,
            from_status=None,
            to_status=order.status,
            changed_by=customer.id,
            reason="Order placed",
            meta={"paid": True, "totalAmount": str(total)},
            created_at=now,
        )
    )
    await session.flush()
    order = await _reload(session, order.id)
    order_events.new_order(session, order, now)
    await notifications.on_new_order(session, order, now)
    return order


async def _reload(session: AsyncSession, order_id: str) -> Order:
    order = await repo.get_order(session, order_id, lock=True)
    assert order is not None
    return order


async def list_orders(
    session: AsyncSession,
    user: User,
    *,
    farm_id: str | None,
    statuses: Sequence[OrderStatus],
    cursor: str | None,
    limit: int,
    policy: Policy,
) -> Page[OrderOut]:
    if farm_id is not None:
        farm = await catalog.get_farm(session, farm_id)
        if user.role is Role.FARMER and farm.owner_id != user.id:
            raise catalog.FarmNotFound()
    before = decode_cursor(cursor) if cursor else None
    rows = await repo.list_orders(
        session, user, farm_id=farm_id, statuses=statuses, before=before, limit=limit + 1
    )
    page, next_cursor = split_page(rows, limit)
    now = utcnow()
    return Page[OrderOut](
        items=[to_out(order, user, policy, now) for order in page], next_cursor=next_cursor
    )


async def change_status(
    session: AsyncSession,
    user: User,
    order_id: str,
    target: OrderStatus,
    *,
    policy: Policy,
    reason: str | None = None,
    expected_version: int | None = None,
    meta: dict[str, Any] | None = None,
    notify_customer: bool = True,
    now: datetime | None = None,
) -> Order:
    """Validate against the locked order, then write status, timestamp, history, the event and
    the customer's notifications together."""
    now = now or utcnow()
    order = await get_visible_order(session, user, order_id, lock=True)
    _check_version(order, expected_version)
    change = states.transition(
        snapshot(order), target, actor_of(user), now, reason=reason, policy=policy
    )
    if change.to_status is OrderStatus.CANCELLED and change.from_status in RESTOCK_FROM:
        await repo.return_stock(session, order.items)
    order.status = change.to_status
    setattr(order, change.timestamp_field, change.at)
    order.updated_at = now
    session.add(
        OrderStatusHistory(
            order_id=order.id,
            seq=order.version + 1,
            from_status=change.from_status,
            to_status=change.to_status,
            changed_by=user.id,
            reason=change.reason,
            meta={**(meta or {}), "notifyCustomer": notify_customer},
            created_at=now,
        )
    )
    await _flush_version_checked(session)
    order_events.status_change(session, order, change, user, now)
    await notifications.on_status_change(
        session, order, change.to_status, change.reason, notify_customer=notify_customer, now=now
    )
    return order


async def order_history(
    session: AsyncSession, user: User, order_id: str
) -> list[OrderStatusHistory]:
    order = await get_visible_order(session, user, order_id)
    return await repo.history(session, order.id)


PREPARABLE = frozenset({OrderStatus.CONFIRMED, OrderStatus.PREPARING})


async def set_item_prepared(
    session: AsyncSession,
    user: User,
    order_id: str,
    item_id: str,
    prepared: bool,
    *,
    now: datetime | None = None,
) -> Order:
    now = now or utcnow()
    # Locks the order: a READY check running concurrently must see this item's final state.
    order = await get_visible_order(session, user, order_id, lock=True)
    _ensure_farm_side(order, user)
    item = next((item for item in order.items if item.id == item_id), None)
    if item is None:
        raise OrderItemNotFound()
    if order.status not in PREPARABLE:
        raise OrderNotEditable(
            f"Items can be marked only while the order is CONFIRMED or PREPARING, "
            f"not {order.status}."
        )
    if item.prepared != prepared:
        item.prepared = prepared
        item.prepared_at = now if prepared else None
        order.updated_at = now  # bumps the version: the order changed
        await _flush_version_checked(session)
        order_events.order_update(
            session,
            order,
            {
                "items": [
                    {
                        "id": item.id,
                        "prepared": prepared,
                        "preparedAt": iso_z(item.prepared_at),
                    }
                ]
            },
            user,
            now,
        )
    return order


async def update_details(
    session: AsyncSession,
    user: User,
    order_id: str,
    patch: OrderPatch,
    *,
    now: datetime | None = None,
) -> Order:
    now = now or utcnow()
    changes = patch.model_dump(exclude_unset=True, exclude={"expected_version"})
    if not changes:
        raise Unprocessable("Give at least one field to change.")
    order = await get_visible_order(session, user, order_id, lock=True)
    _ensure_farm_side(order, user)
    _check_version(order, patch.expected_version)
    if order.status not in states.OPEN_STATUSES:
        raise OrderNotEditable(f"A {order.status} order can no longer be changed.")
    errors = []
    shipping_only = {"tracking_number", "carrier"}
    pickup_only = {"pickup_location", "pickup_instructions"}
    for key in changes:
        if key in shipping_only and order.fulfillment_type is not FulfillmentType.SHIPPING:
            errors.append({"field": _camel(key), "message": "Only SHIPPING orders are tracked"})
        if key in pickup_only and order.fulfillment_type is not FulfillmentType.PICKUP:
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
    previous_estimate = order.estimated_ready_at
    for key, value in changes.items():
        setattr(order, key, value)
    order.updated_at = now
    await _flush_version_checked(session)
    order_events.order_update(session, order, changes, user, now)
    new_estimate = changes.get("estimated_ready_at")
    if previous_estimate and new_estimate and new_estimate > previous_estimate:
        await notifications.on_estimate_moved_later(session, order, previous_estimate, now)
    return order


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


async def bulk_change_status(
    session: AsyncSession,
    admin: User,
    order_ids: Sequence[str],
    target: OrderStatus,
    *,
    policy: Policy,
    reason: str | None,
    notify_customer: bool = True,
    now: datetime | None = None,
) -> BulkResult:
    """Each order through the same validation, in its own savepoint: one failure stays local."""
    now = now or utcnow()
    succeeded, errors = 0, []
    # Sorted, so two bulk updates over overlapping orders lock in the same order.
    for order_id in sorted(set(order_ids)):
        try:
            async with session.begin_nested():
                await change_status(
                    session,
                    admin,
                    order_id,
                    target,
                    policy=policy,
                    reason=reason,
                    meta={"bulk": True},
                    notify_customer=notify_customer,
                    now=now,
                )
        except FarmstandError as exc:
            errors.append(BulkError(order_id=order_id, error=exc.message))
        else:
            succeeded += 1
    return BulkResult(succeeded=succeeded, failed=len(errors), errors=errors)
