"""The farm's orders as CSV: the board's tab and search, every page (at most
``board.EXPORT_LIMIT`` rows), each cell safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterator, Sequence

from fastapi import Response
from fastapi.responses import StreamingResponse

from farmstand.catalog.views import farm_section
from farmstand.db import utcnow
from farmstand.deps import SessionDep
from farmstand.orders import board
from farmstand.orders.board import BoardQuery
from farmstand.orders.board_views import FarmId, SearchParam, TabParam, local_iso
from farmstand.orders.records import OrderRecord
from farmstand.web.pages import (
    PAGE_HEADERS,
    PageUser,
    page_router,
)

router = page_router()

CSV_COLUMNS = (
    "Order number",
    "Placed",
    "Customer",
    "Status",
    "Fulfilment",
    "Items",
    "Total",
    "Estimated ready",
    "Tracking number",
)
TIMES = "\u00d7"  # the multiplication sign, as in "2 (times) Eggs (dozen)"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: str) -> str:
    """A cell a spreadsheet shows as text: one starting like a formula gets a leading quote."""
    return f"'{value}" if value.startswith(FORMULA_START) else value


def csv_row(order: OrderRecord) -> list[str]:
    items = "; ".join(f"{item.quantity} {TIMES} {item.product_name}" for item in order.items)
    zone = order.farm_timezone
    values = [
        order.order_number,
        local_iso(order.created_at, zone),
        order.customer_name,
        str(order.status),
        str(order.fulfillment_type),
        items,
        f"{order.total_amount:.2f}",
        local_iso(order.estimated_ready_at, zone),
        order.tracking_number or "",
    ]
    return [csv_cell(value) for value in values]


def _csv_lines(orders: Sequence[OrderRecord], truncated: bool) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(CSV_COLUMNS)
    for start in range(0, len(orders), 500):
        for order in orders[start : start + 500]:
            writer.writerow(csv_row(order))
        yield flush()
    if truncated:
        writer.writerow(
            [f"Only the newest {board.EXPORT_LIMIT:,} orders are listed: narrow the tab or search."]
        )
    yield flush()


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:40] or "farm"


@router.get("/manage/{farm_id}/orders.csv")
async def export_csv(
    farm_id: FarmId,
    user: PageUser,
    session: SessionDep,
    tab: TabParam = None,
    q: SearchParam = None,
) -> Response:
    """The tab's orders (with the search), every page, as CSV (at most ``EXPORT_LIMIT``)."""
    section = await farm_section(session, user, farm_id)
    now = utcnow()
    chosen = board.parse_tab(tab)
    query = BoardQuery(farm_id, chosen, board.clean_search(q), frozenset({section.farm.timezone}))
    orders, truncated = await board.export_rows(session, user, query, now=now)
    day = local_iso(now, section.farm.timezone)[:10]
    filename = f"orders-{_slug(section.farm.name)}-{chosen.value}-{day}.csv"
    headers = {
        **PAGE_HEADERS,
        "Content-Disposition": f'attachment; filename="{filename}"',
    }
    return StreamingResponse(
        _csv_lines(orders, truncated), media_type="text/csv; charset=utf-8", headers=headers
    )
