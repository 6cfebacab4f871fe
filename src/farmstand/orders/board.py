"""The fulfilment board's questions: which orders a tab shows, how many each tab holds, what
a search finds, and which step comes next on a card.

A tab is a set of statuses (and "Completed today", the orders completed since midnight in
their farm's time zone). The list is one statement and the counts of every tab one more
(grouped by status); the farm side (a farmer's farm, or every farm for an admin) is
authorised by the caller's farm section and again here, in SQL, by who may see which orders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from farmstand import zones
from farmstand.accounts.principal import Person
from farmstand.orders import access, service, states
from farmstand.orders import repository as repo
from farmstand.orders.errors import (
    InvalidTransition,
    OrderNotFound,
    ReasonRequired,
    TransitionForbidden,
    TransitionGuardFailed,
)
from farmstand.orders.records import OrderRecord
from farmstand.orders.states import Actor, OrderStatus, Policy
from farmstand.schemas import decode_cursor, split_page

S = OrderStatus
PAGE_SIZE = 50
EXPORT_LIMIT = 10_000
SEARCH_MAX = 100


class Tab(StrEnum):
    ALL = "all"
    PENDING = "pending"
    CONFIRMED = "confirmed"
    PREPARING = "preparing"
    READY = "ready"
    OUT = "out"
    COMPLETED_TODAY = "completed-today"
    CANCELLED = "cancelled"


TAB_LABELS: dict[Tab, str] = {
    Tab.ALL: "All",
    Tab.PENDING: "Pending",
    Tab.CONFIRMED: "Confirmed",
    Tab.PREPARING: "Preparing",
    Tab.READY: "Ready",
    Tab.OUT: "Out for delivery",
    Tab.COMPLETED_TODAY: "Completed today",
    Tab.CANCELLED: "Cancelled",
}
TAB_STATUSES: dict[Tab, frozenset[OrderStatus]] = {
    Tab.ALL: frozenset(),
    Tab.PENDING: frozenset({S.PENDING}),
    Tab.CONFIRMED: frozenset({S.CONFIRMED}),
    Tab.PREPARING: frozenset({S.PREPARING}),
    Tab.READY: frozenset({S.READY_FOR_PICKUP}),
    Tab.OUT: frozenset({S.OUT_FOR_DELIVERY}),
    Tab.COMPLETED_TODAY: frozenset({S.COMPLETED}),
    Tab.CANCELLED: frozenset({S.CANCELLED, S.REFUNDED}),
}
# The tabs a just-placed order belongs to (the board puts it at their top, live).
NEW_ORDER_TABS = frozenset(tab for tab, statuses in TAB_STATUSES.items() if not statuses) | {
    tab for tab, statuses in TAB_STATUSES.items() if states.INITIAL_STATUS in statuses
}


def parse_tab(raw: str | None) -> Tab:
    """The tab a link asks for; an unknown one shows All (a stale bookmark still works)."""
    try:
        return Tab(raw or Tab.ALL)
    except ValueError:
        return Tab.ALL


def clean_search(raw: str | None) -> str:
    return " ".join((raw or "").split())[:SEARCH_MAX]


@dataclass(frozen=True)
class BoardQuery:
    """One board view: a farm (None: every farm the user manages, for an admin), a tab and a
    search, and the time zones of the farms it may show (for "Completed today")."""

    farm_id: str | None
    tab: Tab
    search: str
    zones: frozenset[str]

    def midnights(self, now: datetime) -> dict[str, datetime]:
        """The start of today in each zone, in UTC."""
        return {zone: start_of_day(now, zone) for zone in self.zones or {"UTC"}}

    def filter(self, now: datetime, *, with_tab: bool = True) -> repo.OrderFilter:
        statuses: Sequence[OrderStatus] = ()
        since = None
        if with_tab:
            statuses = sorted(TAB_STATUSES[self.tab])
            if self.tab is Tab.COMPLETED_TODAY:
                since = self.midnights(now)
        return repo.OrderFilter(
            farm_id=self.farm_id,
            statuses=statuses,
            completed_since=since,
            search=self.search or None,
        )


def start_of_day(now: datetime, zone: str) -> datetime:
    """Midnight of ``now``'s day on the clock of ``zone``, as an aware time."""
    tz = zones.zone(zone)
    local = now.astimezone(tz)
    return datetime.combine(local.date(), time(0), tzinfo=tz)


