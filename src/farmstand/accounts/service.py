"""Account use cases: register, sign in and out, authenticate a request, create users."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from farmstand.accounts.models import AuthSession, LoginThrottle, User
from farmstand.accounts.passwords import Passwords
from farmstand.accounts.roles import Role
from farmstand.accounts.tokens import TokenSigner
from farmstand.config import Settings
from farmstand.db import Database, utcnow
from farmstand.errors import Conflict, TooManyRequests, Unauthenticated

INVALID_LOGIN = "Invalid email or password."


@dataclass(frozen=True)
class ThrottlePolicy:
    account_limit: int
    address_limit: int
    window: timedelta
    lockout: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> ThrottlePolicy:
        return cls(
            account_limit=settings.login_max_failures_per_account,
            address_limit=settings.login_max_failures_per_address,
            window=timedelta(seconds=settings.login_failure_window_seconds),
            lockout=timedelta(seconds=settings.login_lockout_seconds),
        )


@dataclass(frozen=True)
class SignedIn:
    token: str
    session: AuthSession
    user: User


async def register(
    session: AsyncSession,
    passwords: Passwords,
    *,
    email: str,
    password: str,
    name: str,
    role: Role,
    phone: str | None,
) -> None:
    """Create the account unless the email is taken; the caller can't tell which happened."""
    # Hash before looking: a taken email must cost the same time as a new one.
    password_hash = await passwords.hash(password)
    if await session.scalar(select(User.id).where(User.email == email)):
        return
    try:
        async with session.begin_nested():
            session.add(
                User(email=email, name=name, role=role, phone=phone, password_hash=password_hash)
            )
    except IntegrityError:  # the same email registered concurrently
        return


async def create_user(
    session: AsyncSession,
    passwords: Passwords,
    *,
    email: str,
    password: str,
    name: str,
    role: Role,
    phone: str | None = None,
    timezone: str = "UTC",
) -> User:
    """Create a user of any role (the CLI and demo data); an existing email is an error."""
    if await session.scalar(select(User.id).where(User.email == email)):
        raise Conflict(f"A user with email {email} already exists.")
    user = User(
        email=email,
        name=name,
        role=role,
        phone=phone,
        timezone=timezone,
        password_hash=await passwords.hash(password),
    )
    session.add(user)
    await session.flush()
    return user


def _throttle_keys(email: str, address: str | None) -> dict[str, str]:
    keys = {"account": f"account:{email.strip().lower()}"}
    if address:
        keys["address"] = f"address:{address}"
    return keys


async def _raise_if_locked(session: AsyncSession, keys: list[str], now: datetime) -> None:
    locked_until = await session.scalar(
        select(LoginThrottle.locked_until)
        .where(LoginThrottle.key.in_(keys), LoginThrottle.locked_until > now)
        .order_by(LoginThrottle.locked_until.desc())
        .limit(1)
    )
    if locked_until is not None:
        seconds = max(1, math.ceil((locked_until - now).total_seconds()))
        raise TooManyRequests(
            "Too many failed sign-in attempts; try again later.",
            headers={"Retry-After": str(seconds)},
        )


async def _record_failure(
    session: AsyncSession, key: str, limit: int, policy: ThrottlePolicy, now: datetime
) -> None:
    cutoff = now - policy.window
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stale = LoginThrottle.window_start < cutoff
    stmt = insert(LoginThrottle).values(key=key, failures=1, window_start=now)
    stmt = stmt.on_conflict_do_update(
        index_elements=[LoginThrottle.key],
        set_={
            "failures": case((stale, 1), else_=LoginThrottle.failures + 1),
            "window_start": case((stale, now), else_=LoginThrottle.window_start),
        },
    )
    await session.execute(stmt)
    await session.execute(
        update(LoginThrottle)
        .where(LoginThrottle.key == key, LoginThrottle.failures >= limit)
        .values(locked_until=now + policy.lockout, failures=0, window_start=now)
    )


async def login(
    db: Database,
    passwords: Passwords,
    signer: TokenSigner,
    policy: ThrottlePolicy,
    *,
    email: str,
    password: str,
    address: str | None,
    user_agent: str | None,
    now: datetime | None = None,
) -> SignedIn:
    now = now or utcnow()
    keys = _throttle_keys(email, address)
    async with db.transaction(write=False) as session:
        await _raise_if_locked(session, list(keys.values()), now)
        user = await session.scalar(select(User).where(User.email == email.strip().lower()))
    # Verified outside any transaction: hashing is slow and must not hold a lock.
    if not await passwords.verify(user.password_hash if user else None, password):
        async with db.transaction() as session:
            await _record_failure(session, keys["account"], policy.account_limit, policy, now)
            if "address" in keys:
                await _record_failure(session, keys["address"], policy.address_limit, policy, now)
            await session.execute(
                delete(LoginThrottle).where(
                    LoginThrottle.window_start < now - policy.window,
                    (LoginThrottle.locked_until.is_(None)) | (LoginThrottle.locked_until < now),
                )
            )
        raise Unauthenticated(INVALID_LOGIN)
    assert user is not None
    new_hash = (
        await passwords.hash(password) if passwords.needs_rehash(user.password_hash) else None
    )
    async with db.transaction() as session:
        await session.execute(delete(LoginThrottle).where(LoginThrottle.key == keys["account"]))
        if new_hash:
            await session.execute(
                update(User).where(User.id == user.id).values(password_hash=new_hash)
            )
        auth = AuthSession(
            user_id=user.id,
            created_at=now,
            expires_at=now + timedelta(seconds=signer.max_age_seconds),
            user_agent=(user_agent or "")[:300] or None,
            address=address,
        )
        session.add(auth)
        await session.flush()
    return SignedIn(token=signer.sign(auth.id), session=auth, user=user)


async def authenticate(
    session: AsyncSession, signer: TokenSigner, token: str, now: datetime | None = None
) -> tuple[User, AuthSession]:
    """The user a token belongs to, or Unauthenticated."""
    session_id = signer.unsign(token)
    if session_id is None:
        raise Unauthenticated("Your session is invalid or has expired; sign in again.")
    now = now or utcnow()
    row = (
        await session.execute(
            select(User, AuthSession)
            .join(AuthSession, AuthSession.user_id == User.id)
            .where(
                AuthSession.id == session_id,
                AuthSession.revoked_at.is_(None),
                AuthSession.expires_at > now,
            )
        )
    ).first()
    if row is None:
        raise Unauthenticated("Your session is invalid or has expired; sign in again.")
    return row[0], row[1]


async def logout(session: AsyncSession, auth_session: AuthSession) -> None:
    await session.execute(
        update(AuthSession)
        .where(AuthSession.id == auth_session.id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


async def update_profile(session: AsyncSession, user: User, changes: dict[str, object]) -> User:
    """Apply the fields given (``None`` clears the phone; name and zone can't be cleared)."""
    from farmstand.errors import Unprocessable

    cleared = [k for k in ("name", "timezone") if k in changes and changes[k] is None]
    if cleared:
        raise Unprocessable(
            "Some fields cannot be cleared.",
            details=[{"field": k, "message": "may not be null"} for k in cleared],
        )
    for key, value in changes.items():
        setattr(user, key, value)
    user.updated_at = utcnow()
    await session.flush()
    return user
