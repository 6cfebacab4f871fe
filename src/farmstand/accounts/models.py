"""Users, their sign-in sessions, sign-in and request counters, pending registrations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Enum, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from farmstand.accounts.roles import Role
from farmstand.db import Base, UTCDateTime, new_id, utcnow


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(
        Enum(Role, native_enum=False, length=16, validate_strings=True)
    )
    phone: Mapped[str | None] = mapped_column(String(32))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    password_hash: Mapped[str] = mapped_column(String(255))
    # Notification settings: SMS and push wait out the quiet hours (HH:MM, the user's zone).
    quiet_hours_start: Mapped[str | None] = mapped_column(String(5))
    quiet_hours_end: Mapped[str | None] = mapped_column(String(5))
    email_unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # When the owner proved the email is theirs (accounts made by an operator: at creation).
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # An admin disabled the account: it cannot sign in and its sessions were revoked.
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Signs this user's email unsubscribe links with their address: replacing it (on use, on
    # a change of notification settings) revokes every link sent so far.
    unsubscribe_key: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class AuthSession(Base):
    """A signed-in session; the token carries its id, signed, so logout can revoke it."""

    __tablename__ = "auth_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    user_agent: Mapped[str | None] = mapped_column(String(300))
    address: Mapped[str | None] = mapped_column(String(64))


class LoginThrottle(Base):
    """Sign-in attempts counted per key (``pair:<email>|<address>`` or ``address:<ip>``).

    Every attempt is counted before its password is checked (``service._admit``); past the
    free ones, each admitted attempt closes the key until ``blocked_until``, a delay that
    doubles with every further attempt, capped. ``admitted`` tells the last attempt whether
    it got through (set in the same upsert that counted it, so parallel attempts are counted
    one by one)."""

    __tablename__ = "login_throttles"
    __table_args__ = (Index("ix_login_throttles_window_start", "window_start"),)

    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime())
    blocked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    admitted: Mapped[bool] = mapped_column(Boolean, default=True)


class RateCounter(Base):
    """Requests counted per key in a fixed window (registration, verification emails,
    orders): one atomic upsert per request, shared by every process and host."""

    __tablename__ = "rate_counters"
    __table_args__ = (Index("ix_rate_counters_window_start", "window_start"),)

    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    hits: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime())


class PendingRegistration(Base):
    """A registration waiting for its email to be verified: the account is created from it
    when the link is used. The link's token is never stored, only its SHA-256."""

    __tablename__ = "pending_registrations"
    __table_args__ = (Index("ix_pending_registrations_expires_at", "expires_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(320), index=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(
        Enum(Role, native_enum=False, length=16, validate_strings=True)
    )
    phone: Mapped[str | None] = mapped_column(String(32))
    password_hash: Mapped[str] = mapped_column(String(255))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
