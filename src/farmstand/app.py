"""The application factory: ``create_app(settings)`` builds one app; nothing global."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.types import ASGIApp

from farmstand import __version__
from farmstand.accounts.api import admin_router as admin_users_router
from farmstand.accounts.api import me_router
from farmstand.accounts.api import router as auth_router
from farmstand.accounts.cache import SessionCache
from farmstand.accounts.passwords import Passwords
from farmstand.accounts.service import AUTH_CACHE_KEY, Authenticator
from farmstand.accounts.throttle import RequestLimits, ThrottlePolicy
from farmstand.accounts.tokens import TokenSigner
from farmstand.accounts.views import router as account_pages
from farmstand.catalog.api import router as farms_router
from farmstand.catalog.farm_views import router as farm_catalog_pages
from farmstand.catalog.views import router as shop_pages
from farmstand.config import DispatcherMode, Settings, load_settings
from farmstand.db import Database
from farmstand.deps import Runtime, document_sign_in
from farmstand.events.api import router as events_router
from farmstand.events.bus import make_bus
from farmstand.events.hub import Hub
from farmstand.events.relay import Sequencer
from farmstand.events.sse import StreamHandoff, server_stopping
from farmstand.gc_tuning import tune_after_startup
from farmstand.http_errors import answer_bug, install_error_handlers
from farmstand.http_guards import BodySizeLimit, SecurityHeaders, inline_script_csp
from farmstand.notifications.admin_api import router as notifications_admin_router
from farmstand.notifications.admin_views import router as notification_admin_pages
from farmstand.notifications.api import router as notifications_router
from farmstand.notifications.channels.factory import make_senders
from farmstand.notifications.dispatcher import Dispatcher
from farmstand.notifications.outbox import NOTIFIER_KEY, Notifier
from farmstand.notifications.scheduler import Scheduler
from farmstand.notifications.views import router as notification_pages
from farmstand.notifications.webhooks import router as webhooks_router
from farmstand.observability import stacks, tracing
from farmstand.observability.endpoint import router as metrics_router
from farmstand.observability.exporter import ProcessTelemetry
from farmstand.observability.logs import configure_logging
from farmstand.observability.metrics import METRICS_KEY, Metrics
from farmstand.observability.middleware import ObservabilityMiddleware
from farmstand.orders.admin_views import router as order_admin_pages
from farmstand.orders.api import router as orders_router
from farmstand.orders.board_actions import router as board_actions
from farmstand.orders.board_csv import router as board_csv
from farmstand.orders.board_views import router as board_pages
from farmstand.orders.picking_views import router as picking_pages
from farmstand.orders.states import Policy
from farmstand.orders.views import router as order_pages
from farmstand.shedding import InFlightLimit
from farmstand.web.pages import STATIC_DIR, CachedStaticFiles, Pages


def build_runtime(settings: Settings) -> Runtime:
    assert settings.secret_key is not None
    db = Database.from_settings(settings)
    bus = make_bus(settings)
    notifier = Notifier(settings)
    metrics = Metrics()
    # Every transaction can write notifications: the use cases find the notifier here (and
    # the metrics to count what they did).
    db.session_context[NOTIFIER_KEY] = notifier
    db.session_context[METRICS_KEY] = metrics
    dispatcher = Dispatcher(
        db, settings, make_senders(settings), notifier=notifier, metrics=metrics
    )
    dispatcher.scheduler = Scheduler(db, settings)
    sequencer = Sequencer(
        db,
        bus,
        relay_interval=settings.event_relay_interval_seconds,
        grace=settings.event_relay_grace_seconds,
        retention=timedelta(days=settings.event_retention_days),
        metrics=metrics,
    )
    # Whatever this process commits (a server, a worker, the CLI) it publishes itself: events
    # it wrote are sequenced at once while running, and at the latest when it stops.
    db.commit_listeners.append(sequencer.on_commit)
    signer = TokenSigner(
        settings.secret_key.get_secret_value(),
        max_age_seconds=int(settings.session_ttl_hours * 3600),
    )
    auth_cache = SessionCache(settings.auth_cache_seconds, settings.auth_cache_size)
    db.session_context[AUTH_CACHE_KEY] = auth_cache
    authenticator = Authenticator(db, signer, auth_cache)
    db.commit_listeners.append(authenticator.on_commit)
    return Runtime(
        settings=settings,
        db=db,
        passwords=Passwords(
            PasswordHasher(
                time_cost=settings.password_hash_time_cost,
                memory_cost=settings.password_hash_memory_kib,
            )
        ),
        signer=signer,
        auth=authenticator,
        throttle=ThrottlePolicy.from_settings(settings),
        limits=RequestLimits.from_settings(settings),
        order_policy=Policy(
            cancellation_window=timedelta(hours=settings.cancellation_window_hours)
        ),
        bus=bus,
        hub=Hub(
            db,
            queue_size=settings.sse_queue_size,
            poll_interval=settings.event_poll_interval_seconds,
            heartbeat=settings.sse_heartbeat_seconds,
            metrics=metrics,
        ),
        sequencer=sequencer,
        notifier=notifier,
        dispatcher=dispatcher,
        metrics=metrics,
    )


def create_app(
    settings: Settings | None = None, *, tune_gc: bool = False, dump_stacks: bool = False
) -> FastAPI:
    """``tune_gc``: set the process's garbage collector up for a server once started;
    ``dump_stacks``: SIGUSR1 writes the threads' and tasks' stacks to the log (both only for a
    process that hosts this one app: ``farmstand serve``)."""
    settings = settings or load_settings()
    runtime = build_runtime(settings)
    telemetry = ProcessTelemetry(
        runtime.metrics, runtime.db, host=settings.metrics_host, port=settings.metrics_port
    )

    @asynccontextmanager
    async def lifespan(served: FastAPI) -> AsyncIterator[None]:
        await runtime.start(dispatch=settings.dispatcher is DispatcherMode.EMBEDDED)
        # uvicorn finishes open responses before this app's shutdown: end streams when it stops.
        runtime.hub.end_streams_when(server_stopping(served))
        if dump_stacks:
            stacks.install(asyncio.get_running_loop())
        if tune_gc:
            tune_after_startup(
                served, freeze=settings.gc_freeze, young_threshold=settings.gc_young_threshold
            )
        await telemetry.start()
        try:
            yield
        finally:
            await telemetry.stop()
            await runtime.stop()

    app = FastAPI(
        title="Farmstand",
        version=__version__,
        description="Order tracking and fulfilment for farmers' markets.",
        lifespan=lifespan,
        docs_url=None,  # served below from vendored assets: the servers have no internet
        redoc_url=None,
        telemetry=tracing.fastapi_telemetry(),  # nothing unless tracing is configured
    )
    app.mount("/static", CachedStaticFiles(directory=STATIC_DIR), name="static")

    docs_page = get_swagger_ui_html(
        openapi_url=app.openapi_url or "/openapi.json",
        title="Farmstand API",
        swagger_js_url="/static/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url="/static/swagger-ui/swagger-ui.css",
        swagger_favicon_url="/static/swagger-ui/favicon-32x32.png",
    ).body
    # The page's one inline script is allowed by its hash; nothing else inline runs.
    docs_csp = inline_script_csp(bytes(docs_page).decode())

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return HTMLResponse(docs_page, headers={"Content-Security-Policy": docs_csp})

    app.state.runtime = runtime
    app.state.pages = Pages(settings)
    # First, so it stays the innermost middleware (see its docstring).
    app.add_middleware(StreamHandoff)
    install_error_handlers(app)
    app.add_middleware(
        InFlightLimit, limit=settings.max_requests_in_flight, on_shed=runtime.note_shed
    )
    # Before anything reads a body (and inside the request line: 413s are logged).
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_body_bytes)
    # Outermost: requests refused by the in-flight cap are logged and measured too.
    app.add_middleware(
        ObservabilityMiddleware,
        metrics=runtime.metrics,
        access_log=settings.access_log,
        on_error=answer_bug,  # a bug: logged once, answered 500 (never re-raised to uvicorn)
    )
    app.include_router(auth_router)
    app.include_router(me_router)
    app.include_router(admin_users_router)
    app.include_router(farms_router)
    # Before the orders router: /api/orders/events must not match /api/orders/{order_id}.
    app.include_router(events_router)
    app.include_router(orders_router)
    app.include_router(notifications_router)
    app.include_router(notifications_admin_router)
    app.include_router(webhooks_router)
    # The pages (server-rendered; not in the OpenAPI document).
    app.include_router(account_pages)
    app.include_router(shop_pages)
    app.include_router(order_pages)
    app.include_router(notification_pages)
    # The admin console (admins only; a not-found page for anyone else).
    app.include_router(order_admin_pages)
    app.include_router(notification_admin_pages)
    app.include_router(farm_catalog_pages)
    app.include_router(picking_pages)
    app.include_router(board_pages)
    app.include_router(board_actions)
    app.include_router(board_csv)
    document_sign_in(app)
    app.include_router(metrics_router)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # The security headers wrap the whole stack, outside Starlette's ServerErrorMiddleware,
    # so that its 500 replies carry them too (an added middleware sits inside it).
    build_stack = app.build_middleware_stack

    def build_with_security_headers() -> ASGIApp:
        return SecurityHeaders(build_stack(), hsts_max_age=settings.hsts_max_age_seconds)

    app.build_middleware_stack = build_with_security_headers  # type: ignore[method-assign]

    logging.getLogger("farmstand").setLevel(settings.log_level)
    return app


def app_factory() -> FastAPI:
    """Entry point for ``uvicorn --factory`` (used by ``farmstand serve``, in each of its
    processes): this process's logs and tracing, then the app."""
    settings = load_settings()
    configure_logging(settings)
    tracing.configure_tracing(settings, role="serve")
    return create_app(settings, tune_gc=True, dump_stacks=True)
