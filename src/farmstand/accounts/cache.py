"""Signed-in sessions checked without a database hit on every request.

A token seen recently maps to its ``Principal`` for a short time (``auth_cache_seconds``).
Whatever ends or changes a session clears it, in every process: the change writes an
``ACCOUNT_CHANGED`` event in its own transaction (see ``accounts.service``), every server's hub
receives it over the bus or from the database, and clears the entries here. The process that
made the change also clears them itself, before and after its commit. A lookup that started
before a clear never stores its (possibly stale) answer: entries carry the generation they
were read in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from farmstand.accounts.principal import Principal

ACCOUNT_INVALIDATIONS_KEY = "farmstand.account_invalidations"


@dataclass(frozen=True, slots=True)
class Invalidation:
    user_id: str
    session_id: str | None  # None: every session of the user


@dataclass(slots=True)
class _Entry:
    principal: Principal
    fresh_until: float


class SessionCache:
    def __init__(
        self,
        ttl_seconds: float,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._token_of_session: dict[str, str] = {}
        self._sessions_of_user: dict[str, set[str]] = {}
        self.generation = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token: str, now: datetime) -> Principal | None:
        entry = self._entries.get(token)
        if entry is None:
            self.misses += 1
            return None
        if entry.fresh_until < self._clock() or entry.principal.session_expires_at <= now:
            self._drop(token)
            self.misses += 1
            return None
        self.hits += 1
        return entry.principal

    def put(self, token: str, principal: Principal, generation: int) -> None:
        """Remember ``principal`` unless anything was cleared since ``generation`` was read."""
        if self.ttl <= 0 or generation != self.generation:
            return
        if token not in self._entries and len(self._entries) >= self.max_entries:
            self._drop(next(iter(self._entries)))  # the oldest entry
        self._entries[token] = _Entry(principal, self._clock() + self.ttl)
        self._token_of_session[principal.session_id] = token
        self._sessions_of_user.setdefault(principal.id, set()).add(principal.session_id)

    def invalidate(self, change: Invalidation) -> None:
        self.generation += 1
        if change.session_id is not None:
            sessions = {change.session_id}
        else:
            sessions = set(self._sessions_of_user.get(change.user_id, ()))
        for session_id in sessions:
            token = self._token_of_session.get(session_id)
            if token is not None:
                self._drop(token)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()
        self._token_of_session.clear()
        self._sessions_of_user.clear()

    def on_event(self, message: dict[str, Any]) -> None:
        """The hub's callback for ``ACCOUNT_CHANGED`` events from any process."""
        data = message.get("data") or {}
        user_id = message.get("userId")
        if isinstance(user_id, str):
            session_id = data.get("sessionId")
            self.invalidate(
                Invalidation(user_id, session_id if isinstance(session_id, str) else None)
            )

    def _drop(self, token: str) -> None:
        entry = self._entries.pop(token, None)
        if entry is None:
            return
        principal = entry.principal
        self._token_of_session.pop(principal.session_id, None)
        sessions = self._sessions_of_user.get(principal.id)
        if sessions is not None:
            sessions.discard(principal.session_id)
            if not sessions:
                del self._sessions_of_user[principal.id]
