"""Farm-side pages of the catalogue (``/manage/{farm_id}/...``): the farm's products (add one,
change its price and stock, take it off sale) and the farm's settings (name, pickup place,
time zone, per-customer limits). Plain form POSTs answered with a 303; a refusal shows the
page again with the error next to its field (422), or next to the stock when orders changed
it meanwhile (409)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Annotated, Any, NoReturn, TypeVar
from zoneinfo import available_timezones

from fastapi import Path, Query, Request, Response
from pydantic import BaseModel, ValidationError

from farmstand.accounts.principal import Principal
from farmstand.catalog import service
from farmstand.catalog.errors import StockChanged
from farmstand.catalog.models import Farm, Product
from farmstand.catalog.schemas import FarmPatch, ProductIn, ProductPatch
from farmstand.catalog.views import FarmId, FarmSection, farm_section
from farmstand.deps import SessionDep
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

M = TypeVar("M", bound=BaseModel)

ProductId = Annotated[str, Path(max_length=64)]
Notice = Annotated[str | None, Query(max_length=20)]

# What to do about a bad value, said the same way whatever pydantic's reason was.
PRODUCT_HINTS = {
    "name": "Enter the product's name (up to 200 characters).",
    "unit": "Enter the unit it is sold by, like lb, bunch or dozen (up to 50 characters).",
    "price": "Enter a price above 0 with at most 2 decimals, like 3.50.",
    "stock": "Enter how many you have: a whole number, 0 or more.",
}
SETTINGS_HINTS = {
    "name": "Enter the farm's name (up to 200 characters).",
    "pickupLocation": "Keep the pickup place under 500 characters.",
    "pickupInstructions": "Keep the instructions under 2,000 characters.",
    "timezone": "Choose the farm's time zone from the list.",
    "maxOpenOrders": "Enter a whole number from 1 to 1,000.",
    "maxItemQuantity": "Enter a whole number from 1 to 10,000.",
}
SETTINGS_FIELDS = tuple(SETTINGS_HINTS)
PRODUCT_NOTICES = {
    "added": "{name} is added and on sale.",
    "saved": "{name} is saved.",
    "off": "{name} is off sale: customers no longer see it.",
    "on": "{name} is back on sale.",
}


@cache
def time_zones() -> list[str]:
    return sorted(available_timezones())


def _validated(
    model: type[M], data: Mapping[str, Any], hints: Mapping[str, str], prefix: str = ""
) -> tuple[M | None, dict[str, str]]:
    """The form as ``model``, or the errors next to its fields (keys ``prefix`` + field)."""
    try:
        return model.model_validate(data), {}
    except ValidationError as exc:
        errors = {}
        for field, message in field_errors(exc).items():
            errors[prefix + field] = hints.get(field, message)
        return None, errors


# -- products -----------------------------------------------------------------------------------


def _products_page(
    request: Request,
    section: FarmSection,
    products: list[Product],
    *,
    notice: str | None = None,
    values: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "farm_products.html",
        {
            **section.context("products"),
            "products": products,
            "notice": notice,
            "values": values or {},
            "errors": errors or {},
        },
        status_code=status_code,
    )


@router.get("/manage/{farm_id}/products")
async def products_page(
    request: Request,
    farm_id: FarmId,
    user: PageUser,
    session: SessionDep,
    notice: Notice = None,
    product: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    section = await farm_section(session, user, farm_id)
    products = await service.list_products(session, farm_id, viewer=user)
    named = next((p for p in products if p.id == product), None)
    template = PRODUCT_NOTICES.get(notice or "")
    text = template.format(name=named.name) if template and named else None
    return _products_page(request, section, products, notice=text)


async def _refuse_product(
    request: Request,
    session: SessionDep,
    user: Principal,
    section: FarmSection,
    values: Mapping[str, str],
    errors: Mapping[str, str],
    status_code: int,
) -> NoReturn:
    """The products page again with the farmer's values and each error by its field; the
    request's transaction is rolled back (nothing written)."""
    products = await service.list_products(session, section.farm.id, viewer=user)
    raise ShowPage(
        _products_page(
            request, section, products, values=values, errors=errors, status_code=status_code
        )
    )


