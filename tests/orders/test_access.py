"""Who may see and manage an order: each access function, for each kind of caller."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from farmstand.accounts.roles import Role
from farmstand.catalog import access as farms
from farmstand.errors import Forbidden
from farmstand.orders import access, service
from farmstand.orders import repository as repo
from farmstand.orders.errors import OrderNotFound
from tests.factories import Factory


@dataclass(frozen=True)
class Someone:
    id: str
    role: Role
    name: str = "Someone"


FARMER = "farmer-1"
CUSTOMER = "customer-1"
CALLERS = {
    "admin": Someone("admin-1", Role.ADMIN),
    "farmer of this farm": Someone(FARMER, Role.FARMER),
    "farmer of another farm": Someone("farmer-2", Role.FARMER),
    "the customer who ordered": Someone(CUSTOMER, Role.CUSTOMER),
    "another customer": Someone("customer-2", Role.CUSTOMER),
}
# caller -> (may see the order, may manage it for the farm, may list by its farm)
EXPECTED = {
    "admin": (True, True, True),
    "farmer of this farm": (True, True, True),
    "farmer of another farm": (False, False, False),
    "the customer who ordered": (True, False, True),
    "another customer": (False, False, True),
}


@pytest.mark.parametrize("caller", list(CALLERS))
def test_who_may_see_and_manage_an_order(caller: str) -> None:
    user = CALLERS[caller]
    sees, manages, lists = EXPECTED[caller]

    assert access.may_see_order(user, customer_id=CUSTOMER, farm_owner_id=FARMER) is sees
    assert farms.may_manage_farm(user, FARMER) is manages
    assert access.may_filter_by_farm(user, FARMER) is lists


@pytest.mark.parametrize("caller", list(CALLERS))
def test_only_admins_and_the_customer_may_watch_a_customer(caller: str) -> None:
    user = CALLERS[caller]
    expected = caller in ("admin", "the customer who ordered")
    assert access.may_watch_customer(user, CUSTOMER) is expected


async def test_the_sql_condition_and_the_order_checks_agree(factory: Factory) -> None:
    # Given an order at one farm and another order elsewhere
    farmer = await factory.user(Role.FARMER)
    customer = await factory.user(Role.CUSTOMER)
    order = await factory.order(farm=await factory.farm(farmer), customer=customer)
    elsewhere = await factory.order()
    callers = {
        "admin": await factory.user(Role.ADMIN),
        "farmer of this farm": farmer,
        "farmer of another farm": await factory.user(Role.FARMER),
        "the customer who ordered": customer,
        "another customer": await factory.user(Role.CUSTOMER),
    }
    for caller, user in callers.items():
        sees, manages, _lists = EXPECTED[caller]
        async with factory.db.transaction() as session:
            # When each caller lists the orders and asks for this one
            listed = await repo.list_orders(
                session,
                access.visible_orders_condition(user),
                farm_id=None,
                statuses=(),
                before=None,
                limit=100,
            )
            record = await repo.load_order(session, order.id)
            assert record is not None
            # Then the list, the record checks and the service's 404/403 tell the same story
            assert (order.id in {o.id for o in listed}) is sees, caller
            assert (elsewhere.id in {o.id for o in listed}) is (caller == "admin"), caller
            assert access.may_see(user, record[0]) is sees, caller
            assert access.may_manage(user, record[0]) is manages, caller
            if not sees:
                with pytest.raises(OrderNotFound):
                    await service.get_managed_order(session, user, order.id, refusal="no")
            elif not manages:
                with pytest.raises(Forbidden, match="no"):
                    await service.get_managed_order(session, user, order.id, refusal="no")
            else:
                got = await service.get_managed_order(session, user, order.id, refusal="no")
                assert got.id == order.id
