"""Pages: the customer's orders and an order's page (live over SSE), with the farm side's
actions on it when the user manages the order (``board_views``); cancelling and "I've
collected it" as plain form POSTs. The farm side's list of orders is its board."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, NoReturn
from urllib.parse import quote_plus

from fastapi import Path, Query, Request, Response

from farmstand.accounts.principal import Principal
from farmstand.accounts.roles import Role
from farmstand.db import utcnow
from farmstand.deps import RuntimeDep, SessionDep, actor_of
from farmstand.errors import FarmstandError
from farmstand.orders import access, service, states, timeline
from farmstand.orders.errors import InvalidTransition, OrderNotFound, TransitionForbidden
from farmstand.orders.records import OrderRecord
from farmstand.orders.states import FulfillmentType, OrderStatus, Policy
from farmstand.web.pages import (
    CsrfChecked,
    PageUser,
    ShowPage,
    form_of,
    page_router,
    redirect,
    render,
)

router = page_router()

OrderId = Annotated[str, Path(max_length=64)]
Cursor = Annotated[str | None, Query(max_length=200)]
PAGE_SIZE = 50
REASON_MAX = 1000

TOO_LATE_TO_CANCEL = (
    "This order can no longer be cancelled here: the farm has started on it. "
    "Contact the farm if something is wrong."
)
NOTICES = {
    "placed": "Thank you! Your order is placed and paid; the farm will confirm it soon.",
    "cancelled": "Your order is cancelled.",
    "completed": "Thanks for collecting your order!",
    # The farm side's actions (board_views).
    "updated": "The order is updated.",
    "estimates": "The estimated times are saved.",
    "tracking": "The tracking details are saved.",
    "pickup": "The pickup details are saved.",
}


def badge(order: OrderRecord) -> dict[str, str]:
    return {
        "status": order.status.lower().replace("_", "-"),
        "label": timeline.status_label(order.status, order.fulfillment_type),
    }


def announcement(order: OrderRecord, journey: timeline.Timeline) -> str:
    """What a screen reader says when the order changes while its page is open."""
    label = timeline.status_label(order.status, order.fulfillment_type)
    said = f"Order {order.order_number} is now {label}."
    if journey.stop is not None:
        return f"{said} {journey.stop.refund}"
    current = [step for step in journey.steps if step.status is order.status]
    return f"{said} {current[0].description}" if current else said


def map_link(place: str | None) -> str | None:
    return f"https://www.openstreetmap.org/search?query={quote_plus(place)}" if place else None


@dataclass(frozen=True)
class OrderRow:
    """An order in a list: its badge, what comes next, how many items."""

    order: OrderRecord
    badge: dict[str, str]
    next_step: str | None
    item_count: int


def _row(order: OrderRecord) -> OrderRow:
    return OrderRow(
        order=order,
        badge=badge(order),
        next_step=timeline.build(order).next_step,
        item_count=sum(item.quantity for item in order.items),
    )


@router.get("/orders")
async def orders_page(
    request: Request, user: PageUser, session: SessionDep, cursor: Cursor = None
) -> Response:
    """A customer's orders (current first, past below); the farm side has its board."""
    if user.role is Role.ADMIN:
        return redirect("/admin/orders")
    if user.role is not Role.CUSTOMER:
        return redirect("/manage")
    records, next_cursor = await service.list_order_records(
        session, user, cursor=cursor, limit=PAGE_SIZE
    )
    rows = [_row(order) for order in records]
    return render(request, "orders.html", _customer_list(rows, next_cursor, cursor))


def _customer_list(
    rows: list[OrderRow], next_cursor: str | None, cursor: str | None
) -> dict[str, Any]:
    return {
        "current": [row for row in rows if row.order.status in states.OPEN_STATUSES],
        "past": [row for row in rows if row.order.status not in states.OPEN_STATUSES],
        "next_cursor": next_cursor,
        "cursor": cursor,
        "paged": bool(cursor),
    }


@router.get("/orders/list")
async def orders_list(
    request: Request, user: PageUser, session: SessionDep, cursor: Cursor = None
) -> Response:
    """The customer's list (what My orders swaps in live when one of their orders changes):
    the same one query as the page."""
    if user.role is not Role.CUSTOMER:
        raise OrderNotFound()
    records, next_cursor = await service.list_order_records(
        session, user, cursor=cursor, limit=PAGE_SIZE
    )
    context = _customer_list([_row(order) for order in records], next_cursor, cursor)
    return render(request, "_orders_list.html", context)


