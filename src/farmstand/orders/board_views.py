"""Pages: the farm's live fulfilment board (``/manage/{farm_id}``) and its fragments (a card,
the tab counts, the list), the admin's list of every farm's orders (``/admin/orders``), and
the farm's part of an order's page. The actions on an order are in ``board_actions``, the CSV
export in ``board_csv``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import Path, Query, Request, Response

from farmstand import zones
from farmstand.accounts.principal import Principal
from farmstand.accounts.roles import Role
from farmstand.catalog import service as catalog
from farmstand.catalog.views import farm_section
from farmstand.db import utcnow
from farmstand.deps import RuntimeDep, SessionDep, actor_of
from farmstand.errors import NotFound
from farmstand.notifications import delivery_log
from farmstand.notifications.api import delivery_view
from farmstand.orders import board, service, states, timeline
from farmstand.orders.board import BoardQuery, Tab
from farmstand.orders.records import OrderRecord
from farmstand.orders.states import OrderStatus, Policy
from farmstand.orders.views import badge
from farmstand.web.admin import AdminPageUser, ConsoleNotFound
from farmstand.web.pages import (
    PageUser,
    page_router,
    render,
)

router = page_router()

FarmId = Annotated[str, Path(max_length=64)]
OrderId = Annotated[str, Path(max_length=64)]
ItemId = Annotated[str, Path(max_length=64)]
TabParam = Annotated[str | None, Query(max_length=32)]
SearchParam = Annotated[str | None, Query(max_length=200)]
Cursor = Annotated[str | None, Query(max_length=200)]
ViewKind = Literal["board", "admin", "order"]

CHANGED_MEANWHILE = (
    "This order changed meanwhile: the card shows it as it is now. Check it and try again."
)


class BoardOrderNotFound(NotFound):
    message = "Order not found."


# -- where a page, a fragment or an action belongs -------------------------------------------


@dataclass(frozen=True)
class BoardView:
    """Which list a card is shown in (the farm's board, the admin's list, the order's page),
    with its tab, search and (admin) farm filter: for the links, and to come back after an
    action."""

    kind: ViewKind
    tab: Tab = Tab.ALL
    search: str = ""
    farm_id: str | None = None  # the board's farm; the admin list's filter (None: all)

    def query(self, **extra: str | None) -> str:
        params: dict[str, str] = {}
        if self.tab is not Tab.ALL:
            params["tab"] = self.tab.value
        if self.search:
            params["q"] = self.search
        if self.kind == "admin" and self.farm_id:
            params["farm"] = self.farm_id
        params.update({key: value for key, value in extra.items() if value})
        return f"?{urlencode(params)}" if params else ""

    def url(self, **extra: str | None) -> str:
        base = "/admin/orders" if self.kind == "admin" else f"/manage/{self.farm_id}"
        return base + self.query(**extra)

    def tab_url(self, tab: Tab) -> str:
        return BoardView(self.kind, tab, self.search, self.farm_id).url()

    def back(self, order_id: str) -> str:
        if self.kind == "order":
            return f"/orders/{order_id}?notice=updated"
        return f"{self.url()}#order-{order_id}"

    def fields(self) -> dict[str, str]:
        """The hidden fields a card's forms carry, so the action comes back to this view."""
        fields = {"view": self.kind, "tab": self.tab.value, "q": self.search}
        if self.kind == "admin":
            fields["farm"] = self.farm_id or ""
        return fields


def view_from(values: Mapping[str, str], farm_id: str) -> BoardView:
    kind = values.get("view", "board")
    tab = board.parse_tab(values.get("tab"))
    search = board.clean_search(values.get("q"))
    if kind == "admin":
        return BoardView("admin", tab, search, values.get("farm") or None)
    if kind == "order":
        return BoardView("order", tab, search, farm_id)
    return BoardView("board", tab, search, farm_id)


@dataclass(frozen=True)
class Card:
    order: OrderRecord
    badge: dict[str, str]
    action: board.NextAction | None
    preparable: bool
    error: str | None = None
    fresh: bool = False


def card_of(
    order: OrderRecord,
    user: Principal,
    policy: Policy,
    now: datetime,
    *,
    error: str | None = None,
    fresh: bool = False,
) -> Card:
    return Card(
        order=order,
        badge=badge(order),
        action=board.next_action(order, actor_of(user), now, policy=policy),
        preparable=order.status in service.PREPARABLE,
        error=error,
        fresh=fresh,
    )


def card_context(view: BoardView, card: Card) -> dict[str, Any]:
    return {"view": view, "card": card, "fields": view.fields(), "selectable": view.kind == "admin"}


def card_response(
    request: Request, view: BoardView, card: Card, status_code: int = 200
) -> Response:
    """A card alone (HTMX swaps it in); marked so that a refusal's card is swapped too."""
    return render(
        request,
        "_board_card.html",
        card_context(view, card),
        status_code=status_code,
        headers={"X-Farmstand-Card": "1"},
    )


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


# -- the board --------------------------------------------------------------------------------


@dataclass
class Listing:
    view: BoardView
    counts: dict[Tab, int]
    cards: list[Card]
    next_cursor: str | None
    paged: bool
    errors: dict[str, str] = field(default_factory=dict)

    def context(self) -> dict[str, Any]:
        return {
            "view": self.view,
            "tabs": board.TAB_LABELS,
            "tab": self.view.tab,
            "counts": self.counts,
            "cards": self.cards,
            "next_cursor": self.next_cursor,
            "paged": self.paged,
            "fields": self.view.fields(),
            "selectable": self.view.kind == "admin",
            "accepts_new": self.view.tab in board.NEW_ORDER_TABS
            and not self.view.search
            and not self.paged,
        }


async def _listing(
    session: SessionDep,
    user: Principal,
    runtime: RuntimeDep,
    view: BoardView,
    zones: frozenset[str],
    cursor: str | None,
    errors: Mapping[str, str] | None = None,
) -> Listing:
    """The tab's page of cards and every tab's count: two statements."""
    now = utcnow()
    query = BoardQuery(view.farm_id, view.tab, view.search, zones)
    records, next_cursor = await board.board_page(session, user, query, now=now, cursor=cursor)
    counts = await board.tab_counts(session, user, query, now=now)
    errors = errors or {}
    policy = runtime.order_policy
    cards = [card_of(order, user, policy, now, error=errors.get(order.id)) for order in records]
    return Listing(view, counts, cards, next_cursor, bool(cursor), dict(errors))


async def board_response(
    request: Request,
    session: SessionDep,
    user: Principal,
    runtime: RuntimeDep,
    view: BoardView,
    cursor: str | None,
    *,
    errors: Mapping[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    assert view.farm_id is not None
    section = await farm_section(session, user, view.farm_id)
    listing = await _listing(
        session, user, runtime, view, frozenset({section.farm.timezone}), cursor, errors
    )
    context = {**section.context("board"), **listing.context()}
    return render(request, "manage_board.html", context, status_code=status_code)


@router.get("/manage/{farm_id}")
async def board_page(
    request: Request,
    farm_id: FarmId,
    user: PageUser,
    session: SessionDep,
    runtime: RuntimeDep,
    tab: TabParam = None,
    q: SearchParam = None,
    cursor: Cursor = None,
) -> Response:
    """The farm's orders by tab, newest first, 50 a page: three statements (the farm section,
    the page of orders, the counts of every tab), and the header's bell count."""
    view = BoardView("board", board.parse_tab(tab), board.clean_search(q), farm_id)
    return await board_response(request, session, user, runtime, view, cursor)


async def _managed_farm_zone(session: SessionDep, user: Principal, farm_id: str) -> str:
    """The farm's time zone if ``user`` manages it (404 otherwise): one statement."""
    return (await farm_section(session, user, farm_id)).farm.timezone


@router.get("/manage/{farm_id}/counts")
async def board_counts(
    request: Request,
    farm_id: FarmId,
    user: PageUser,
    session: SessionDep,
    tab: TabParam = None,
    q: SearchParam = None,
) -> Response:
    """The tabs with their counts (swapped in live when orders come and move)."""
    zone = await _managed_farm_zone(session, user, farm_id)
    view = BoardView("board", board.parse_tab(tab), board.clean_search(q), farm_id)
    query = BoardQuery(farm_id, view.tab, view.search, frozenset({zone}))
    counts = await board.tab_counts(session, user, query, now=utcnow())
    context = {"view": view, "tabs": board.TAB_LABELS, "tab": view.tab, "counts": counts}
    return render(request, "_board_tabs.html", context)


@router.get("/manage/{farm_id}/list")
async def board_list(
    request: Request,
    farm_id: FarmId,
    user: PageUser,
    session: SessionDep,
    runtime: RuntimeDep,
    tab: TabParam = None,
    q: SearchParam = None,
) -> Response:
    """The tab's first page of cards (the live board reloads it after a reconnection)."""
    zone = await _managed_farm_zone(session, user, farm_id)
    view = BoardView("board", board.parse_tab(tab), board.clean_search(q), farm_id)
    listing = await _listing(session, user, runtime, view, frozenset({zone}), None)
    return render(request, "_board_list.html", listing.context())


@router.get("/manage/{farm_id}/orders/{order_id}/card")
async def card_fragment(
    request: Request,
    farm_id: FarmId,
    order_id: OrderId,
    user: PageUser,
    session: SessionDep,
    runtime: RuntimeDep,
    view: Annotated[str, Query(max_length=10)] = "board",
    tab: TabParam = None,
    q: SearchParam = None,
    farm: Annotated[str | None, Query(max_length=64)] = None,
    fresh: bool = False,
) -> Response:
    """One order's card as it is now (the live board swaps it in place, or puts a new order's
    at the top with ``fresh``)."""
    order = await board.get_board_order(session, user, farm_id, order_id)
    shown = view_from({"view": view, "tab": tab or "", "q": q or "", "farm": farm or ""}, farm_id)
    card = card_of(order, user, runtime.order_policy, utcnow(), fresh=fresh)
    return card_response(request, shown, card)


# -- times on the farm's clock ----------------------------------------------------------------

# The order's times a farm sets on its own clock.
TIME_FIELDS = frozenset({"estimated_ready_at", "estimated_pickup_at"})


def local_input(value: datetime | None, zone: str) -> str:
    """A time as a ``datetime-local`` field shows it, on the farm's clock."""
    return local_iso(value, zone)[:16]


def parse_local(raw: str, zone: str) -> datetime:
    """A ``datetime-local`` value on the farm's clock, as an aware time (ValueError if not)."""
    naive = datetime.fromisoformat(raw)
    if naive.tzinfo is not None:
        raise ValueError(raw)
    return naive.replace(tzinfo=zones.zone(zone))


def local_iso(value: datetime | None, zone: str) -> str:
    """A time on the farm's clock to the minute (``2026-12-03T09:15+01:00``), or ""."""
    return "" if value is None else value.astimezone(zones.zone(zone)).isoformat("T", "minutes")


# -- the admin's list ------------------------------------------------------------------------


@router.get("/admin/orders")
async def admin_orders(
    request: Request,
    user: AdminPageUser,
    session: SessionDep,
    runtime: RuntimeDep,
    tab: TabParam = None,
    q: SearchParam = None,
    farm: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Cursor = None,
) -> Response:
    """Every farm's orders with the board's tabs, counts and search, a farm filter, and the
    selection for a bulk status change: three statements."""
    return await admin_response(request, session, user, runtime, _admin_view(tab, q, farm), cursor)


def _admin_view(tab: str | None, q: str | None, farm: str | None) -> BoardView:
    return BoardView("admin", board.parse_tab(tab), board.clean_search(q), farm or None)


async def admin_response(
    request: Request,
    session: SessionDep,
    user: Principal,
    runtime: RuntimeDep,
    view: BoardView,
    cursor: str | None,
    *,
    errors: Mapping[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    if user.role is not Role.ADMIN:  # also reached from a refused action's form
        raise ConsoleNotFound()
    farms = await catalog.list_farms(session)
    chosen = next((farm for farm in farms if farm.id == view.farm_id), None)
    if chosen is None and view.farm_id is not None:
        view = BoardView("admin", view.tab, view.search, None)  # a farm since deleted: all
    zones = frozenset(farm.timezone for farm in ([chosen] if chosen else farms))
    listing = await _listing(session, user, runtime, view, zones, cursor, errors)
    context = {
        **listing.context(),
        "farms": farms,
        "chosen_farm": chosen,
        "targets": list(OrderStatus),
        "status_labels": timeline.STATUS_LABELS,
    }
    return render(request, "admin_orders.html", context, status_code=status_code)


# -- the farm side of the order's page ----------------------------------------------------------


async def manage_context(
    session: SessionDep, user: Principal, order: OrderRecord, policy: Policy, now: datetime
) -> dict[str, Any]:
    """What the order's page shows the farm side: its card (next step, items prepared), the
    detail forms, cancelling and refunding as the state machine allows, and the delivery log
    (the farm's allow-list of fields): one statement (the log)."""
    allowed = states.next_actions(order.snapshot(), actor_of(user), now, policy=policy)
    view = BoardView("order", farm_id=order.farm_id)
    rows = await delivery_log.delivery_log(session, order.id)
    zone = order.farm_timezone
    return {
        **card_context(view, card_of(order, user, policy, now)),
        "can_cancel": OrderStatus.CANCELLED in allowed,
        "can_refund": OrderStatus.REFUNDED in allowed and order.paid_at is not None,
        "editable": order.status in states.OPEN_STATUSES,
        "times": {name: local_input(getattr(order, name), zone) for name in TIME_FIELDS},
        "deliveries": [delivery_view(row, user) for row in rows],
    }
