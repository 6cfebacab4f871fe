"""Who is making a request: a frozen snapshot of the signed-in user, cheap to cache.

Use cases that only need to know who acts (id, role, name) take a ``Person``: the cached
``Principal`` of a request and a ``User`` row both are one. A use case that changes the user
loads the row itself, so a cached snapshot is never written through by accident.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from farmstand.accounts.models import AuthSession, User
from farmstand.accounts.roles import Role


class Person(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def role(self) -> Role: ...

    @property
    def name(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Principal:
    """The signed-in user as their session saw them (no password hash)."""

    id: str
    email: str
    name: str
    role: Role
    phone: str | None
    timezone: str
    quiet_hours_start: str | None
    quiet_hours_end: str | None
    email_unsubscribed_at: datetime | None
    email_verified: bool
    created_at: datetime
    session_id: str
    session_expires_at: datetime

    @classmethod
    def of(cls, user: User, auth: AuthSession) -> Principal:
        return cls(
            id=user.id,
            email=user.email,
            name=user.name,
            role=user.role,
            phone=user.phone,
            timezone=user.timezone,
            quiet_hours_start=user.quiet_hours_start,
            quiet_hours_end=user.quiet_hours_end,
            email_unsubscribed_at=user.email_unsubscribed_at,
            email_verified=user.email_verified_at is not None,
            created_at=user.created_at,
            session_id=auth.id,
            session_expires_at=auth.expires_at,
        )
