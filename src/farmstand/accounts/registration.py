"""Registration that does not reveal who has an account, and email verification.

Registering never creates an account. It stores a pending registration and emails a link;
the account exists (and can sign in) once the link is used. For an email that already has an
account, the owner is emailed instead that someone tried to register with it. Both paths hash
the password and write one email row, so they answer alike, in about the same time, and
signing in afterwards fails alike for both.

The link's token is an HMAC of the pending registration's random id under the app's secret:
the database keeps only its SHA-256 (the email row keeps the id), so reading the database
does not give the link away, and the dispatcher can render the link when it sends the email.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from farmstand.accounts.models import PendingRegistration, User
from farmstand.accounts.passwords import Passwords
from farmstand.accounts.roles import Role
from farmstand.db import new_id, utcnow
from farmstand.errors import FarmstandError
from farmstand.notifications import account as account_emails
from farmstand.notifications.models import NotificationType

_SALT = b"farmstand.verify-email:"


class InvalidVerificationLink(FarmstandError):
    status_code = 400
    message = (
        "This verification link is not valid: it was already used, has expired, or was "
        "mistyped. Register again to get a new one."
    )


def verification_token(secret: str, pending_id: str) -> str:
    digest = hmac.new(secret.encode(), _SALT + pending_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Verified:
    user: User
    created: bool  # False: the email already had an account (the link did nothing more)


async def register(
    session: AsyncSession,
    passwords: Passwords,
    *,
    secret: str,
    ttl: timedelta,
    email: str,
    password: str,
    name: str,
    role: Role,
    phone: str | None,
    now: datetime | None = None,
) -> None:
    """Email a verification link, or tell an existing account's owner; the caller can't tell
    which happened."""
    now = now or utcnow()
    # Hash whichever way it goes: a taken email must cost the same time as a new one.
    password_hash = await passwords.hash(password)
    await session.execute(delete(PendingRegistration).where(PendingRegistration.expires_at < now))
    existing = await session.scalar(select(User).where(User.email == email))
    if existing is not None:
        await account_emails.enqueue(
            session,
            NotificationType.ACCOUNT_EXISTS,
            user_id=existing.id,
            email=existing.email,
            name=existing.name,
            now=now,
        )
        return
    pending_id = new_id()
    session.add(
        PendingRegistration(
            id=pending_id,
            email=email,
            name=name,
            role=role,
            phone=phone,
            password_hash=password_hash,
            token_hash=token_hash(verification_token(secret, pending_id)),
            created_at=now,
            expires_at=now + ttl,
        )
    )
    await session.flush()
    await account_emails.enqueue(
        session,
        NotificationType.ACCOUNT_VERIFY,
        user_id=None,
        email=email,
        name=name,
        pending_id=pending_id,
        now=now,
    )


async def resend(session: AsyncSession, *, email: str, now: datetime | None = None) -> None:
    """Send the latest live pending registration's link again (nothing when there is none)."""
    now = now or utcnow()
    pending = await session.scalar(
        select(PendingRegistration)
        .where(PendingRegistration.email == email, PendingRegistration.expires_at > now)
        .order_by(PendingRegistration.created_at.desc())
        .limit(1)
    )
    if pending is None:
        return
    await account_emails.enqueue(
        session,
        NotificationType.ACCOUNT_VERIFY,
        user_id=None,
        email=pending.email,
        name=pending.name,
        pending_id=pending.id,
        now=now,
    )


async def verify(session: AsyncSession, token: str, now: datetime | None = None) -> Verified:
    """Use a verification link: create the account from its registration, once."""
    now = now or utcnow()
    if not token or len(token) > 200:
        raise InvalidVerificationLink()
    pending = await session.scalar(
        select(PendingRegistration)
        .where(PendingRegistration.token_hash == token_hash(token))
        .with_for_update()
    )
    if pending is None or pending.expires_at <= now:
        raise InvalidVerificationLink()
    # Single use: this registration and every other one for the email end here.
    await session.execute(
        delete(PendingRegistration).where(PendingRegistration.email == pending.email)
    )
    existing = await session.scalar(select(User).where(User.email == pending.email))
    if existing is not None:
        return Verified(existing, created=False)
    user = User(
        email=pending.email,
        name=pending.name,
        role=pending.role,
        phone=pending.phone,
        password_hash=pending.password_hash,
        email_verified_at=now,
        created_at=now,
        updated_at=now,
    )
    try:
        async with session.begin_nested():
            session.add(user)
    except IntegrityError:  # the same email verified concurrently
        raise InvalidVerificationLink() from None
    return Verified(user, created=True)
