"""Farm and product shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from farmstand.schemas import CamelInput, CamelModel, MoneyIn, MoneyOut, TimeZone

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
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
