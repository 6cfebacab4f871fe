"""Open streams checked again when their users' accounts change (the hub's rechecker).

A stream follows the session that opened it: when an ``ACCOUNT_CHANGED`` event names its user
(or its session), the hub asks this module, once for every stream waiting, whether each one's
session is still valid and what its scope is now. One query finds which of their sessions are
still live (the same rule as a request's, through the ``Authenticator``), and each scope is
computed once per user and view, however many streams share it.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from farmstand.accounts.principal import Principal
from farmstand.accounts.service import Authenticator
from farmstand.db import Database
from farmstand.errors import NotFound
from farmstand.events.hub import CloseReason, Recheck, Subscription
from farmstand.events.service import Scope, View
from farmstand.events.streams import scope_of


class StreamSessions:
    def __init__(self, db: Database, auth: Authenticator) -> None:
        self._db = db
        self._auth = auth

    async def __call__(self, subs: Sequence[Subscription]) -> Recheck:
        results: Recheck = {}
        owned = [(sub, sub.owner) for sub in subs if sub.owner is not None]
        # Reads on the background pool: a round of checks never queues behind requests.
        async with self._db.transaction(write=False, background=True) as session:
            live = await self._auth.live_principals(session, {o.session_id for _, o in owned})
            scopes: dict[tuple[str, View], Scope | CloseReason] = {}
            for sub, owner in owned:
                principal = live.get(owner.session_id)
                if principal is None or principal.id != owner.user_id:
                    results[sub] = CloseReason.SESSION
                    continue
                key = (principal.id, owner.view)
                if key not in scopes:
                    scopes[key] = await _scope(session, principal, owner.view)
                results[sub] = scopes[key]
        for sub in subs:
            results.setdefault(sub, sub.scope)  # a stream without an owner keeps its scope
        return results


async def _scope(session: AsyncSession, principal: Principal, view: View) -> Scope | CloseReason:
    try:
        return await scope_of(session, principal, view)
    except NotFound:
        return CloseReason.ACCESS
