"""Request dependencies, declared once as Annotated aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from farmstand.accounts import service as accounts
from farmstand.accounts.models import AuthSession, User
from farmstand.accounts.passwords import Passwords
from farmstand.accounts.roles import Role
from farmstand.accounts.service import ThrottlePolicy
from farmstand.accounts.tokens import TokenSigner
from farmstand.config import Settings
from farmstand.db import Database
from farmstand.errors import Forbidden, Unauthenticated
from farmstand.events.bus import EventBus
from farmstand.events.hub import Hub
from farmstand.events.relay import Sequencer
from farmstand.notifications.dispatcher import Dispatcher
from farmstand.notifications.service import Notifier
from farmstand.orders.states import Actor, Policy

SESSION_COOKIE = "farmstand_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class Runtime:
    """Everything a request needs that lives as long as the app."""

    settings: Settings
    db: Database
    passwords: Passwords
    signer: TokenSigner
    throttle: ThrottlePolicy
    order_policy: Policy
    bus: EventBus
    hub: Hub
    sequencer: Sequencer
    notifier: Notifier
    dispatcher: Dispatcher
    _started: list[str] = field(default_factory=list)

    async def start(self, *, streams: bool = True, dispatch: bool = True) -> None:
        """Start the background parts: for live streams, subscribe to the bus before starting
        the hub (so nothing published after start-up is missed); the sequencer always (it
        publishes what this process commits); the dispatcher when asked."""
        if streams:
            await self.bus.start(self.hub.ingest, self.hub.catch_up)
            await self.hub.start()
            self._started.append("streams")
        self.sequencer.start()
        if dispatch:
            self.dispatcher.start()
            self.db.commit_listeners.append(self.dispatcher.on_commit)
            self._started.append("dispatch")

    async def stop(self) -> None:
        if self.dispatcher.on_commit in self.db.commit_listeners:
            self.db.commit_listeners.remove(self.dispatcher.on_commit)
        if "dispatch" in self._started:
            await self.dispatcher.stop()
        else:
            await self.dispatcher.close()
        await self.sequencer.stop()
        if "streams" in self._started:
            await self.hub.close()
        await self.bus.close()
        await self.db.dispose()
        self._started.clear()


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_session(request: Request, runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    # One transaction per request, committed before the reply is sent (scope="function"), so
    # a failed commit becomes an error reply rather than a lie.
    async with runtime.db.transaction(write=request.method not in SAFE_METHODS) as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


def _token_from(request: Request) -> tuple[str | None, bool]:
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip(), False
    cookie = request.cookies.get(SESSION_COOKIE)
    return (cookie, True) if cookie else (None, False)


def _same_origin(request: Request, runtime: Runtime) -> bool:
    origin = request.headers.get("origin")
    if origin is None:
        return True
    allowed = {runtime.settings.base_url, f"{request.url.scheme}://{request.url.netloc}"}
    parts = urlsplit(origin)
    return f"{parts.scheme}://{parts.netloc}" in allowed


# Declared so the OpenAPI document shows both ways to sign in; the token is read below.
_bearer = HTTPBearer(auto_error=False, description="The token from POST /api/auth/login")
_cookie = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    description="The session cookie set by POST /api/auth/login",
)


async def current_auth(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    _declared_bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
    _declared_cookie: Annotated[str | None, Depends(_cookie)] = None,
) -> tuple[User, AuthSession]:
    token, from_cookie = _token_from(request)
    if token is None:
        raise Unauthenticated()
    if from_cookie and request.method not in SAFE_METHODS and not _same_origin(request, runtime):
        # The cookie is SameSite, and a cross-site form still must not act with it.
        raise Forbidden("Cross-site request refused.")
    return await accounts.authenticate(session, runtime.signer, token)


CurrentAuth = Annotated[tuple[User, AuthSession], Depends(current_auth)]


async def current_user(auth: CurrentAuth) -> User:
    return auth[0]


CurrentUser = Annotated[User, Depends(current_user)]


def _require(*roles: Role) -> object:
    async def dependency(user: CurrentUser) -> User:
        if user.role not in roles:
            names = " or ".join(role.lower() for role in roles)
            article = "an" if names[0] in "aeiou" else "a"
            raise Forbidden(f"Only {article} {names} can do that.")
        return user

    return Depends(dependency)


CustomerUser = Annotated[User, _require(Role.CUSTOMER)]
FarmerUser = Annotated[User, _require(Role.FARMER)]
StaffUser = Annotated[User, _require(Role.FARMER, Role.ADMIN)]
AdminUser = Annotated[User, _require(Role.ADMIN)]


def actor_of(user: User) -> Actor:
    return Actor(user_id=user.id, role=user.role)
