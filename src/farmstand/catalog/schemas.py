"""Farm and product shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from zoneinfo import available_timezones

from pydantic import AfterValidator, Field, StringConstraints

from farmstand.schemas import CamelInput, CamelModel, MoneyIn, MoneyOut


def _timezone(value: str) -> str:
    if value not in _zones():
        raise ValueError("must be an IANA time zone such as Europe/Paris or America/Chicago")
    return value


_ZONES: set[str] = set()


def _zones() -> set[str]:
    if not _ZONES:
        _ZONES.update(available_timezones())
    return _ZONES


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
TimeZone = Annotated[str, Field(max_length=64), AfterValidator(_timezone)]
Location = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]
Instructions = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]
Unit = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]
Stock = Annotated[int, Field(ge=0, le=1_000_000)]


class FarmIn(CamelInput):
    name: Name
    pickup_location: Location | None = None
    pickup_instructions: Instructions | None = None
    timezone: TimeZone = "UTC"


class FarmOut(CamelModel):
    id: str
    owner_id: str
    name: str
    pickup_location: str | None
    pickup_instructions: str | None
    timezone: str
    created_at: datetime


class ProductIn(CamelInput):
    name: Name
    unit: Unit
    price: MoneyIn
    stock: Stock


class ProductPatch(CamelInput):
    name: Name | None = None
    unit: Unit | None = None
    price: MoneyIn | None = None
    stock: Stock | None = None


class ProductOut(CamelModel):
    id: str
    farm_id: str
    name: str
    unit: str
    price: MoneyOut
    stock: int
    created_at: datetime
