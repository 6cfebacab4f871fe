"""Account use cases: sign in and out, authenticate a request, create users, change a
password, disable a user. (Registration and email verification: ``registration.py``.)"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from farmstand.accounts import password_policy, throttle
from farmstand.accounts.cache import ACCOUNT_INVALIDATIONS_KEY, Invalidation, SessionCache
from farmstand.accounts.models import AuthSession, User
from farmstand.accounts.passwords import Passwords
from farmstand.accounts.principal import Person, Principal
from farmstand.accounts.roles import Role
from farmstand.accounts.throttle import ThrottlePolicy
from farmstand.accounts.tokens import TokenSigner
from farmstand.db import Database, utcnow
from farmstand.errors import Conflict, Forbidden, NotFound, Unauthenticated, Unprocessable
from farmstand.events import service as events
from farmstand.events.models import EventType

INVALID_LOGIN = "Invalid email or password."
SESSION_ENDED = "Your session is invalid or has expired; sign in again."
# Where a transaction finds this app's session cache (see ``Database.session_context``).
AUTH_CACHE_KEY = "farmstand.auth_cache"


@dataclass(frozen=True)
class SignedIn:
    token: str
    session: AuthSession
    user: User


def check_password(password: str, *, email: str, name: str, field: str = "password") -> None:
    """Refuse a password the policy does not accept (422 naming ``field``)."""
    found = password_policy.problems(password, email=email, name=name)
    if found:
        raise Unprocessable(
            "The password is not acceptable.",
            details=[{"field": field, "location": "body", "message": "; ".join(found)}],
        )


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
    """Create a user of any role (the CLI and demo data); an existing email is an error. An
    operator vouches for the email, so the account is verified."""
    check_password(password, email=email, name=name)
    if await session.scalar(select(User.id).where(User.email == email)):
        raise Conflict(f"A user with email {email} already exists.")
    now = utcnow()
    user = User(
        email=email,
        name=name,
        role=role,
        phone=phone,
        timezone=timezone,
        password_hash=await passwords.hash(password),
        email_verified_at=now,
        created_at=now,
    )
    session.add(user)
    await session.flush()
    return user


ACCOUNT_DISABLED = "This account has been disabled; contact the market's administrator."


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
    email = email.strip().lower()
    # Counted (or refused) and committed BEFORE the password is checked: attempts made in
    # parallel are counted one by one, so no more than the allowance reach the check.
    async with db.transaction() as session:
        await throttle.admit(session, policy, email, address, now)
    async with db.transaction(write=False) as session:
        user = await session.scalar(select(User).where(User.email == email))
    # Verified outside any transaction: hashing is slow and must not hold a lock.
    if not await passwords.verify(user.password_hash if user else None, password):
        raise Unauthenticated(INVALID_LOGIN)
    assert user is not None
    if user.disabled_at is not None:
        raise Forbidden(ACCOUNT_DISABLED)
    new_hash = (
        await passwords.hash(password) if passwords.needs_rehash(user.password_hash) else None
    )
    async with db.transaction() as session:
        await throttle.succeeded(session, policy, email, address)
        if new_hash:
            await session.execute(
                update(User).where(User.id == user.id).values(password_hash=new_hash)
            )
        auth = _new_session(session, user.id, signer, now, user_agent, address)
        await session.flush()
    return SignedIn(token=signer.sign(auth.id), session=auth, user=user)


def _new_session(
    session: AsyncSession,
    user_id: str,
    signer: TokenSigner,
    now: datetime,
    user_agent: str | None,
    address: str | None,
) -> AuthSession:
    auth = AuthSession(
        user_id=user_id,
        created_at=now,
        expires_at=now + timedelta(seconds=signer.max_age_seconds),
        user_agent=(user_agent or "")[:300] or None,
        address=address,
    )
    session.add(auth)
    return auth


def _live_sessions(session_ids: Collection[str], now: datetime) -> Select[User, AuthSession]:
    """The users and sessions behind these ids that may still act: the one rule for a request
    (``authenticate``) and for open streams (``Authenticator.live_principals``)."""
    return (
        select(User, AuthSession)
        .join(AuthSession, AuthSession.user_id == User.id)
        .where(
            AuthSession.id.in_(session_ids),
            AuthSession.revoked_at.is_(None),
            User.disabled_at.is_(None),
            AuthSession.expires_at > now,
        )
    )


async def authenticate(
    session: AsyncSession, session_id: str, now: datetime | None = None
) -> tuple[User, AuthSession]:
    """The user and live session behind a (verified) session id, or Unauthenticated."""
    row = (await session.execute(_live_sessions((session_id,), now or utcnow()))).first()
    if row is None:
        raise Unauthenticated(SESSION_ENDED)
    return row[0], row[1]


class Authenticator:
    """Turns a request's token into its ``Principal``: from the cache when it was seen in the
    last ``auth_cache_seconds`` and nothing cleared it since, else from the database."""

    def __init__(self, db: Database, signer: TokenSigner, cache: SessionCache) -> None:
        self._db = db
        self._signer = signer
        self.cache = cache

    async def principal(self, token: str) -> Principal:
        now = utcnow()
        cached = self.cache.get(token, now)
        if cached is not None:
            return cached
        generation = self.cache.generation
        session_id = self._signer.unsign(token)
        if session_id is None:
            raise Unauthenticated(SESSION_ENDED)
        async with self._db.transaction(write=False) as session:
            user, auth = await authenticate(session, session_id, now)
        principal = Principal.of(user, auth)
        self.cache.put(token, principal, generation)
        return principal

    async def live_principals(
        self, session: AsyncSession, session_ids: Collection[str]
    ) -> dict[str, Principal]:
        """The principals of those sessions still valid, by session id, in one query (for
        open streams whose accounts changed; see ``farmstand.events.sessions``)."""
        if not session_ids:
            return {}
        rows = await session.execute(_live_sessions(session_ids, utcnow()))
        return {auth.id: Principal.of(user, auth) for user, auth in rows}

    async def on_commit(self, info: dict[str, Any]) -> None:
        """Commit listener: clear what the committed transaction changed, in this process
        (the other processes hear of it through the ACCOUNT_CHANGED event)."""
        for change in info.get(ACCOUNT_INVALIDATIONS_KEY, ()):
            self.cache.invalidate(change)


def account_changed(
    session: AsyncSession, user_id: str, *, session_id: str | None = None, reason: str
) -> None:
    """Tell every server process, in this transaction, that what they cached about the user's
    sessions (one, or all when ``session_id`` is None) is out of date."""
    change = Invalidation(user_id, session_id)
    session.info.setdefault(ACCOUNT_INVALIDATIONS_KEY, []).append(change)
    cache = session.info.get(AUTH_CACHE_KEY)
    if isinstance(cache, SessionCache):
        cache.invalidate(change)  # now, and again after commit (see Authenticator.on_commit)
    events.record(
        session,
        EventType.ACCOUNT_CHANGED,
        order_id=None,
        farm_id=None,
        customer_id=None,
        user_id=user_id,
        data={"sessionId": session_id, "reason": reason},
    )


async def logout(session: AsyncSession, principal: Principal) -> None:
    await session.execute(
        update(AuthSession)
        .where(AuthSession.id == principal.session_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    account_changed(session, principal.id, session_id=principal.session_id, reason="signed out")


async def update_profile(session: AsyncSession, person: Person, changes: dict[str, object]) -> User:
    """Apply the fields given (``None`` clears the phone; name and zone can't be cleared)."""
    cleared = [k for k in ("name", "timezone") if k in changes and changes[k] is None]
    if cleared:
        raise Unprocessable(
            "Some fields cannot be cleared.",
            details=[{"field": k, "message": "may not be null"} for k in cleared],
        )
    user = await session.get_one(User, person.id, with_for_update=True)
    for key, value in changes.items():
        setattr(user, key, value)
    user.updated_at = utcnow()
    await session.flush()
    account_changed(session, user.id, reason="profile changed")
    return user


WRONG_CURRENT_PASSWORD = "The current password is not right."


async def change_password(
    db: Database,
    passwords: Passwords,
    signer: TokenSigner,
    policy: ThrottlePolicy,
    principal: Principal,
    *,
    current_password: str,
    new_password: str,
    address: str | None,
    user_agent: str | None,
    now: datetime | None = None,
) -> SignedIn:
    """Change the signed-in user's password: every session of theirs is revoked, this one
    included, and a new session is issued for the caller (so a stolen token dies with it)."""
    now = now or utcnow()
    check_password(new_password, email=principal.email, name=principal.name, field="newPassword")
    # Guessing the current password with a stolen session is throttled like signing in.
    async with db.transaction() as session:
        await throttle.admit(session, policy, principal.email, address, now)
    async with db.transaction(write=False) as session:
        current_hash = await session.scalar(
            select(User.password_hash).where(User.id == principal.id)
        )
    if not await passwords.verify(current_hash, current_password):
        raise Unprocessable(
            WRONG_CURRENT_PASSWORD,
            details=[
                {"field": "currentPassword", "location": "body", "message": WRONG_CURRENT_PASSWORD}
            ],
        )
    new_hash = await passwords.hash(new_password)
    async with db.transaction() as session:
        await throttle.succeeded(session, policy, principal.email, address)
        user = await session.get_one(User, principal.id, with_for_update=True)
        user.password_hash = new_hash
        user.updated_at = now
        await _revoke_all(session, user.id, now)
        auth = _new_session(session, user.id, signer, now, user_agent, address)
        await session.flush()
        account_changed(session, user.id, reason="password changed")
    return SignedIn(token=signer.sign(auth.id), session=auth, user=user)


async def _revoke_all(session: AsyncSession, user_id: str, now: datetime) -> None:
    await session.execute(
        update(AuthSession)
        .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def set_disabled(
    session: AsyncSession, user_id: str, disabled: bool, *, by: Person | None = None
) -> User:
    """Disable (revoking every session) or enable a user; an admin cannot disable themselves."""
    user = await session.get(User, user_id, with_for_update=True)
    if user is None:
        raise NotFound("No such user.")
    if disabled and by is not None and by.id == user.id:
        raise Conflict("You cannot disable your own account.")
    now = utcnow()
    if disabled:
        if user.disabled_at is None:
            user.disabled_at = now
        await _revoke_all(session, user.id, now)
    else:
        user.disabled_at = None
    user.updated_at = now
    await session.flush()
    account_changed(session, user.id, reason="disabled" if disabled else "enabled")
    return user


async def user_id_by_email(session: AsyncSession, email: str) -> str:
    user_id = await session.scalar(select(User.id).where(User.email == email.strip().lower()))
    if user_id is None:
        raise NotFound(f"No user with email {email.strip().lower()}.")
    return user_id
