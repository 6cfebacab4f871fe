"""Request dependencies, declared once as Annotated aliases."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession

from farmstand.accounts import throttle
from farmstand.accounts.passwords import Passwords
from farmstand.accounts.principal import Person, Principal
from farmstand.accounts.roles import Role
from farmstand.accounts.service import Authenticator
from farmstand.accounts.throttle import RequestLimits, ThrottlePolicy
from farmstand.accounts.tokens import TokenSigner
from farmstand.config import Settings
from farmstand.db import Database, utcnow
from farmstand.errors import Forbidden, Unauthenticated
from farmstand.events.bus import EventBus
from farmstand.events.hub import Hub
from farmstand.events.relay import Sequencer
from farmstand.events.sessions import StreamSessions
from farmstand.notifications.dispatcher import Dispatcher
from farmstand.notifications.outbox import Notifier
from farmstand.observability.metrics import Metrics
from farmstand.orders.states import Actor, Policy

log = logging.getLogger(__name__)

SESSION_COOKIE = "farmstand_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class Runtime:
    """Everything a request needs that lives as long as the app."""

    settings: Settings
    db: Database
    passwords: Passwords
    signer: TokenSigner
    auth: Authenticator
    throttle: ThrottlePolicy
    limits: RequestLimits
    order_policy: Policy
    bus: EventBus
    hub: Hub
    sequencer: Sequencer
    notifier: Notifier
    dispatcher: Dispatcher
    metrics: Metrics
    _started: list[str] = field(default_factory=list)
    shed: dict[str, int] = field(default_factory=dict)  # requests refused with 503, by reason

    def note_shed(self, reason: str) -> None:
        self.shed[reason] = self.shed.get(reason, 0) + 1
        self.metrics.requests_shed.labels(reason).inc()

    async def start(self, *, streams: bool = True, dispatch: bool = True) -> None:
        """Start the background parts: for live streams, subscribe to the bus before starting
        the hub (so nothing published after start-up is missed); the sequencer always (it
        publishes what this process commits); the dispatcher when asked."""
        if streams:
            # Sessions ended or accounts changed in any process clear this process's cache,
            # and the hub checks the streams they opened again.
            self.hub.internal_listeners.append(self.auth.cache.on_event)
            self.hub.rechecker = StreamSessions(self.db, self.auth)

        async def on_bus(messages: list[dict[str, Any]]) -> None:
            if streams:
                await self.hub.ingest(messages)
            if dispatch:
                # Changes committed by other processes (the servers, when notifications are
                # sent by `farmstand worker`) come with events: look for due notifications now
                # rather than at the next poll.
                self.dispatcher.wake()

        async def on_reconnect() -> None:
            if streams:
                await self.hub.catch_up()
            if dispatch:
                self.dispatcher.wake()

        if streams or dispatch:
            await self.bus.start(on_bus, on_reconnect)
        if streams:
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
        async with _timed_step("the dispatcher"):
            if "dispatch" in self._started:
                await self.dispatcher.stop()
            else:
                await self.dispatcher.close()
        async with _timed_step("the event sequencer"):
            await self.sequencer.stop()
        if "streams" in self._started:
            async with _timed_step("the event hub"):
                await self.hub.close()
        async with _timed_step("the event bus"):
            await self.bus.close()
        async with _timed_step("the database pools"):
            await self.db.dispose()
        self._started.clear()


@asynccontextmanager
async def _timed_step(what: str, slow_seconds: float = 5) -> AsyncIterator[None]:
    """Say which part of a shutdown was slow (a stuck one would otherwise be a silent wait)."""
    started = time.monotonic()
    try:
        yield
    finally:
        took = time.monotonic() - started
        if took > slow_seconds:
            log.warning("stopping %s took %.1f s", what, took)


async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_session(request: Request, runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    # One transaction per request, committed before the reply is sent (scope="function"), so
    # a failed commit becomes an error reply rather than a lie.
    async with runtime.db.transaction(write=request.method not in SAFE_METHODS) as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def client_address(request: Request) -> str | None:
    """The address the request came from: the peer, or, when the peer is a proxy named in
    FARMSTAND_TRUSTED_PROXIES, the client it forwarded for (uvicorn rewrites the peer only
    then; see ``farmstand serve``). Async: FastAPI runs a plain function dependency in its
    thread pool, a thread hop per placement and sign-in for one attribute read."""
    return request.client.host if request.client else None


ClientAddress = Annotated[str | None, Depends(client_address)]


def _token_from(request: Request) -> tuple[str | None, bool]:
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip(), False
    cookie = request.cookies.get(SESSION_COOKIE)
    return (cookie, True) if cookie else (None, False)


def is_same_origin(request: Request, runtime: Runtime) -> bool:
    """Whether the request came from a page of ours (or from no page: no Origin header)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    allowed = {runtime.settings.base_url, f"{request.url.scheme}://{request.url.netloc}"}
    try:
        parts = urlsplit(origin)
    except ValueError:  # "http://[" and the like: no origin of ours
        return False
    return f"{parts.scheme}://{parts.netloc}" in allowed


