"""Counting requests in the database, so every process and host shares the counts.

Sign-in uses growing back-off: each attempt is counted, in one atomic upsert, BEFORE its
password is checked; past a number of free failures each admitted attempt closes its key for a
delay that doubles with every further attempt (capped). Keys are the (email, address) pair, so
an attacker elsewhere never slows the owner down, and the address, with a generous allowance
and a short cap, so one address cannot try passwords on many accounts quickly without locking
anyone behind it out for long.

Registration, verification emails and order placement use fixed-window counters: one upsert
of all the request's keys (account and address) in one statement.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, delete, literal, or_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from farmstand.accounts.models import LoginThrottle, RateCounter
from farmstand.config import Settings
from farmstand.db import UTCDateTime
from farmstand.errors import TooManyRequests

SIGN_IN_THROTTLED = "Too many sign-in attempts; try again later."


def retry_after(until: datetime, now: datetime) -> int:
    return max(1, math.ceil((until - now).total_seconds()))


def _insert(session: AsyncSession) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


# -- sign-in: growing back-off --------------------------------------------------------------


@dataclass(frozen=True)
class Backoff:
    free: int  # attempts admitted without delay; the last of them starts the delay
    base: timedelta
    cap: timedelta
    window: timedelta  # counts start again after this long without a delay in force

    def delays(self) -> list[timedelta]:
        """The delay after the free attempts, after the next one, ...; the cap last."""
        out: list[timedelta] = []
        delay = self.base
        while delay < self.cap and len(out) < 40:
            out.append(delay)
            delay *= 2
        return [*out, self.cap]


@dataclass(frozen=True)
class ThrottlePolicy:
    pair: Backoff
    address: Backoff

    @classmethod
    def from_settings(cls, settings: Settings) -> ThrottlePolicy:
        base = timedelta(seconds=settings.login_backoff_base_seconds)
        return cls(
            pair=Backoff(
                free=settings.login_free_failures_per_account,
                base=base,
                cap=timedelta(seconds=settings.login_account_backoff_max_seconds),
                window=timedelta(seconds=settings.login_account_window_seconds),
            ),
            address=Backoff(
                free=settings.login_free_failures_per_address,
                base=base,
                cap=timedelta(seconds=settings.login_address_backoff_max_seconds),
                window=timedelta(seconds=settings.login_address_window_seconds),
            ),
        )

    def keys(self, email: str, address: str | None) -> list[tuple[str, Backoff]]:
        email = email.strip().lower()
        keys = [(f"pair:{email}|{address or '-'}", self.pair)]
        if address:
            keys.append((f"address:{address}", self.address))
        return keys


def _when(at: datetime) -> Any:
    return literal(at, UTCDateTime())


async def _admit_one(
    session: AsyncSession, key: str, rule: Backoff, now: datetime
) -> datetime | None:
    """Count one attempt on ``key``: None when it may go on, else when it may try again."""
    row = LoginThrottle
    delays = rule.delays()

    def block_for(attempts: Any) -> Any:
        whens = [
            (attempts == rule.free + step, _when(now + delay))
            for step, delay in enumerate(delays[:-1])
        ]
        return case((attempts < rule.free, None), *whens, else_=_when(now + delays[-1]))

    blocked = row.blocked_until > now
    unblocked = or_(row.blocked_until.is_(None), row.blocked_until <= now)
    stale = and_(row.window_start < now - rule.window, unblocked)
    first_block = now + delays[0] if rule.free <= 1 else None
    statement = (
        _insert(session)(row)
        .values(key=key, attempts=1, window_start=now, blocked_until=first_block, admitted=True)
        .on_conflict_do_update(
            index_elements=[row.key],
            set_={
                "attempts": case((stale, 1), (blocked, row.attempts), else_=row.attempts + 1),
                "window_start": case((stale, _when(now)), else_=row.window_start),
                "blocked_until": case(
                    (stale, _when(first_block) if first_block else None),
                    (blocked, row.blocked_until),
                    else_=block_for(row.attempts + 1),
                ),
                "admitted": case((blocked, False), else_=True),
            },
        )
        .returning(row.admitted, row.blocked_until)
    )
    admitted, blocked_until = (await session.execute(statement)).one()
    if admitted or blocked_until is None:
        return None
    return blocked_until  # type: ignore[no-any-return]


async def admit(
    session: AsyncSession, policy: ThrottlePolicy, email: str, address: str | None, now: datetime
) -> None:
    """Count a sign-in attempt on its pair and address, or refuse it (429 with Retry-After).

    Run in a transaction of its own that commits before the password is checked; a refusal
    raises, so the transaction rolls back and the refused attempt counts nowhere."""
    for key, rule in policy.keys(email, address):
        until = await _admit_one(session, key, rule, now)
        if until is not None:
            raise TooManyRequests(SIGN_IN_THROTTLED, retry_after=retry_after(until, now))
    longest = max(policy.pair.window, policy.address.window)
    await session.execute(
        delete(LoginThrottle).where(
            LoginThrottle.window_start < now - longest,
            or_(LoginThrottle.blocked_until.is_(None), LoginThrottle.blocked_until < now),
        )
    )


async def succeeded(
    session: AsyncSession, policy: ThrottlePolicy, email: str, address: str | None
) -> None:
    """A right password: forget the pair's failures, and take this attempt off the address."""
    keys = policy.keys(email, address)
    await session.execute(delete(LoginThrottle).where(LoginThrottle.key == keys[0][0]))
    if len(keys) > 1:
        await session.execute(
            update(LoginThrottle)
            .where(LoginThrottle.key == keys[1][0], LoginThrottle.attempts > 0)
            .values(attempts=LoginThrottle.attempts - 1)
        )