async def board_page(
    session: AsyncSession,
    user: Person,
    query: BoardQuery,
    *,
    now: datetime,
    cursor: str | None = None,
    limit: int = PAGE_SIZE,
) -> tuple[Sequence[OrderRecord], str | None]:
    """A page of the tab's orders, newest first, and the cursor of the next (one statement)."""
    rows = await repo.list_orders(
        session,
        access.visible_orders_condition(user),
        farm_id=None,
        statuses=(),
        before=decode_cursor(cursor) if cursor else None,
        limit=limit + 1,
        where=query.filter(now),
    )
    return split_page(rows, limit)


async def tab_counts(
    session: AsyncSession, user: Person, query: BoardQuery, *, now: datetime
) -> dict[Tab, int]:
    """How many orders each tab holds (with the same search): one grouped statement."""
    counts = await repo.count_by_status(
        session,
        access.visible_orders_condition(user),
        query.filter(now, with_tab=False),
        query.midnights(now),
    )
    result: dict[Tab, int] = {}
    for tab, statuses in TAB_STATUSES.items():
        if tab is Tab.COMPLETED_TODAY:
            result[tab] = counts.completed_since
        elif not statuses:
            result[tab] = sum(counts.by_status.values())
        else:
            result[tab] = sum(counts.by_status.get(status, 0) for status in statuses)
    return result


async def export_rows(
    session: AsyncSession, user: Person, query: BoardQuery, *, now: datetime
) -> tuple[Sequence[OrderRecord], bool]:
    """Every order of the tab (newest first) up to ``EXPORT_LIMIT``, and whether there were
    more (one statement)."""
    rows = await repo.list_orders(
        session,
        access.visible_orders_condition(user),
        farm_id=None,
        statuses=(),
        before=None,
        limit=EXPORT_LIMIT + 1,
        where=query.filter(now),
    )
    return rows[:EXPORT_LIMIT], len(rows) > EXPORT_LIMIT


async def get_board_order(
    session: AsyncSession, user: Person, farm_id: str, order_id: str
) -> OrderRecord:
    """An order of ``farm_id`` that ``user`` manages (one statement); 404 for anything else,
    its customer included (the board's routes are the farm side's)."""
    order = await service.get_visible_order(session, user, order_id)
    if order.farm_id != farm_id or not access.may_manage(user, order):
        raise OrderNotFound()
    return order


# -- what a card offers -------------------------------------------------------------------------

# What the forward step to each status is called on a card; which step is possible comes from
# the state machine (``states.TRANSITIONS``), never from this table.
ACTION_LABELS: dict[OrderStatus, str] = {
    S.CONFIRMED: "Confirm order",
    S.PREPARING: "Start preparing",
    S.READY_FOR_PICKUP: "Mark ready",
    S.OUT_FOR_DELIVERY: "Send out",
    S.COMPLETED: "Complete order",
}
# Leaving the journey takes a reason: done from the order's page, not from a card's button.
SIDE_EXITS = frozenset({S.CANCELLED, S.REFUNDED})
ITEMS_FIRST = "Tick every item as prepared first."


@dataclass(frozen=True)
class NextAction:
    target: OrderStatus
    label: str
    blocked: str | None  # why it cannot be done yet (shown by the disabled button)


def next_action(
    order: OrderRecord, actor: Actor, now: datetime, *, policy: Policy
) -> NextAction | None:
    """The card's forward step for ``actor``: the first rule of the state machine from the
    order's status (for its fulfilment type) that is not a cancellation or refund and that
    the actor's role may take; blocked, with the reason, while one of its guards refuses."""
    snapshot = order.snapshot()
    for rule in states.TRANSITIONS:
        if rule.source is not order.status or rule.target in SIDE_EXITS:
            continue
        if order.fulfillment_type not in rule.fulfillment:
            continue
        try:
            states.transition(snapshot, rule.target, actor, now, policy=policy)
        except TransitionGuardFailed as refusal:
            blocked = ITEMS_FIRST if not snapshot.all_items_prepared else refusal.message
            return NextAction(rule.target, ACTION_LABELS[rule.target], blocked)
        except (InvalidTransition, TransitionForbidden, ReasonRequired):
            continue
        return NextAction(rule.target, ACTION_LABELS[rule.target], None)
    return None