@router.post("/manage/{farm_id}/products", dependencies=[CsrfChecked])
async def add_product(
    request: Request, farm_id: FarmId, user: PageUser, session: SessionDep
) -> Response:
    section = await farm_section(session, user, farm_id)
    form = await form_of(request)
    fields = {name: form.get(f"new-{name}", "").strip() for name in PRODUCT_HINTS}
    data, errors = _validated(ProductIn, fields, PRODUCT_HINTS, prefix="new-")
    if data is None:
        await _refuse_product(request, session, user, section, form, errors, 422)
    assert data is not None
    created = await service.create_product(session, user, farm_id, data)
    return redirect(f"/manage/{farm_id}/products?notice=added&product={created.id}")


@router.post("/manage/{farm_id}/products/{product_id}", dependencies=[CsrfChecked])
async def change_product(
    request: Request, farm_id: FarmId, product_id: ProductId, user: PageUser, session: SessionDep
) -> Response:
    """Price and stock. The stock is sent only when the farmer changed it, with the stock the
    page showed as the expected one: orders that took some meanwhile are not undone."""
    section = await farm_section(session, user, farm_id)
    form = await form_of(request)
    prefix = f"{product_id}-"
    price, stock = form.get(prefix + "price", "").strip(), form.get(prefix + "stock", "").strip()
    shown = form.get(prefix + "shown-stock", "").strip()
    fields: dict[str, Any] = {"price": price}
    if stock != shown or not shown.isdigit():
        fields["stock"] = stock
        if shown.isdigit():
            fields["expectedStock"] = shown
    data, errors = _validated(ProductPatch, fields, PRODUCT_HINTS, prefix=prefix)
    if data is None:
        await _refuse_product(request, session, user, section, form, errors, 422)
    assert data is not None
    try:
        await service.update_product(session, user, farm_id, product_id, data)
    except StockChanged as exc:
        errors = {prefix + "stock": f"{exc.message} Check it, then save again."}
        values = {**form, prefix + "shown-stock": str(exc.stock)}
        await _refuse_product(request, session, user, section, values, errors, 409)
    return redirect(f"/manage/{farm_id}/products?notice=saved&product={product_id}")


@router.post("/manage/{farm_id}/products/{product_id}/sale", dependencies=[CsrfChecked])
async def change_sale(
    request: Request, farm_id: FarmId, product_id: ProductId, user: PageUser, session: SessionDep
) -> Response:
    await farm_section(session, user, farm_id)
    on_sale = (await form_of(request)).get("on_sale") == "true"
    await service.update_product(session, user, farm_id, product_id, ProductPatch(on_sale=on_sale))
    notice = "on" if on_sale else "off"
    return redirect(f"/manage/{farm_id}/products?notice={notice}&product={product_id}")


# -- settings -----------------------------------------------------------------------------------


def _settings_page(
    request: Request,
    section: FarmSection,
    values: Mapping[str, Any],
    *,
    notice: str | None = None,
    errors: Mapping[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "farm_settings.html",
        {
            **section.context("settings"),
            "values": values,
            "errors": errors or {},
            "notice": notice,
            "time_zones": time_zones(),
        },
        status_code=status_code,
    )


def _values_of(farm: Farm) -> dict[str, Any]:
    return {
        "name": farm.name,
        "pickupLocation": farm.pickup_location or "",
        "pickupInstructions": farm.pickup_instructions or "",
        "timezone": farm.timezone,
        "maxOpenOrders": farm.max_open_orders,
        "maxItemQuantity": farm.max_item_quantity,
    }


@router.get("/manage/{farm_id}/settings")
async def settings_page(
    request: Request, farm_id: FarmId, user: PageUser, session: SessionDep, notice: Notice = None
) -> Response:
    section = await farm_section(session, user, farm_id)
    text = "Saved." if notice == "saved" else None
    return _settings_page(request, section, _values_of(section.farm), notice=text)


@router.post("/manage/{farm_id}/settings", dependencies=[CsrfChecked])
async def save_settings(
    request: Request, farm_id: FarmId, user: PageUser, session: SessionDep
) -> Response:
    section = await farm_section(session, user, farm_id)
    form = await form_of(request)
    fields = {name: form.get(name, "").strip() for name in SETTINGS_FIELDS}
    data, errors = _validated(FarmPatch, fields, SETTINGS_HINTS)
    if data is None:
        raise ShowPage(_settings_page(request, section, fields, errors=errors, status_code=422))
    await service.update_farm(session, user, farm_id, data)
    return redirect(f"/manage/{farm_id}/settings?notice=saved")
