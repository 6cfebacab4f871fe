"""Pages: the farms to shop from, and a farm's shop, where a customer places an order; the
frame of the farm side's pages (``/manage/{farm_id}/...``): which farm, and the switch between
the farms its user manages."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn

from fastapi import Path, Request, Response
from pydantic import ValidationError

from farmstand.accounts.principal import Principal
from farmstand.accounts.roles import Role
from farmstand.catalog import access, service
from farmstand.catalog.errors import FarmNotFound
from farmstand.catalog.models import Farm, Product
from farmstand.deps import ClientAddress, RuntimeDep, SessionDep, order_allowance
from farmstand.errors import FarmstandError
from farmstand.orders import service as orders
from farmstand.orders.errors import ItemQuantityLimitExceeded, OutOfStock
from farmstand.orders.schemas import OrderIn
from farmstand.orders.states import FulfillmentType
from farmstand.orders.views import map_link
from farmstand.web.pages import (
    CsrfChecked,
    PageUser,
    ShowPage,
    field_errors,
    form_of,
    page_router,
    redirect,
    render,
)

router = page_router()

FarmId = Annotated[str, Path(max_length=64)]
ADDRESS_FIELDS = ("line1", "line2", "city", "postalCode")
QUANTITY_PREFIX = "qty-"
REQUIRED_ADDRESS = {
    "line1": "Enter the street address for the delivery.",
    "city": "Enter the town or city.",
    "postalCode": "Enter the postal code.",
}


@router.get("/farms")
async def farms_page(request: Request, user: PageUser, session: SessionDep) -> Response:
    farms = await service.list_farms(session)
    return render(request, "farms.html", {"farms": farms})


def _shop(
    request: Request,
    user: Principal,
    farm: Farm,
    products: list[Product],
    *,
    values: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "shop.html",
        {
            "farm": farm,
            "products": products,
            "can_order": user.role is Role.CUSTOMER,
            "map_link": map_link(farm.pickup_location),
            "values": values or {"fulfillment": FulfillmentType.PICKUP.value},
            "errors": errors or {},
            "qty_prefix": QUANTITY_PREFIX,
        },
        status_code=status_code,
    )


@router.get("/farms/{farm_id}")
async def shop_page(
    request: Request, farm_id: FarmId, user: PageUser, session: SessionDep
) -> Response:
    farm = await service.get_farm(session, farm_id)
    return _shop(request, user, farm, await service.list_products(session, farm.id))


def _order_from(farm_id: str, form: Mapping[str, str]) -> tuple[OrderIn | None, dict[str, str]]:
    """The order the form asks for, or the errors to show next to its fields."""
    errors: dict[str, str] = {}
    items = []
    for key, raw in form.items():
        if not key.startswith(QUANTITY_PREFIX) or not raw.strip():
            continue
        product_id = key.removeprefix(QUANTITY_PREFIX)
        try:
            quantity = int(raw)
        except ValueError:
            errors[key] = "Enter a whole number."
            continue
        if quantity < 0:
            errors[key] = "Enter 0 or more."
        elif quantity > 0:
            items.append({"productId": product_id, "quantity": quantity})
    if errors:
        return None, errors
    if not items:
        return None, {"items": "Choose how many of at least one product you want."}
    fulfillment = form.get("fulfillment", FulfillmentType.PICKUP.value)
    data: dict[str, Any] = {"farmId": farm_id, "items": items, "fulfillmentType": fulfillment}
    if fulfillment != FulfillmentType.PICKUP.value:
        address = {field: form.get(field, "").strip() for field in ADDRESS_FIELDS}
        missing = {
            field: message for field, message in REQUIRED_ADDRESS.items() if not address[field]
        }
        if missing:
            return None, missing
        data["deliveryAddress"] = {field: value for field, value in address.items() if value}
        data["deliveryNotes"] = form.get("deliveryNotes", "").strip() or None
    try:
        return OrderIn.model_validate(data), {}
    except ValidationError as exc:
        mapped: dict[str, str] = {}
        for field, message in field_errors(exc).items():
            if field.startswith("deliveryAddress."):
                mapped.setdefault(field.removeprefix("deliveryAddress.").split(".")[0], message)
            elif field in ("fulfillmentType", "deliveryNotes"):
                mapped.setdefault(field, message)
            else:  # the items, or the order as a whole
                mapped.setdefault("items", message)
        return None, mapped


def _errors_of(exc: FarmstandError, products: list[Product]) -> dict[str, str]:
    """A refusal, next to the product it is about (stock, per-order limit) or over the form."""
    by_id = {product.id: product for product in products}
    details = exc.details if isinstance(exc.details, list) else []
    if isinstance(exc, OutOfStock):
        errors = {}
        for detail in details:
            product = by_id.get(str(detail.get("productId")))
            if product is not None:
                left = f"only {product.stock} left" if product.stock else "sold out"
                errors[QUANTITY_PREFIX + product.id] = f"Not enough in stock: {left}."
        errors["items"] = "Some items ran out while you were choosing; change the amounts below."
        return errors
    if isinstance(exc, ItemQuantityLimitExceeded):
        errors = {QUANTITY_PREFIX + str(d.get("productId")): exc.message for d in details}
        errors["items"] = exc.message
        return errors
    return {"items": exc.message}


@router.post("/farms/{farm_id}/orders", dependencies=[CsrfChecked])
async def place_order(
    request: Request,
    farm_id: FarmId,
    user: PageUser,
    session: SessionDep,
    runtime: RuntimeDep,
    address: ClientAddress,
) -> Response:
    form = await form_of(request)
    data, errors = _order_from(farm_id, form)
    if data is None:
        await _refuse(request, user, farm_id, runtime, form, errors, 422)
    assert data is not None
    try:
        if user.role is not Role.CUSTOMER:
            await _refuse(
                request, user, farm_id, runtime, form, {"items": "Only a customer can order."}, 403
            )
        await order_allowance(user, session, runtime, address)
        order = await orders.place_order(session, user, data)
    except FarmstandError as exc:
        await _refuse(request, user, farm_id, runtime, form, exc, exc.status_code)
    return redirect(f"/orders/{order.id}?notice=placed")


async def _refuse(
    request: Request,
    user: Principal,
    farm_id: str,
    runtime: RuntimeDep,
    form: Mapping[str, str],
    errors: Mapping[str, str] | FarmstandError,
    status_code: int,
) -> NoReturn:
    """The shop again, as the customer filled it in, each refusal next to what caused it, with
    the stock as it is now (read after the attempt was rolled back)."""
    async with runtime.db.transaction(write=False) as session:
        farm = await service.get_farm(session, farm_id)
        products = await service.list_products(session, farm.id)
    if isinstance(errors, FarmstandError):
        errors = _errors_of(errors, products)
    raise ShowPage(
        _shop(request, user, farm, products, values=form, errors=errors, status_code=status_code)
    )


# -- the farm side's frame ----------------------------------------------------------------------


@dataclass(frozen=True)
class FarmSection:
    """What every ``/manage/{farm_id}/...`` page shows around its content (``farm_base.html``):
    the farm, and the farms to switch to (a farmer's own; every farm for an admin)."""

    farm: Farm
    farms: list[Farm]

    def context(self, section: str) -> dict[str, Any]:
        return {"farm": self.farm, "farms": self.farms, "section": section}


async def farm_section(session: SessionDep, user: Principal, farm_id: str) -> FarmSection:
    """The farm ``user`` manages, or 404 (as the API's farm routes: a farm the user does not
    manage is not found here, its shop stays public)."""
    farms = await service.list_farms(session, owner_id=None if user.role is Role.ADMIN else user.id)
    farm = next((farm for farm in farms if farm.id == farm_id), None)
    if farm is None or not access.may_manage_farm(user, farm.owner_id):
        raise FarmNotFound()
    return FarmSection(farm, farms)


@router.get("/manage")
async def manage_page(request: Request, user: PageUser, session: SessionDep) -> Response:
    """The farm side's start: the board of the farmer's only (or first) farm."""
    if user.role is Role.CUSTOMER:
        raise FarmNotFound()
    farms = await service.list_farms(session, owner_id=None if user.role is Role.ADMIN else user.id)
    if not farms:
        return render(request, "manage_none.html", {})
    return redirect(f"/manage/{farms[0].id}")
