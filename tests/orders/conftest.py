"""Fixtures for the order API tests: a farm with products, its farmer, customers, an admin."""

from __future__ import annotations

import pytest

from farmstand.accounts.roles import Role
from tests.factories import Factory
from tests.orders.helpers import Party, Shop, open_shop, sign_in


@pytest.fixture
async def shop(factory: Factory) -> Shop:
    return await open_shop(factory)


@pytest.fixture
async def other_shop(factory: Factory) -> Shop:
    """A second farm, farmer and customer: the strangers of the authorisation tests."""
    farmer = await sign_in(factory, Role.FARMER)
    farm = await factory.farm(farmer.user)
    return Shop(
        farm=farm,
        farmer=farmer,
        customer=await sign_in(factory, Role.CUSTOMER),
        carrots=await factory.product(farm, price="3.00", stock=10, name="Other carrots"),
        eggs=await factory.product(farm, price="1.00", stock=10, name="Other eggs"),
    )


@pytest.fixture
async def admin(factory: Factory) -> Party:
    return await sign_in(factory, Role.ADMIN)
