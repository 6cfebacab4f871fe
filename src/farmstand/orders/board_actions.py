"""The farm side's actions on an order, each a plain form POST under
``/manage/{farm_id}/orders/{order_id}/...``: the next status, an item prepared, estimated
times, tracking, pickup details.

A plain form gets a 303 back where it came from (the board with its tab and search, the admin
list, or the order's page), and a refusal gets that page again with the message next to its
cause; an HTMX request gets the card back, refusal included."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from fastapi import Request, Response
from pydantic import ValidationError

from farmstand.accounts.principal import Principal
from farmstand.db import utcnow
from farmstand.deps import RuntimeDep, SessionDep
from farmstand.errors import FarmstandError
from farmstand.orders import board, service
from farmstand.orders.board_views import (
    CHANGED_MEANWHILE,
    TIME_FIELDS,
    BoardView,
    FarmId,
    ItemId,
    OrderId,
    admin_response,
    board_response,
    card_of,
    card_response,
    is_htmx,
    parse_local,
    view_from,
)
from farmstand.orders.errors import ConcurrentUpdate, ReasonRequired
from farmstand.orders.records import OrderRecord
from farmstand.orders.schemas import OrderPatch
from farmstand.orders.states import OrderStatus
from farmstand.web.pages import (
    CsrfChecked,
    PageUser,
    ShowPage,
    field_errors,
    form_of,
    page_router,
    redirect,
)

router = page_router()


async def _refuse(
    request: Request,
    user: Principal,
    runtime: RuntimeDep,
    view: BoardView,
    farm_id: str,
    order_id: str,
    message: str,
    status_code: int,
    *,
    field: str = "action",
    values: Mapping[str, str] | None = None,
) -> NoReturn:
    """Show the refusal where the action came from (the card for HTMX, else the whole board,
    admin list or order page), read after the attempt was rolled back."""
    response: Response
    async with runtime.db.transaction(write=False) as session:
        if is_htmx(request):
            order = await board.get_board_order(session, user, farm_id, order_id)
            card = card_of(order, user, runtime.order_policy, utcnow(), error=message)
            response = card_response(request, view, card, status_code)
        elif view.kind == "admin":
            response = await admin_response(
                request, session, user, runtime, view, None,
                errors={order_id: message}, status_code=status_code,
            )  # fmt: skip
        elif view.kind == "order":
            from farmstand.orders.views import order_page_response

            response = await order_page_response(
                request, session, user, runtime, order_id,
                errors={field: message}, values=dict(values or {}), status_code=status_code,
            )  # fmt: skip
        else:
            response = await board_response(
                request, session, user, runtime, view, None,
                errors={order_id: message}, status_code=status_code,
            )  # fmt: skip
    raise ShowPage(response)


def _message(exc: FarmstandError) -> str:
    return CHANGED_MEANWHILE if isinstance(exc, ConcurrentUpdate) else exc.message


async def _done(
    request: Request,
    user: Principal,
    runtime: RuntimeDep,
    view: BoardView,
    order: OrderRecord,
) -> Response:
    """After an action: the card for HTMX, else see the result with a GET."""
    if is_htmx(request):
        card = card_of(order, user, runtime.order_policy, utcnow())
        return card_response(request, view, card)
    return redirect(view.back(order.id))


def _version(raw: str | None) -> int | None:
    try:
        return int(raw) if raw else None
    except ValueError:
        return None


@router.post("/manage/{farm_id}/orders/{order_id}/status", dependencies=[CsrfChecked])
async def change_status(
    request: Request,
    farm_id: FarmId,
    order_id: OrderId,
    user: PageUser,
    session: SessionDep,
    runtime: RuntimeDep,
) -> Response:
    """The card's next step, or (from the order's page) cancelling or refunding with a
    reason; the hidden ``version`` makes a stale page's click a 409, not a surprise."""
    form = await form_of(request)
    view = view_from(form, farm_id)
    await board.get_board_order(session, user, farm_id, order_id)
    raw = form.get("status", "")
    target = OrderStatus.__members__.get(raw)
    field = {"CANCELLED": "cancel", "REFUNDED": "refund"}.get(raw, "action")
    values = {"reason": form.get("reason", "")}
    if target is None:
        await _refuse(
            request, user, runtime, view, farm_id, order_id,
            "Choose what to do with the order.", 422,
        )  # fmt: skip
    assert target is not None
    try:
        changed = await service.change_status(
            session,
            user,
            order_id,
            target,
            policy=runtime.order_policy,
            reason=form.get("reason") or None,
            expected_version=_version(form.get("version")),
        )
    except ReasonRequired:
        message = "Give a reason: the customer will see it."
        await _refuse(
            request, user, runtime, view, farm_id, order_id, message, 422,
            field=field, values=values,
        )  # fmt: skip
    except FarmstandError as exc:
        await _refuse(
            request, user, runtime, view, farm_id, order_id, _message(exc), exc.status_code,
            field=field, values=values,
        )  # fmt: skip
    return await _done(request, user, runtime, view, changed)


