"""Routes under /api/farms."""

from __future__ import annotations

from fastapi import APIRouter, status

from farmstand.catalog import service
from farmstand.catalog.schemas import (
    FarmIn,
    FarmOut,
    FarmPatch,
    ProductIn,
    ProductOut,
    ProductPatch,
)
from farmstand.deps import CurrentUser, FarmerUser, SessionDep, StaffUser
from farmstand.schemas import ERROR_RESPONSES, Envelope, ok

router = APIRouter(prefix="/api/farms", tags=["farms"], responses=ERROR_RESPONSES)


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create a farm (farmer)")
async def create_farm(body: FarmIn, user: FarmerUser, session: SessionDep) -> Envelope[FarmOut]:
    farm = await service.create_farm(session, user, body)
    return ok(FarmOut.model_validate(farm))


@router.get("", summary="Farms: all of them, or ?mine=true for the farms you own")
async def list_farms(
    session: SessionDep, user: CurrentUser, mine: bool = False
) -> Envelope[list[FarmOut]]:
    farms = await service.list_farms(session, owner_id=user.id if mine else None)
    return ok([FarmOut.model_validate(farm) for farm in farms])


@router.get("/{farm_id}", summary="A farm")
async def get_farm(farm_id: str, session: SessionDep, _user: CurrentUser) -> Envelope[FarmOut]:
    return ok(FarmOut.model_validate(await service.get_farm(session, farm_id)))


@router.patch(
    "/{farm_id}", summary="Change a farm's details or per-customer limits (its owner, or an admin)"
)
async def update_farm(
    farm_id: str, body: FarmPatch, user: StaffUser, session: SessionDep
) -> Envelope[FarmOut]:
    farm = await service.update_farm(session, user, farm_id, body)
    return ok(FarmOut.model_validate(farm))


@router.post(
    "/{farm_id}/products",
    status_code=status.HTTP_201_CREATED,
    summary="Add a product (the farm's owner)",
)
async def create_product(
    farm_id: str, body: ProductIn, user: StaffUser, session: SessionDep
) -> Envelope[ProductOut]:
    product = await service.create_product(session, user, farm_id, body)
    return ok(ProductOut.model_validate(product))


@router.patch("/{farm_id}/products/{product_id}", summary="Change a product or its stock")
async def update_product(
    farm_id: str, product_id: str, body: ProductPatch, user: StaffUser, session: SessionDep
) -> Envelope[ProductOut]:
    product = await service.update_product(session, user, farm_id, product_id, body)
    return ok(ProductOut.model_validate(product))


@router.get(
    "/{farm_id}/products",
    summary="A farm's products on sale (and, for its owner or an admin, those off sale)",
)
async def list_products(
    farm_id: str, session: SessionDep, user: CurrentUser
) -> Envelope[list[ProductOut]]:
    products = await service.list_products(session, farm_id, viewer=user)
    return ok([ProductOut.model_validate(p) for p in products])
