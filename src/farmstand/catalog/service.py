"""Farm and product use cases."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from farmstand.accounts.models import User
from farmstand.accounts.roles import Role
from farmstand.catalog.models import Farm, Product
from farmstand.catalog.schemas import FarmIn, ProductIn, ProductPatch
from farmstand.errors import Forbidden, NotFound, Unprocessable


class FarmNotFound(NotFound):
    message = "Farm not found."


class ProductNotFound(NotFound):
    message = "Product not found."


async def create_farm(session: AsyncSession, owner: User, data: FarmIn) -> Farm:
    farm = Farm(
        owner_id=owner.id,
        name=data.name,
        pickup_location=data.pickup_location or None,
        pickup_instructions=data.pickup_instructions or None,
        timezone=data.timezone,
    )
    session.add(farm)
    await session.flush()
    return farm


async def get_farm(session: AsyncSession, farm_id: str) -> Farm:
    farm = await session.get(Farm, farm_id)
    if farm is None:
        raise FarmNotFound()
    return farm


async def list_farms(session: AsyncSession, *, owner_id: str | None = None) -> list[Farm]:
    query = select(Farm).order_by(Farm.name, Farm.id)
    if owner_id is not None:
        query = query.where(Farm.owner_id == owner_id)
    return list((await session.scalars(query)).all())


def ensure_manages(farm: Farm, user: User) -> None:
    """Only the farm's owner (or an admin) manages its catalogue and orders."""
    if user.role is Role.ADMIN or (user.role is Role.FARMER and farm.owner_id == user.id):
        return
    raise Forbidden("Only the farm's owner can do that.")


async def owned_farm_ids(session: AsyncSession, user: User) -> list[str]:
    return list((await session.scalars(select(Farm.id).where(Farm.owner_id == user.id))).all())


async def create_product(
    session: AsyncSession, user: User, farm_id: str, data: ProductIn
) -> Product:
    farm = await get_farm(session, farm_id)
    ensure_manages(farm, user)
    product = Product(
        farm_id=farm.id, name=data.name, unit=data.unit, price=data.price, stock=data.stock
    )
    session.add(product)
    await session.flush()
    return product


async def update_product(
    session: AsyncSession, user: User, farm_id: str, product_id: str, data: ProductPatch
) -> Product:
    farm = await get_farm(session, farm_id)
    ensure_manages(farm, user)
    product = await session.get(Product, product_id, with_for_update=True)
    if product is None or product.farm_id != farm.id:
        raise ProductNotFound()
    changes = data.model_dump(exclude_unset=True)
    if any(value is None for value in changes.values()):
        raise Unprocessable(
            "Product fields cannot be cleared.",
            details=[
                {"field": k, "message": "may not be null"} for k, v in changes.items() if v is None
            ],
        )
    for key, value in changes.items():
        setattr(product, key, value)
    await session.flush()
    return product


async def list_products(session: AsyncSession, farm_id: str) -> list[Product]:
    farm = await get_farm(session, farm_id)
    query = select(Product).where(Product.farm_id == farm.id).order_by(Product.name, Product.id)
    return list((await session.scalars(query)).all())
