"""Routes under /api/orders."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from farmstand.deps import (
    AdminUser,
    CurrentUser,
    OrderingCustomer,
    RuntimeDep,
    SessionDep,
)
from farmstand.orders import service
from farmstand.orders.schemas import (
    BulkResult,
    BulkStatusIn,
    HistoryOut,
    ItemPatch,
    OrderIn,
    OrderOut,
    OrderPatch,
    StatusIn,
)
from farmstand.orders.states import OrderStatus
from farmstand.schemas import ERROR_RESPONSES, Envelope, Page, ok, ok_json, parse_enum_list

router = APIRouter(prefix="/api/orders", tags=["orders"], responses=ERROR_RESPONSES)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Place an order (customer)",
    response_model=Envelope[OrderOut],
)
async def place_order(
    body: OrderIn, user: OrderingCustomer, session: SessionDep, runtime: RuntimeDep
) -> Response:
    order = await service.place_order(session, user, body)
    return ok_json(service.to_out(order, user, runtime.order_policy), status.HTTP_201_CREATED)


@router.get("", summary="Orders you may see, newest first")
async def list_orders(
    user: CurrentUser,
    session: SessionDep,
    runtime: RuntimeDep,
    farm_id: Annotated[str | None, Query(alias="farmId", max_length=64)] = None,
    status_filter: Annotated[
        str | None,
        Query(alias="status", max_length=200, description="One or more statuses: A,B"),
    ] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Envelope[Page[OrderOut]]:
    page = await service.list_orders(
        session,
        user,
        farm_id=farm_id,
        statuses=parse_enum_list(status_filter, OrderStatus, "status"),
        cursor=cursor,
        limit=limit,
        policy=runtime.order_policy,
    )
    return ok(page)


@router.post("/bulk-status", summary="Change the status of many orders (admin)")
async def bulk_status(
    body: BulkStatusIn, user: AdminUser, session: SessionDep, runtime: RuntimeDep
) -> Envelope[BulkResult]:
    result = await service.bulk_change_status(
        session,
        user,
        body.order_ids,
        body.status,
        policy=runtime.order_policy,
        reason=body.reason,
        notify_customer=body.notify_customer,
    )
    return ok(result)


@router.get("/{order_id}", summary="One order with its items", response_model=Envelope[OrderOut])
async def get_order(
    order_id: str, user: CurrentUser, session: SessionDep, runtime: RuntimeDep
) -> Response:
    order = await service.get_visible_order(session, user, order_id)
    return ok_json(service.to_out(order, user, runtime.order_policy))


@router.patch("/{order_id}", summary="Estimated times, pickup details, tracking (the farm)")
async def update_order(
    order_id: str, body: OrderPatch, user: CurrentUser, session: SessionDep, runtime: RuntimeDep
) -> Envelope[OrderOut]:
    order = await service.update_details(session, user, order_id, body)
    return ok(service.to_out(order, user, runtime.order_policy))


@router.put(
    "/{order_id}/status",
    summary="Move the order to another status",
    response_model=Envelope[OrderOut],
)
async def change_status(
    order_id: str, body: StatusIn, user: CurrentUser, session: SessionDep, runtime: RuntimeDep
) -> Response:
    order = await service.change_status(
        session,
        user,
        order_id,
        body.status,
        policy=runtime.order_policy,
        reason=body.reason,
        expected_version=body.expected_version,
        notify_customer=body.notify_customer,
    )
    return ok_json(service.to_out(order, user, runtime.order_policy))


@router.get(
    "/{order_id}/status",
    summary="The order's status history, oldest first",
    response_model=Envelope[list[HistoryOut]],
)
async def status_history(order_id: str, user: CurrentUser, session: SessionDep) -> Response:
    return ok_json(await service.order_history(session, user, order_id))


@router.patch("/{order_id}/items/{item_id}", summary="Mark an item prepared or not (the farm)")
async def update_item(
    order_id: str,
    item_id: str,
    body: ItemPatch,
    user: CurrentUser,
    session: SessionDep,
    runtime: RuntimeDep,
) -> Envelope[OrderOut]:
    order = await service.set_item_prepared(session, user, order_id, item_id, body.prepared)
    return ok(service.to_out(order, user, runtime.order_policy))
