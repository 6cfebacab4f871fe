"""The board's questions on both databases: which orders each tab and search shows, the counts
of every tab in one statement, "Completed today" on the farm's clock, the next step a card
offers, and what the board page costs in statements."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from sqlalchemy import update

from farmstand.accounts.roles import Role
from farmstand.catalog.models import Farm
from farmstand.deps import SESSION_COOKIE
from farmstand.orders import board
from farmstand.orders.board import BoardQuery, Tab
from farmstand.orders.models import Order
from farmstand.orders.states import Actor, FulfillmentType, OrderStatus, Policy
from tests.factories import Factory
from tests.orders.test_statements import counting, is_postgres

S = OrderStatus
NOW = datetime(2026, 12, 4, 6, 0, tzinfo=UTC)  # 22:00 on 3 December in Los Angeles


def query(farm: Farm | None, tab: Tab = Tab.ALL, search: str = "", *zones: str) -> BoardQuery:
    return BoardQuery(
        farm.id if farm else None,
        tab,
        search,
        frozenset(zones or [farm.timezone if farm else "UTC"]),
    )


async def completed_at(factory: Factory, order_id: str, when: datetime) -> None:
    async with factory.db.transaction() as session:
        await session.execute(update(Order).where(Order.id == order_id).values(completed_at=when))


async def test_each_tab_shows_its_statuses_and_the_counts_add_up(factory: Factory):
    farmer = await factory.user(Role.FARMER)
    farm = await factory.farm(farmer)
    product = await factory.product(farm)
    placed: dict[OrderStatus, list[str]] = {}
    for status in (S.PENDING, S.PENDING, S.CONFIRMED, S.PREPARING, S.READY_FOR_PICKUP, S.CANCELLED):
        order = await factory.order(farm=farm, products=[product], status=status)
        placed.setdefault(status, []).append(order.id)
    shipped = await factory.order(
        farm=farm,
        products=[product],
        status=S.OUT_FOR_DELIVERY,
        fulfillment=FulfillmentType.DELIVERY,
    )
    refunded = await factory.order(farm=farm, products=[product], status=S.REFUNDED)
    elsewhere = await factory.order(status=S.PENDING)  # another farm's

    async with factory.db.transaction(write=False) as session:
        counts = await board.tab_counts(session, farmer, query(farm), now=NOW)
        pages = {
            tab: (await board.board_page(session, farmer, query(farm, tab), now=NOW))[0]
            for tab in Tab
        }

    assert counts == {
        Tab.ALL: 8,
        Tab.PENDING: 2,
        Tab.CONFIRMED: 1,
        Tab.PREPARING: 1,
        Tab.READY: 1,
        Tab.OUT: 1,
        Tab.COMPLETED_TODAY: 0,
        Tab.CANCELLED: 2,
    }
    for tab, orders in pages.items():
        assert len(orders) == counts[tab], tab
    assert {o.id for o in pages[Tab.PENDING]} == set(placed[S.PENDING])
    assert {o.id for o in pages[Tab.CANCELLED]} == {placed[S.CANCELLED][0], refunded.id}
    assert [o.id for o in pages[Tab.OUT]] == [shipped.id]
    assert elsewhere.id not in {o.id for o in pages[Tab.ALL]}
    newest_first = [o.created_at for o in pages[Tab.ALL]]
    assert newest_first == sorted(newest_first, reverse=True)


async def test_a_farmer_never_sees_another_farms_orders_even_by_asking(factory: Factory):
    farmer = await factory.user(Role.FARMER)
    other = await factory.farm()
    await factory.order(farm=other)
    async with factory.db.transaction(write=False) as session:
        orders, _ = await board.board_page(session, farmer, query(other), now=NOW)
        counts = await board.tab_counts(session, farmer, query(other), now=NOW)
    assert orders == [] and counts[Tab.ALL] == 0


async def test_search_finds_part_of_an_order_number_or_a_customer_name_in_any_case(
    factory: Factory,
):
    farmer = await factory.user(Role.FARMER)
    farm = await factory.farm(farmer)
    product = await factory.product(farm)
    maria = await factory.user(Role.CUSTOMER, name="María Gómez")
    pat = await factory.user(Role.CUSTOMER, name="Pat 100% Organic_Fan")
    by_maria = await factory.order(farm=farm, customer=maria, products=[product])
    by_pat = await factory.order(farm=farm, customer=pat, products=[product], status=S.CONFIRMED)

    async def found(text: str, tab: Tab = Tab.ALL) -> set[str]:
        async with factory.db.transaction(write=False) as session:
            orders, _ = await board.board_page(session, farmer, query(farm, tab, text), now=NOW)
        return {o.id for o in orders}

    assert await found("gÓMEZ".lower()) == {by_maria.id}
    assert await found("MAR") == {by_maria.id}
    assert await found(by_pat.order_number[3:7].lower()) == {by_pat.id}
    assert await found("100%") == {by_pat.id}  # the % is a character, not a wildcard
    assert await found("n_c") == set()  # nor is the _ (it would match "nic" in Organic)
    assert await found("pat", Tab.PENDING) == set()  # the tab still applies
    async with factory.db.transaction(write=False) as session:
        counts = await board.tab_counts(session, farmer, query(farm, Tab.ALL, "pat"), now=NOW)
    assert counts[Tab.ALL] == 1 and counts[Tab.CONFIRMED] == 1 and counts[Tab.PENDING] == 0


async def test_completed_today_follows_each_farms_own_midnight(factory: Factory):
    farmer = await factory.user(Role.FARMER)
    los_angeles = await factory.farm(farmer, timezone="America/Los_Angeles")
    london = await factory.farm(farmer, timezone="Europe/London")
    la_product = await factory.product(los_angeles)
    uk_product = await factory.product(london)
    # At NOW it is 22:00 on 3 December in Los Angeles and 06:00 on 4 December in London.
    la_today = await factory.order(farm=los_angeles, products=[la_product], status=S.COMPLETED)
    la_yesterday = await factory.order(farm=los_angeles, products=[la_product], status=S.COMPLETED)
    uk_today = await factory.order(farm=london, products=[uk_product], status=S.COMPLETED)
    uk_yesterday = await factory.order(farm=london, products=[uk_product], status=S.COMPLETED)
    await completed_at(factory, la_today.id, datetime(2026, 12, 3, 10, 0, tzinfo=UTC))  # 02:00 LA
    await completed_at(factory, la_yesterday.id, datetime(2026, 12, 3, 7, 0, tzinfo=UTC))
    await completed_at(factory, uk_today.id, datetime(2026, 12, 4, 1, 0, tzinfo=UTC))
    await completed_at(factory, uk_yesterday.id, datetime(2026, 12, 3, 10, 0, tzinfo=UTC))
    admin = await factory.user(Role.ADMIN)
    tab = Tab.COMPLETED_TODAY

    async with factory.db.transaction(write=False) as session:
        la_orders, _ = await board.board_page(session, farmer, query(los_angeles, tab), now=NOW)
        la_counts = await board.tab_counts(session, farmer, query(los_angeles), now=NOW)
        uk_orders, _ = await board.board_page(session, farmer, query(london, tab), now=NOW)
        # Every farm at once (the admin's list): each order against its own farm's midnight.
        zones = ("America/Los_Angeles", "Europe/London")
        everywhere = query(None, tab, "", *zones)
        all_orders, _ = await board.board_page(session, admin, everywhere, now=NOW)
        all_counts = await board.tab_counts(session, admin, everywhere, now=NOW)

    assert [o.id for o in la_orders] == [la_today.id]
    assert la_counts[Tab.COMPLETED_TODAY] == 1
    assert [o.id for o in uk_orders] == [uk_today.id]
    assert {o.id for o in all_orders} == {la_today.id, uk_today.id}
    assert all_counts[Tab.COMPLETED_TODAY] == 2


async def test_a_card_offers_the_state_machines_next_step_and_says_what_blocks_it(
    factory: Factory,
):
    farmer = await factory.user(Role.FARMER)
    farm = await factory.farm(farmer)
    customer = await factory.user(Role.CUSTOMER)
    as_farmer = Actor(farmer.id, Role.FARMER)
    policy = Policy()

    async def step(status: OrderStatus, kind: FulfillmentType = FulfillmentType.PICKUP):
        order = await factory.order(farm=farm, customer=customer, status=status, fulfillment=kind)
        return board.next_action(order, as_farmer, NOW, policy=policy), order

    confirm, pending = await step(S.PENDING)
    assert confirm == board.NextAction(S.CONFIRMED, "Confirm order", None)
    assert board.next_action(pending, Actor(customer.id, Role.CUSTOMER), NOW, policy=policy) is None
    prepare, _ = await step(S.CONFIRMED)
    assert prepare == board.NextAction(S.PREPARING, "Start preparing", None)
    ready, _ = await step(S.PREPARING)
    assert ready == board.NextAction(S.READY_FOR_PICKUP, "Mark ready", board.ITEMS_FIRST)
    send, _ = await step(S.PREPARING, FulfillmentType.DELIVERY)
    assert send == board.NextAction(S.OUT_FOR_DELIVERY, "Send out", board.ITEMS_FIRST)
    complete, _ = await step(S.READY_FOR_PICKUP)
    assert complete == board.NextAction(S.COMPLETED, "Complete order", None)
    done, _ = await step(S.COMPLETED)
    assert done is None  # only a refund follows, from the order's page


async def test_the_board_page_is_four_statements(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    farmer = await factory.user(Role.FARMER)
    farm = await factory.farm(farmer)
    product = await factory.product(farm)
    for status in (S.PENDING, S.CONFIRMED, S.PREPARING):
        await factory.order(farm=farm, products=[product], status=status)
    client.cookies.set(SESSION_COOKIE, await factory.token(farmer))
    url = f"/manage/{farm.id}?tab=all&q=e"
    assert (await client.get(url)).status_code == 200  # warm: session cached, SQL compiled

    with counting(factory) as trips:
        response = await client.get(url)

    assert response.status_code == 200
    # The bell's unread count, the farm section (the farmer's farms), the page of orders
    # (with their items), and the counts of every tab (one grouped statement).
    assert trips.statements == ["SELECT", "SELECT", "SELECT", "SELECT"]
    # (SQLite: the bell reads in a short transaction of its own, BEGIN and COMMIT.)
    assert trips.round_trips == (4 if is_postgres(factory) else 8)