async def _order_context(
    session: SessionDep, user: Principal, order_id: str, policy: Policy, *, manage: bool = False
) -> dict[str, Any]:
    """What the order's page shows; with ``manage``, also the farm side's actions when the
    user manages the order (its history and delivery log included)."""
    order = await service.get_visible_order(session, user, order_id)
    history = await service.order_history(session, user, order_id)
    now = utcnow()
    allowed: list[OrderStatus] = []
    if user.role is Role.CUSTOMER:
        allowed = states.next_actions(order.snapshot(), actor_of(user), now, policy=policy)
    journey = timeline.build(order, history)
    farm_side = None
    if manage and access.may_manage(user, order):
        from farmstand.orders.board_views import manage_context  # it renders cards like these

        farm_side = await manage_context(session, user, order, policy, now)
    return {
        "order": order,
        "badge": badge(order),
        "timeline": journey,
        "announcement": announcement(order, journey),
        "can_cancel": OrderStatus.CANCELLED in allowed,
        "can_complete": OrderStatus.COMPLETED in allowed,
        "complete_label": (
            "I've collected it"
            if order.fulfillment_type is FulfillmentType.PICKUP
            else "I've received it"
        ),
        "map_link": map_link(order.pickup_location),
        "is_customer": user.role is Role.CUSTOMER,
        "manage": farm_side,
        "history": history,
        "errors": {},
        "values": {},
    }


async def order_page_response(
    request: Request,
    session: SessionDep,
    user: Principal,
    runtime: RuntimeDep,
    order_id: str,
    *,
    notice: str | None = None,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    """The order's page (with the farm side's actions for its managers), optionally with
    errors next to the fields that caused them."""
    context = await _order_context(session, user, order_id, runtime.order_policy, manage=True)
    context.update(notice=NOTICES.get(notice or ""), errors=errors or {}, values=values or {})
    return render(request, "order.html", context, status_code=status_code)


@router.get("/orders/{order_id}")
async def order_page(
    request: Request,
    order_id: OrderId,
    user: PageUser,
    session: SessionDep,
    runtime: RuntimeDep,
    notice: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    return await order_page_response(request, session, user, runtime, order_id, notice=notice)


@router.get("/orders/{order_id}/live")
async def order_live(
    request: Request,
    order_id: OrderId,
    user: PageUser,
    session: SessionDep,
    runtime: RuntimeDep,
    announce: bool = False,
) -> Response:
    """The part of the order page that changes (HTMX swaps it in on each event of the order's
    stream); with ``announce``, also what the page's live region says."""
    context = await _order_context(session, user, order_id, runtime.order_policy)
    context["announce"] = announce
    return render(request, "_order_live.html", context)


@router.post("/orders/{order_id}/cancel", dependencies=[CsrfChecked])
async def cancel(
    request: Request, order_id: OrderId, user: PageUser, session: SessionDep, runtime: RuntimeDep
) -> Response:
    form = await form_of(request)
    reason = form.get("reason", "").strip()
    values = {"reason": reason}
    if not reason:
        await _refuse(
            request, user, order_id, runtime, "Tell the farm why you are cancelling.", values, 422
        )
    if len(reason) > REASON_MAX:
        message = f"Keep the reason under {REASON_MAX} characters."
        await _refuse(request, user, order_id, runtime, message, values, 422)
    try:
        await service.change_status(
            session,
            user,
            order_id,
            OrderStatus.CANCELLED,
            policy=runtime.order_policy,
            reason=reason,
        )
    except (InvalidTransition, TransitionForbidden) as exc:
        # The order moved on meanwhile (the farm confirmed it): say so in the customer's words.
        await _refuse(request, user, order_id, runtime, TOO_LATE_TO_CANCEL, values, exc.status_code)
    except FarmstandError as exc:
        await _refuse(request, user, order_id, runtime, exc.message, values, exc.status_code)
    return redirect(f"/orders/{order_id}?notice=cancelled")


@router.post("/orders/{order_id}/complete", dependencies=[CsrfChecked])
async def complete(
    request: Request, order_id: OrderId, user: PageUser, session: SessionDep, runtime: RuntimeDep
) -> Response:
    try:
        await service.change_status(
            session, user, order_id, OrderStatus.COMPLETED, policy=runtime.order_policy
        )
    except FarmstandError as exc:
        await _refuse(
            request, user, order_id, runtime, exc.message, {}, exc.status_code, "complete"
        )
    return redirect(f"/orders/{order_id}?notice=completed")


async def _refuse(
    request: Request,
    user: Principal,
    order_id: str,
    runtime: RuntimeDep,
    message: str,
    values: dict[str, str],
    status_code: int,
    action: str = "reason",
) -> NoReturn:
    """Show the order page again with ``message`` next to the action that failed, after
    rolling the attempt back (the page is read in a transaction of its own)."""
    async with runtime.db.transaction(write=False) as session:
        response = await order_page_response(
            request, session, user, runtime, order_id,
            errors={action: message}, values=values, status_code=status_code,
        )  # fmt: skip
    raise ShowPage(response)