@router.post("/manage/{farm_id}/orders/{order_id}/items/{item_id}", dependencies=[CsrfChecked])
async def item_prepared(
    request: Request,
    farm_id: FarmId,
    order_id: OrderId,
    item_id: ItemId,
    user: PageUser,
    session: SessionDep,
    runtime: RuntimeDep,
) -> Response:
    """Tick (or untick) an item as prepared."""
    form = await request.form()
    fields = {key: value for key, value in form.items() if isinstance(value, str)}
    view = view_from(fields, farm_id)
    await board.get_board_order(session, user, farm_id, order_id)
    prepared = "true" in form.getlist("prepared")
    try:
        changed = await service.set_item_prepared(session, user, order_id, item_id, prepared)
    except FarmstandError as exc:
        await _refuse(
            request, user, runtime, view, farm_id, order_id, _message(exc), exc.status_code
        )
    return await _done(request, user, runtime, view, changed)


# The order page's detail forms: each names the fields it sets (form name -> OrderPatch name).
DETAIL_FORMS: dict[str, dict[str, str]] = {
    "estimates": {
        "estimated_ready_at": "estimatedReadyAt",
        "estimated_pickup_at": "estimatedPickupAt",
    },
    "tracking": {"tracking_number": "trackingNumber", "carrier": "carrier"},
    "pickup": {"pickup_location": "pickupLocation", "pickup_instructions": "pickupInstructions"},
}


def _detail_patch(
    order: OrderRecord, which: str, form: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """What the form changes (fields left as they were are not sent), or the errors by field."""
    changes: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name in DETAIL_FORMS[which]:
        raw = form.get(name, "").strip()
        current = getattr(order, name)
        if name in TIME_FIELDS:
            if not raw:
                if current is not None:
                    changes[name] = None
                continue
            try:
                value: Any = parse_local(raw, order.farm_timezone)
            except ValueError:
                errors[name] = "Enter a date and time, such as 2026-12-05 14:30."
                continue
            if current is None or value != current:
                changes[name] = value
        elif raw != (current or ""):
            changes[name] = raw or None
    return changes, errors


async def _update_details(
    request: Request,
    farm_id: str,
    order_id: str,
    which: str,
    user: Principal,
    session: SessionDep,
    runtime: RuntimeDep,
) -> Response:
    form = await form_of(request)
    order = await board.get_board_order(session, user, farm_id, order_id)
    changes, errors = _detail_patch(order, which, form)
    values = {name: form.get(name, "") for name in DETAIL_FORMS[which]}
    by_camel = {camel: name for name, camel in DETAIL_FORMS[which].items()}

    async def refuse(errors: Mapping[str, str], status_code: int) -> NoReturn:
        from farmstand.orders.views import order_page_response

        async with runtime.db.transaction(write=False) as read:
            response = await order_page_response(
                request, read, user, runtime, order_id,
                errors=dict(errors), values=values, status_code=status_code,
            )  # fmt: skip
        raise ShowPage(response)

    if errors:
        await refuse(errors, 422)
    if not changes:
        await refuse({which: "Nothing changed: edit a field first."}, 422)
    try:
        patch = OrderPatch.model_validate(
            {**changes, "expected_version": _version(form.get("version"))}
        )
    except ValidationError as exc:
        await refuse(
            {by_camel.get(key, which): message for key, message in field_errors(exc).items()},
            422,
        )
    try:
        await service.update_details(session, user, order_id, patch)
    except FarmstandError as exc:
        details = exc.details if isinstance(exc.details, list) else []
        mapped = {
            by_camel.get(str(d.get("field")), which): _sentence(str(d.get("message", "")))
            for d in details
        }
        await refuse(mapped or {which: _message(exc)}, exc.status_code)
    return redirect(f"/orders/{order_id}?notice={which}")


def _sentence(text: str) -> str:
    text = text.replace("estimatedReadyAt", "the ready time")
    return (text[:1].upper() + text[1:]).rstrip(".") + "."


@router.post("/manage/{farm_id}/orders/{order_id}/estimates", dependencies=[CsrfChecked])
async def set_estimates(
    request: Request,
    farm_id: FarmId,
    order_id: OrderId,
    user: PageUser,
    session: SessionDep,
    runtime: RuntimeDep,
) -> Response:
    """Estimated ready and pickup/delivery times, on the farm's clock (a later ready time
    tells the customer of the delay)."""
    return await _update_details(request, farm_id, order_id, "estimates", user, session, runtime)


@router.post("/manage/{farm_id}/orders/{order_id}/tracking", dependencies=[CsrfChecked])
async def set_tracking(
    request: Request,
    farm_id: FarmId,
    order_id: OrderId,
    user: PageUser,
    session: SessionDep,
    runtime: RuntimeDep,
) -> Response:
    """A shipping order's tracking number and carrier."""
    return await _update_details(request, farm_id, order_id, "tracking", user, session, runtime)


@router.post("/manage/{farm_id}/orders/{order_id}/pickup", dependencies=[CsrfChecked])
async def set_pickup(
    request: Request,
    farm_id: FarmId,
    order_id: OrderId,
    user: PageUser,
    session: SessionDep,
    runtime: RuntimeDep,
) -> Response:
    """A pickup order's pickup place and instructions."""
    return await _update_details(request, farm_id, order_id, "pickup", user, session, runtime)
