"""Account request and reply shapes."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    EmailStr,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from farmstand.accounts import password_policy
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


def _acceptable(value: str) -> str:
    found = password_policy.problems(value)
    if found:
        raise ValueError("; ".join(found))
    return value


def _not_personal(value: str, info: ValidationInfo) -> str:
    """The password must not contain the account's email or name (validated before it)."""
    found = password_policy.problems(
        value, email=info.data.get("email"), name=info.data.get("name")
    )
    if found:
        raise ValueError("; ".join(found))
    return value


# Passwords are taken exactly as typed: no stripping (unlike every other text field).
Password = Annotated[
    str,
    StringConstraints(
        strip_whitespace=False,
        min_length=password_policy.MIN_LENGTH,
        max_length=password_policy.MAX_LENGTH,
    ),
    AfterValidator(_not_blank),
    AfterValidator(_acceptable),
    Field(
        description=f"{password_policy.MIN_LENGTH} to {password_policy.MAX_LENGTH} characters; "
        "not a common password, and not containing your email or name."
    ),
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
# What sign-in takes: any password (the policy applies when one is chosen).
GivenPassword = Annotated[
    str, StringConstraints(strip_whitespace=False, min_length=1, max_length=256)
]


class RegisterIn(CamelInput):
    email: Email
    name: Name
    role: Literal[Role.CUSTOMER, Role.FARMER] = Field(
        description="CUSTOMER or FARMER; admins are created with the CLI."
    )
    phone: Phone = None
    password: Password  # last: checked against the email and name above

    _personal = field_validator("password")(_not_personal)


class LoginIn(CamelInput):
    email: Annotated[str, Field(min_length=1, max_length=320)]
    password: GivenPassword


class ResendIn(CamelInput):
    email: Email


class PasswordChangeIn(CamelInput):
    current_password: GivenPassword
    new_password: Password


class UserOut(CamelModel):
    id: str
    email: str
    name: str
    role: Role
    phone: str | None
    timezone: str
    created_at: datetime


class AdminUserOut(UserOut):
    email_verified_at: datetime | None
    disabled_at: datetime | None


class LoginOut(CamelModel):
    token: str = Field(description="Send as 'Authorization: Bearer <token>'.")
    expires_at: datetime
    user: UserOut


class MessageOut(CamelModel):
    message: str


class NewUser(CamelInput):
    """A user created by an operator (CLI, demo): any role."""

    email: Email
    name: Name
    role: Role
    phone: Phone = None
    password: Password  # last: checked against the email and name above

    _personal = field_validator("password")(_not_personal)


class ProfilePatch(CamelInput):
    """Change your own name, phone (E.164) or time zone; null clears the phone."""

    name: Name | None = None
    phone: Phone = None
    timezone: TimeZone | None = None
