"""Farm and product use cases."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from farmstand.accounts import service as accounts
from farmstand.accounts.principal import Person
from farmstand.catalog.access import ensure_manages_farm, may_manage_farm
from farmstand.catalog.errors import FarmNotFound, ProductNotFound, StockChanged
from farmstand.catalog.models import Farm, Product
from farmstand.catalog.schemas import FarmIn, FarmPatch, ProductIn, ProductPatch
from farmstand.db import utcnow
from farmstand.errors import Unprocessable

FARMS_CHANGED = "farms changed"


async def create_farm(session: AsyncSession, owner: Person, data: FarmIn) -> Farm:
    farm = Farm(
        owner_id=owner.id,
        name=data.name,
        pickup_location=data.pickup_location or None,
        pickup_instructions=data.pickup_instructions or None,
        timezone=data.timezone,
        max_open_orders=data.max_open_orders,
        max_item_quantity=data.max_item_quantity,
    )
    session.add(farm)
    await session.flush()
    # The owner's open streams carry their farms' orders: they recompute what they carry.
    # (Any change of a farm's owner must tell both owners the same way.)
    accounts.account_changed(session, owner.id, reason=FARMS_CHANGED)
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


CLEARABLE = frozenset({"pickup_location", "pickup_instructions"})


async def update_farm(session: AsyncSession, user: Person, farm_id: str, data: FarmPatch) -> Farm:
    """Change the farm's details or limits (its owner, or an admin). A lower limit applies to
    the next order placed; orders already open stay as they are."""
    farm = await session.get(Farm, farm_id, with_for_update=True)
    if farm is None:
        raise FarmNotFound()
    ensure_manages_farm(user, farm.owner_id)
    changes = data.model_dump(exclude_unset=True)
    required = [k for k, v in changes.items() if v is None and k not in CLEARABLE]
    if required:
        raise Unprocessable(
            "These farm fields cannot be cleared.",
            details=[{"field": _camel(k), "message": "may not be null"} for k in required],
        )
    for key, value in changes.items():
        setattr(farm, key, (value or None) if key in CLEARABLE else value)
    if changes:
        farm.updated_at = utcnow()
    await session.flush()
    return farm


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


async def create_product(
    session: AsyncSession, user: Person, farm_id: str, data: ProductIn
) -> Product:
    farm = await get_farm(session, farm_id)
    ensure_manages_farm(user, farm.owner_id)
    product = Product(
        farm_id=farm.id,
        name=data.name,
        unit=data.unit,
        price=data.price,
        stock=data.stock,
        on_sale=data.on_sale,
    )
    session.add(product)
    await session.flush()
    return product


async def update_product(
    session: AsyncSession, user: Person, farm_id: str, product_id: str, data: ProductPatch
) -> Product:
    farm = await get_farm(session, farm_id)
    ensure_manages_farm(user, farm.owner_id)
    product = await session.get(Product, product_id, with_for_update=True)
    if product is None or product.farm_id != farm.id:
        raise ProductNotFound()
    changes = data.model_dump(exclude_unset=True)
    expected_stock = changes.pop("expected_stock", None)
    if any(value is None for value in changes.values()):
        raise Unprocessable(
            "Product fields cannot be cleared.",
            details=[
                {"field": _camel(k), "message": "may not be null"}
                for k, v in changes.items()
                if v is None
            ],
        )
    # Orders take stock while the farmer looks at the page: a stock set from what they saw
    # must not silently undo those (checked under the product's row lock).
    if expected_stock is not None and product.stock != expected_stock:
        raise StockChanged(product.stock)
    for key, value in changes.items():
        setattr(product, key, value)
    await session.flush()
    return product


async def list_products(
    session: AsyncSession, farm_id: str, *, viewer: Person | None = None
) -> list[Product]:
    """The farm's products by name: those on sale, and (for ``viewer`` managing the farm)
    those off sale too."""
    farm = await get_farm(session, farm_id)
    query = select(Product).where(Product.farm_id == farm.id).order_by(Product.name, Product.id)
    if viewer is None or not may_manage_farm(viewer, farm.owner_id):
        query = query.where(Product.on_sale.is_(True))
    return list((await session.scalars(query)).all())
