"""Who may manage a farm: each access function, for each kind of caller."""

from __future__ import annotations

import pytest

from farmstand.accounts.roles import Role
from farmstand.catalog import access
from farmstand.catalog.errors import FarmNotFound, NotFarmOwner
from tests.factories import Factory


async def test_admins_and_the_owner_manage_a_farm_nobody_else(factory: Factory) -> None:
    # Given a farm, and one caller of each kind
    owner = await factory.user(Role.FARMER)
    farm = await factory.farm(owner)
    other_farm = await factory.farm()
    callers = {
        "admin": (await factory.user(Role.ADMIN), True),
        "farmer of this farm": (owner, True),
        "farmer of another farm": (await factory.user(Role.FARMER), False),
        "a customer": (await factory.user(Role.CUSTOMER), False),
    }
    for caller, (user, manages) in callers.items():
        # Then the pure check, the 403 and the 404 (for the stream) agree
        assert access.may_manage_farm(user, farm.owner_id) is manages, caller
        async with factory.db.transaction() as session:
            if manages:
                access.ensure_manages_farm(user, farm.owner_id)
                await access.ensure_manages_farm_id(session, user, farm.id)
            else:
                with pytest.raises(NotFarmOwner):
                    access.ensure_manages_farm(user, farm.owner_id)
                with pytest.raises(FarmNotFound):
                    await access.ensure_manages_farm_id(session, user, farm.id)
            with pytest.raises(FarmNotFound):
                await access.ensure_manages_farm_id(session, user, "no-such-farm")
            # And the farms each manages: all for an admin, the owned ones for a farmer
            managed = await access.managed_farm_ids(session, user)
            if caller == "admin":
                assert managed is None
            elif caller == "farmer of this farm":
                assert managed == frozenset({farm.id})
            else:
                assert managed is not None
                assert farm.id not in managed and other_farm.id not in managed