# Both ways to sign in, as the OpenAPI document shows them on every route that needs a
# signed-in user (see ``document_sign_in``); the token is read by ``current_user``.
SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "HTTPBearer": {
        "type": "http",
        "description": "The token from POST /api/auth/login",
        "scheme": "bearer",
    },
    "APIKeyCookie": {
        "type": "apiKey",
        "description": "The session cookie set by POST /api/auth/login",
        "in": "cookie",
        "name": SESSION_COOKIE,
    },
}


_CHANGES_SEEN = "farmstand.account_changes_seen"


async def current_user(request: Request, runtime: RuntimeDep) -> Principal:
    token, from_cookie = _token_from(request)
    if token is None:
        raise Unauthenticated()
    if from_cookie and request.method not in SAFE_METHODS and not is_same_origin(request, runtime):
        # The cookie is SameSite, and a cross-site form still must not act with it.
        raise Forbidden("Cross-site request refused.")
    # Before the session is checked: a stream opened by this request is checked again if any
    # account changes between now and its subscription (see ``Hub.subscribe``).
    request.scope[_CHANGES_SEEN] = runtime.hub.account_changes
    return await runtime.auth.principal(token)


def account_changes_seen(request: Request) -> int:
    """``Hub.account_changes`` as it was before this request's session was checked."""
    seen = request.scope.get(_CHANGES_SEEN)
    return seen if isinstance(seen, int) else -1


CurrentUser = Annotated[Principal, Depends(current_user)]


def _api_routes(routes: Iterable[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)  # a router included in the app
        if included is not None:
            yield from _api_routes(included.routes)


def _signs_in(dependant: Dependant) -> bool:
    return dependant.call is current_user or any(_signs_in(d) for d in dependant.dependencies)


def document_sign_in(app: FastAPI) -> None:
    """Show the sign-in schemes in the OpenAPI document, on each route that needs a signed-in
    user. (Declared as dependencies they would run on every request; this costs nothing.)"""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
        paths = schema.get("paths", {})
        for route in _api_routes(app.routes):
            if _signs_in(route.dependant):
                for method in route.methods or ():
                    operation = paths.get(route.path_format, {}).get(method.lower())
                    if operation is not None:
                        operation["security"] = [{name: []} for name in SECURITY_SCHEMES]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _require(*roles: Role) -> object:
    async def dependency(user: CurrentUser) -> Principal:
        if user.role not in roles:
            names = " or ".join(role.lower() for role in roles)
            article = "an" if names[0] in "aeiou" else "a"
            raise Forbidden(f"Only {article} {names} can do that.")
        return user

    return Depends(dependency)


CustomerUser = Annotated[Principal, _require(Role.CUSTOMER)]
FarmerUser = Annotated[Principal, _require(Role.FARMER)]
StaffUser = Annotated[Principal, _require(Role.FARMER, Role.ADMIN)]
AdminUser = Annotated[Principal, _require(Role.ADMIN)]


ORDERS_TOO_FAST = "You have placed too many orders in a short time; try again later."
VERIFY_FIRST = "Confirm your email address before placing an order: use the link we emailed you."


async def order_allowance(
    user: CustomerUser, session: SessionDep, runtime: RuntimeDep, address: ClientAddress
) -> Principal:
    """Who places an order, once their email is verified and they are within the order rate
    limits (per account and per address: one statement)."""
    if not user.email_verified:
        raise Forbidden(VERIFY_FIRST)
    limits = runtime.limits
    keys = [(f"order:user:{user.id}", limits.order_per_account)]
    if address:
        keys.append((f"order:address:{address}", limits.order_per_address))
    if runtime.db.is_sqlite:  # in the order's transaction: this process's writers take turns
        await throttle.count(session, keys, limits.window, utcnow(), ORDERS_TOO_FAST)
    else:
        # Committed on its own (an autocommit statement on an unlogged table: no WAL, no
        # fsync), so the address's counter row is locked for this statement only. Inside the
        # order's transaction it stayed locked until the order committed, and every order from
        # one address (all of them, behind a NAT or in the bench) queued behind the last one.
        async with runtime.db.transaction(write=False) as counting:
            await throttle.count(counting, keys, limits.window, utcnow(), ORDERS_TOO_FAST)
    return user


OrderingCustomer = Annotated[Principal, Depends(order_allowance)]


def actor_of(user: Person) -> Actor:
    return Actor(user_id=user.id, role=user.role)
