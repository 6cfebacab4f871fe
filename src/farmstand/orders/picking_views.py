"""Pages: the farm's pick list (``/manage/{farm_id}/pick-list``) and its printable packing
slips (``/manage/{farm_id}/packing-slips``), in the farm side's frame. Read-only; printed
with the browser's own print (the stylesheet's print section hides the site around them)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request, Response

from farmstand.catalog.views import FarmId, farm_section
from farmstand.db import utcnow
from farmstand.deps import SessionDep
from farmstand.errors import Unprocessable
from farmstand.orders import picking, timeline
from farmstand.orders.states import OrderStatus
from farmstand.orders.views import badge
from farmstand.web.pages import PageUser, page_router, render

router = page_router()

When = Annotated[str | None, Query(max_length=10)]
Statuses = Annotated[list[str], Query(alias="status", max_length=20)]
OrderIds = Annotated[list[str], Query(alias="order_id", max_length=picking.MAX_SLIPS)]


@router.get("/manage/{farm_id}/pick-list")
async def pick_list_page(
    request: Request, farm_id: FarmId, user: PageUser, session: SessionDep, when: When = None
) -> Response:
    """Every confirmed or preparing order by default (one confirmed yesterday still needs
    picking); ``?when=today`` keeps those estimated ready today on the farm's clock."""
    section = await farm_section(session, user, farm_id)
    today, start, end = picking.farm_day(section.farm, utcnow())
    only_today = when == "today"
    lines = await picking.pick_list(
        session, user, section.farm, ready_between=(start, end) if only_today else None
    )
    return render(
        request,
        "pick_list.html",
        {
            **section.context("pick-list"),
            "lines": lines,
            "only_today": only_today,
            "today": today,
            "now": utcnow(),
        },
    )


def _statuses(raw: list[str]) -> list[OrderStatus]:
    """``?status=CONFIRMED,PREPARING`` (or repeated); the default when none given."""
    names = [name.strip().upper() for value in raw for name in value.split(",") if name.strip()]
    try:
        chosen = [OrderStatus(name) for name in dict.fromkeys(names)]
    except ValueError:
        known = ", ".join(status.value for status in OrderStatus)
        raise Unprocessable(f"Unknown order status in the address; use one of {known}.") from None
    return chosen or list(picking.TO_PICK)


@router.get("/manage/{farm_id}/packing-slips")
async def packing_slips_page(
    request: Request,
    farm_id: FarmId,
    user: PageUser,
    session: SessionDep,
    status: Statuses = [],  # noqa: B006 - FastAPI copies a query list's default per request
    order_id: OrderIds = [],  # noqa: B006
) -> Response:
    section = await farm_section(session, user, farm_id)
    statuses = _statuses(status)
    orders, more = await picking.packing_slips(
        session, user, section.farm, statuses=statuses, order_ids=order_ids_of(order_id)
    )
    return render(
        request,
        "packing_slips.html",
        {
            **section.context("packing-slips"),
            "orders": orders,
            "more": more,
            "max_slips": picking.MAX_SLIPS,
            "chosen": bool(order_id),
            "statuses": [timeline.STATUS_LABELS[s] for s in statuses],
            "badge": badge,
        },
    )


def order_ids_of(raw: list[str]) -> list[str]:
    return [value.strip() for value in raw if value.strip()][: picking.MAX_SLIPS]
