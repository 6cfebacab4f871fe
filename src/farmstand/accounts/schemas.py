"""Account request and reply shapes."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, EmailStr, Field, StringConstraints

from farmstand.accounts.roles import Role
from farmstand.schemas import CamelInput, CamelModel, TimeZone

E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def _e164(value: str | None) -> str | None:
    if value is None:
        return None
    compact = re.sub(r"[\s().-]", "", value)
    if not E164.match(compact):
        raise ValueError("must be an international number in E.164 form, such as +14155550123")
    return compact


def _lower_email(value: str) -> str:
    return value.strip().lower()


Email = Annotated[EmailStr, Field(max_length=320), AfterValidator(_lower_email)]
Phone = Annotated[str | None, Field(default=None, max_length=32), AfterValidator(_e164)]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be only spaces")
    return value


# Passwords are taken exactly as typed: no stripping (unlike every other text field).
Password = Annotated[
    str,
    StringConstraints(strip_whitespace=False, min_length=10, max_length=256),
    AfterValidator(_not_blank),
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class RegisterIn(CamelInput):
    email: Email
    password: Password
    name: Name
    role: Literal[Role.CUSTOMER, Role.FARMER] = Field(
        description="CUSTOMER or FARMER; admins are created with the CLI."
    )
    phone: Phone = None


class LoginIn(CamelInput):
    email: Annotated[str, Field(min_length=1, max_length=320)]
    password: Annotated[
        str, StringConstraints(strip_whitespace=False, min_length=1, max_length=256)
    ]


class UserOut(CamelModel):
    id: str
    email: str
    name: str
    role: Role
    phone: str | None
    timezone: str
    created_at: datetime


class LoginOut(CamelModel):
    token: str = Field(description="Send as 'Authorization: Bearer <token>'.")
    expires_at: datetime
    user: UserOut


class MessageOut(CamelModel):
    message: str


class NewUser(CamelInput):
    """A user created by an operator (CLI, demo): any role."""

    email: Email
    password: Password
    name: Name
    role: Role
    phone: Phone = None


class ProfilePatch(CamelInput):
    """Change your own name, phone (E.164) or time zone; null clears the phone."""

    name: Name | None = None
    phone: Phone = None
    timezone: TimeZone | None = None
