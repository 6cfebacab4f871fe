"""Who may manage which farm: one function per question, used by every caller.

Farms are public (any signed-in user may read a farm and its products); managing one (its
products, stock, limits, orders and their streams) is for its owner and for admins. The order
side of the same rules is in ``farmstand.orders.access``.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from farmstand.accounts.principal import Person
from farmstand.accounts.roles import Role
from farmstand.catalog.errors import FarmNotFound, NotFarmOwner
from farmstand.catalog.models import Farm

FARMS = cast(Table, Farm.__table__)


def may_manage_farm(user: Person, farm_owner_id: str) -> bool:
    """Whether ``user`` manages the farm owned by ``farm_owner_id``: an admin, or its owner."""
    return user.role is Role.ADMIN or (user.role is Role.FARMER and farm_owner_id == user.id)


def ensure_manages_farm(user: Person, farm_owner_id: str) -> None:
    """403 unless ``user`` manages the farm (farms are public, so their existence is not
    hidden)."""
    if not may_manage_farm(user, farm_owner_id):
        raise NotFarmOwner()


async def managed_farm_ids(session: AsyncSession, user: Person) -> frozenset[str] | None:
    """The farms ``user`` manages: None for an admin (every farm), the owned ones for a
    farmer, none for a customer. One statement for a farmer, none otherwise."""
    if user.role is Role.ADMIN:
        return None
    if user.role is not Role.FARMER:
        return frozenset()
    rows = await (await session.connection()).scalars(
        select(FARMS.c.id).where(FARMS.c.owner_id == user.id)
    )
    return frozenset(rows)


async def farm_owner(session: AsyncSession, farm_id: str) -> str | None:
    """The farm's owner, or None when there is no such farm (one statement)."""
    owner: str | None = await (await session.connection()).scalar(
        select(FARMS.c.owner_id).where(FARMS.c.id == farm_id)
    )
    return owner


async def ensure_manages_farm_id(session: AsyncSession, user: Person, farm_id: str) -> None:
    """404 unless the farm exists and ``user`` manages it: for what only its managers may
    even ask about (its live stream)."""
    owner = await farm_owner(session, farm_id)
    if owner is None or not may_manage_farm(user, owner):
        raise FarmNotFound()
