"""The application factory: ``create_app(settings)`` builds one app; nothing global."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from argon2 import PasswordHasher
from fastapi import FastAPI, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from farmstand import __version__
from farmstand.accounts.api import me_router
from farmstand.accounts.api import router as auth_router
from farmstand.accounts.passwords import Passwords
from farmstand.accounts.service import ThrottlePolicy
from farmstand.accounts.tokens import TokenSigner
from farmstand.catalog.api import router as farms_router
from farmstand.config import DispatcherMode, Settings, load_settings
from farmstand.db import Database
from farmstand.deps import Runtime
from farmstand.errors import install_error_handlers
from farmstand.events.api import router as events_router
from farmstand.events.bus import make_bus
from farmstand.events.hub import Hub
from farmstand.events.relay import Sequencer
from farmstand.notifications.api import router as notifications_router
from farmstand.notifications.channels.factory import make_senders
from farmstand.notifications.dispatcher import Dispatcher
from farmstand.notifications.scheduler import Scheduler
from farmstand.notifications.service import NOTIFIER_KEY, Notifier
from farmstand.orders.api import router as orders_router
from farmstand.orders.states import Policy

STATIC_DIR = Path(__file__).parent / "web" / "static"


def build_runtime(settings: Settings) -> Runtime:
    assert settings.secret_key is not None
    db = Database.from_settings(settings)
    bus = make_bus(settings)
    notifier = Notifier(settings)
    # Every transaction can write notifications: the use cases find the notifier here.
    db.session_context[NOTIFIER_KEY] = notifier
    dispatcher = Dispatcher(db, settings, make_senders(settings))
    dispatcher.scheduler = Scheduler(db, settings)
    sequencer = Sequencer(
        db,
        bus,
        relay_interval=settings.event_relay_interval_seconds,
        grace=settings.event_relay_grace_seconds,
        retention=timedelta(days=settings.event_retention_days),
    )
    # Whatever this process commits (a server, a worker, the CLI) it publishes itself: events
    # it wrote are sequenced at once while running, and at the latest when it stops.
    db.commit_listeners.append(sequencer.on_commit)
    return Runtime(
        settings=settings,
        db=db,
        passwords=Passwords(
            PasswordHasher(
                time_cost=settings.password_hash_time_cost,
                memory_cost=settings.password_hash_memory_kib,
            )
        ),
        signer=TokenSigner(
            settings.secret_key.get_secret_value(),
            max_age_seconds=int(settings.session_ttl_hours * 3600),
        ),
        throttle=ThrottlePolicy.from_settings(settings),
        order_policy=Policy(
            cancellation_window=timedelta(hours=settings.cancellation_window_hours)
        ),
        bus=bus,
        hub=Hub(
            db,
            queue_size=settings.sse_queue_size,
            poll_interval=settings.event_poll_interval_seconds,
        ),
        sequencer=sequencer,
        notifier=notifier,
        dispatcher=dispatcher,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    runtime = build_runtime(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await runtime.start(dispatch=settings.dispatcher is DispatcherMode.EMBEDDED)
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="Farmstand",
        version=__version__,
        description="Order tracking and fulfilment for farmers' markets.",
        lifespan=lifespan,
        docs_url=None,  # served below from vendored assets: the servers have no internet
        redoc_url=None,
    )
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="Farmstand API",
            swagger_js_url="/static/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/swagger-ui/favicon-32x32.png",
        )

    app.state.runtime = runtime
    install_error_handlers(app)
    app.include_router(auth_router)
    app.include_router(me_router)
    app.include_router(farms_router)
    # Before the orders router: /api/orders/events must not match /api/orders/{order_id}.
    app.include_router(events_router)
    app.include_router(orders_router)
    app.include_router(notifications_router)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """Prometheus counters of this process (notifications sent and failed per channel)."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    logging.getLogger("farmstand").setLevel(settings.log_level)
    return app


def app_factory() -> FastAPI:
    """Entry point for ``uvicorn --factory`` (used by ``farmstand serve``)."""
    return create_app()
