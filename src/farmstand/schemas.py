"""Shared API shapes: camelCase models, the reply envelope, pages, money."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from enum import Enum
from functools import cache
from typing import Annotated, Any, Generic, Literal, Protocol, TypeVar
from zoneinfo import available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    field_validator,
)
from pydantic.alias_generators import to_camel
from sqlalchemy import Select, tuple_
from starlette.responses import Response

from farmstand.errors import Unprocessable

T = TypeVar("T")


class CamelModel(BaseModel):
    """Replies: camelCase on the wire, built from ORM objects."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


class CamelInput(BaseModel):
    """Request bodies: camelCase, unknown fields refused (a typo must not pass silently)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        str_strip_whitespace=True,
    )

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul_characters(cls, value: Any) -> Any:
        # PostgreSQL cannot store NUL in text (SQLite would, silently): refuse it on input.
        texts = value if isinstance(value, list | tuple) else (value,)
        if any(isinstance(text, str) and "\x00" in text for text in texts):
            raise ValueError("must not contain NUL characters")
        return value


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _timezone(value: str) -> str:
    if value not in _zones():
        raise ValueError("must be an IANA time zone such as Europe/Paris or America/Chicago")
    return value


TimeZone = Annotated[str, Field(max_length=64), AfterValidator(_timezone)]

MoneyOut = Annotated[
    Decimal,
    PlainSerializer(lambda value: f"{value:.2f}", return_type=str, when_used="always"),
]


class Envelope(BaseModel, Generic[T]):
    success: Literal[True] = True
    data: T


class ErrorEnvelope(BaseModel):
    success: Literal[False] = False
    error: str
    details: Any = None


class Page(CamelModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        default=None, description="Pass as ?cursor= to get the next page; null on the last page."
    )


def iso_z(value: datetime | None) -> str | None:
    """A UTC time as the API writes it everywhere: ISO 8601 ending in Z."""
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def ok(data: T) -> Envelope[T]:
    return Envelope[T](data=data)


class JSONBody(Response):
    media_type = "application/json"


_LISTS: dict[type[Any], TypeAdapter[Any]] = {}


def ok_json(data: BaseModel | list[Any], status_code: int = 200) -> Response:
    """The success envelope, serialized once by pydantic (hot routes; their ``response_model``
    keeps the documented shape). FastAPI would validate the returned model again first."""
    if isinstance(data, BaseModel):
        body = data.model_dump_json(by_alias=True)
    else:
        kind = type(data[0]) if data else BaseModel
        adapter = _LISTS.get(kind)
        if adapter is None:
            adapter = _LISTS[kind] = TypeAdapter(list[kind])  # type: ignore[valid-type]
        body = adapter.dump_json(data, by_alias=True).decode()
    return JSONBody(f'{{"success":true,"data":{body}}}', status_code=status_code)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorEnvelope, "description": description}
    for code, description in {
        400: "Malformed request",
        401: "Not signed in",
        403: "Not allowed for this role or owner",
        404: "Not found, or not yours to see",
        409: "Conflicts with the current state, or lost a race",
        422: "Invalid body or parameters",
        429: "Too many attempts",
        503: "Busy: nothing was done; try again after Retry-After seconds",
    }.items()
}


def encode_cursor(created_at: datetime, row_id: str) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, row_id = base64.urlsafe_b64decode(padded).decode().split("|", 1)
        when = datetime.fromisoformat(created)
        if when.tzinfo is None or not row_id:
            raise ValueError
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Unprocessable(
            "The cursor is invalid.", details=[{"field": "cursor", "message": "Invalid cursor"}]
        ) from None
    return when, row_id


class Dated(Protocol):
    @property
    def created_at(self) -> datetime: ...

    @property
    def id(self) -> str: ...


D = TypeVar("D", bound=Dated)


def split_page(rows: Sequence[D], limit: int) -> tuple[Sequence[D], str | None]:
    """Given up to ``limit + 1`` rows newest first: the page, and the cursor to the next one."""
    page = rows[:limit]
    more = len(rows) > limit
    return page, encode_cursor(page[-1].created_at, page[-1].id) if more else None


def newest_first(
    query: Select[Any], model: Any, before: tuple[datetime, str] | None, limit: int
) -> Select[Any]:
    """Order by (created_at, id) descending, starting below a decoded cursor."""
    if before is not None:
        query = query.where(tuple_(model.created_at, model.id) < tuple_(*before))
    return query.order_by(model.created_at.desc(), model.id.desc()).limit(limit)


E = TypeVar("E", bound=Enum)


def parse_enum_list(raw: str | None, enum: type[E], field: str) -> list[E]:
    """A comma-separated query value (``?status=A,B``) as enum members, or a 422 naming it."""
    if not raw:
        return []
    values = []
    for part in raw.split(","):
        name = part.strip().upper()
        if name not in enum.__members__:
            raise Unprocessable(
                f"Unknown {field} {part.strip()!r}.",
                details=[{"field": field, "message": f"one of {', '.join(enum.__members__)}"}],
            )
        values.append(enum[name])
    return values