# -- fixed windows: registration, verification emails, orders -------------------------------


@dataclass(frozen=True)
class RequestLimits:
    window: timedelta
    register_per_email: int
    register_per_address: int
    resend_per_email: int
    resend_per_address: int
    order_per_account: int
    order_per_address: int

    @classmethod
    def from_settings(cls, settings: Settings) -> RequestLimits:
        return cls(
            window=timedelta(seconds=settings.rate_limit_window_seconds),
            register_per_email=settings.register_limit_per_email,
            register_per_address=settings.register_limit_per_address,
            resend_per_email=settings.verification_resend_limit_per_email,
            resend_per_address=settings.verification_resend_limit_per_address,
            order_per_account=settings.order_limit_per_account,
            order_per_address=settings.order_limit_per_address,
        )


async def count(
    session: AsyncSession,
    limits: Sequence[tuple[str, int]],
    window: timedelta,
    now: datetime,
    message: str,
) -> None:
    """Count one request on every ``(key, limit)`` in one statement; past any limit, refuse it
    with 429 and Retry-After (the caller's transaction then rolls the count back, unless the
    statement ran on its own: see ``deps.order_allowance``)."""
    if not limits:
        return
    allowed = dict(limits)
    row = RateCounter
    stale = row.window_start <= now - window
    statement = (
        _insert(session)(row)
        .values([{"key": key, "hits": 1, "window_start": now} for key in sorted(allowed)])
        .on_conflict_do_update(
            index_elements=[row.key],
            set_={
                "hits": case((stale, 1), else_=row.hits + 1),
                "window_start": case((stale, _when(now)), else_=row.window_start),
            },
        )
        .returning(row.key, row.hits, row.window_start)
    )
    waits = [
        window_start + window
        for key, hits, window_start in (await session.execute(statement)).all()
        if hits > allowed[key]
    ]
    if waits:
        # A refused request counts nowhere: in a transaction of the caller's this is rolled
        # back anyway; a count that committed on its own is taken back here (refusals only).
        await session.execute(
            update(row).where(row.key.in_(allowed), row.hits > 0).values(hits=row.hits - 1)
        )
        raise TooManyRequests(message, retry_after=retry_after(max(waits), now))


async def forget_old_counts(session: AsyncSession, window: timedelta, now: datetime) -> None:
    await session.execute(delete(RateCounter).where(RateCounter.window_start < now - window))
