"""The ``farmstand`` command."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from farmstand.accounts.roles import Role
from farmstand.config import EventBusKind, Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from farmstand.accounts.schemas import NewUser

app = typer.Typer(
    help="Farmstand: order tracking and fulfilment for farmers' markets.",
    no_args_is_help=True,
    add_completion=False,
)
user_app = typer.Typer(help="Manage users.", no_args_is_help=True)
app.add_typer(user_app, name="user")
push_app = typer.Typer(help="Web Push (VAPID) keys.", no_args_is_help=True)
app.add_typer(push_app, name="push")


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(help="Server processes.", min=1, max=64)] = 1,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development).")] = False,
) -> None:
    """Serve the web app and API."""
    import uvicorn

    settings = _settings()
    if workers > 1 and settings.event_bus is EventBusKind.MEMORY:
        typer.echo(
            "--workers > 1 needs the Redis event bus: with the in-process bus a change made "
            "through one process would never reach live streams held by the others. Set "
            "FARMSTAND_EVENT_BUS=redis and FARMSTAND_REDIS_URL (and use PostgreSQL, "
            "FARMSTAND_DATABASE_URL=postgresql+asyncpg://...), or run one worker.",
            err=True,
        )
        raise typer.Exit(2)
    from farmstand.observability import multiprocess
    from farmstand.observability.logs import configure_logging

    metrics_dir = None
    if workers > 1:
        # Every process writes its metrics here and a scrape sums them; set before uvicorn
        # starts the processes, which inherit it. Wiped first: no counts from an earlier run.
        metrics_dir = multiprocess.prepare(settings.data_dir, port)
        os.environ[multiprocess.ENV] = str(metrics_dir.resolve())
    configure_logging(settings)
    typer.echo(
        f"Farmstand on http://{host}:{port} (database: {_safe_url(settings)}, "
        f"event bus: {settings.event_bus}, workers: {workers})"
    )
    try:
        uvicorn.run(
            "farmstand.app:app_factory",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            reload=reload,
            log_level=settings.log_level.lower(),
            **proxy_options(settings),
            # Our request line (farmstand.access) replaces uvicorn's; logging is ours.
            access_log=False,
            log_config=None,
            # uvicorn kills a worker that has not answered its health check in 5 s, which
            # a busy host (a deploy, a load test) exceeds while a new worker imports the app:
            # the workers are then killed and restarted in a loop.
            timeout_worker_healthcheck=60,
        )
    finally:
        if metrics_dir is not None:
            multiprocess.remove(metrics_dir)


def proxy_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's proxy settings: X-Forwarded-For/-Proto are believed only from the proxies
    named in FARMSTAND_TRUSTED_PROXIES; with none, the peer is the client, whatever it sends
    (uvicorn would otherwise trust 127.0.0.1, or FORWARDED_ALLOW_IPS, by default)."""
    proxies = settings.trusted_proxy_list
    return {"proxy_headers": bool(proxies), "forwarded_allow_ips": proxies or None}


@app.command()
def worker() -> None:
    """Send notifications and run the delay and reminder scheduler (run any number of these;
    with FARMSTAND_DISPATCHER=off, `serve` leaves sending to them)."""
    settings = _settings()
    typer.echo(f"Farmstand worker (database: {_safe_url(settings)})")
    asyncio.run(_run_worker(settings))


async def _run_worker(settings: Settings) -> None:
    import signal

    from farmstand.app import build_runtime
    from farmstand.observability import stacks
    from farmstand.observability.exporter import ProcessTelemetry
    from farmstand.observability.logs import configure_logging
    from farmstand.observability.tracing import configure_tracing

    configure_logging(settings)
    tracer_provider = configure_tracing(settings, role="worker")
    runtime = build_runtime(settings)
    telemetry = ProcessTelemetry(
        runtime.metrics, runtime.db, host=settings.metrics_host, port=settings.worker_metrics_port
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stacks.install(loop)
    await runtime.start(streams=False, dispatch=True)
    await telemetry.start()
    typer.echo(f"Worker {runtime.dispatcher.name} sending notifications; Ctrl-C to stop.")
    try:
        await stop.wait()
    finally:
        await telemetry.stop()
        await runtime.stop()
        if tracer_provider is not None:
            await asyncio.to_thread(tracer_provider.shutdown)  # sends the spans still buffered
    typer.echo("Worker stopped.")


def _register_bench() -> None:
    from farmstand.bench.cli import bench

    app.command("bench")(bench)


_register_bench()


@push_app.command("keys")
def push_keys() -> None:
    """Generate a VAPID key pair for Web Push and print it as settings."""
    from farmstand.notifications.channels.vapid import generate_vapid_keys

    keys = generate_vapid_keys()
    typer.echo("# Add to the environment (or .env) of every server and worker:")
    for line in keys.env_lines():
        typer.echo(line)


@app.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Bring the database schema up to date."""
    from farmstand.migrate import upgrade

    settings = _settings()
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url, revision)
    typer.echo(f"Database at {revision}: {_safe_url(settings)}")


@app.command()
def demo() -> None:
    """Load demo data (idempotent) and print the demo logins."""
    from farmstand.demo import load_demo

    settings = _settings()
    with _database_errors(settings):
        created = asyncio.run(load_demo(settings))
    typer.echo("Demo data loaded." if created else "Demo data already present.")
    from farmstand.demo import describe_logins

    typer.echo(describe_logins())


@app.command()
def docs(
    check: Annotated[bool, typer.Option(help="Fail if the docs are stale; write nothing.")] = False,
) -> None:
    """Regenerate docs/state-machine.md from the transition table."""
    from farmstand.orders.states import render_markdown

    path = Path(__file__).resolve().parents[2] / "docs" / "state-machine.md"
    text = render_markdown()
    if check:
        if not path.exists() or path.read_text() != text:
            typer.echo(f"{path} is stale: run `farmstand docs`.", err=True)
            raise typer.Exit(1)
        typer.echo(f"{path} is up to date.")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    typer.echo(f"Wrote {path}")


@user_app.command("create")
def user_create(
    email: Annotated[str, typer.Option(help="Sign-in email.")],
    name: Annotated[str, typer.Option(help="Display name.")],
    role: Annotated[Role, typer.Option(help="CUSTOMER, FARMER or ADMIN.", case_sensitive=False)],
    password: Annotated[
        str | None,
        typer.Option(
            help="At least 12 characters, not a common password; prompted for when omitted."
        ),
    ] = None,
    phone: Annotated[str | None, typer.Option(help="E.164, such as +14155550123.")] = None,
) -> None:
    """Create a user of any role (the only way to create an admin)."""
    from pydantic import ValidationError

    from farmstand.accounts.schemas import NewUser

    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        data = NewUser(email=email, name=name, role=role, password=password, phone=phone)
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"])
            typer.echo(f"{field}: {error['msg'].removeprefix('Value error, ')}", err=True)
        raise typer.Exit(2) from None
    settings = _settings()
    with _database_errors(settings):
        user_id = asyncio.run(_create_user(settings, data))
    typer.echo(f"Created {data.role.lower()} {data.email} (id {user_id})")


async def _create_user(settings: Settings, data: NewUser) -> str:
    from farmstand.accounts import service
    from farmstand.app import build_runtime
    from farmstand.errors import FarmstandError

    runtime = build_runtime(settings)
    try:
        async with runtime.db.transaction() as session:
            user = await service.create_user(
                session,
                runtime.passwords,
                **data.model_dump(),
            )
            return user.id
    except FarmstandError as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(1) from None
    finally:
        await runtime.stop()


@user_app.command("disable")
def user_disable(email: Annotated[str, typer.Argument(help="The user's sign-in email.")]) -> None:
    """Disable a user: they cannot sign in, and every session of theirs ends at once."""
    _set_disabled(email, True)
    typer.echo(f"Disabled {email.strip().lower()}; their sessions are revoked.")


@user_app.command("enable")
def user_enable(email: Annotated[str, typer.Argument(help="The user's sign-in email.")]) -> None:
    """Enable a disabled user again (they sign in anew)."""
    _set_disabled(email, False)
    typer.echo(f"Enabled {email.strip().lower()}.")


def _set_disabled(email: str, disabled: bool) -> None:
    settings = _settings()
    with _database_errors(settings):
        asyncio.run(_change_disabled(settings, email, disabled))


async def _change_disabled(settings: Settings, email: str, disabled: bool) -> None:
    from farmstand.accounts import service
    from farmstand.app import build_runtime
    from farmstand.errors import FarmstandError

    runtime = build_runtime(settings)
    try:
        async with runtime.db.transaction() as session:
            user_id = await service.user_id_by_email(session, email)
            await service.set_disabled(session, user_id, disabled)
    except FarmstandError as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(1) from None
    finally:
        await runtime.stop()


@contextlib.contextmanager
def _database_errors(settings: Settings) -> Iterator[None]:
    """Say what is wrong with the database in a sentence, not a traceback."""
    from sqlalchemy.exc import DBAPIError

    try:
        yield
    except DBAPIError as exc:
        text = str(exc.orig).lower()
        if "no such table" in text or ("does not exist" in text and "relation" in text):
            typer.echo(
                f"The database at {_safe_url(settings)} has no Farmstand tables yet: run "
                "`farmstand migrate` first.",
                err=True,
            )
        else:
            typer.echo(f"Cannot use the database at {_safe_url(settings)}: {exc.orig}", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:  # refused connection, unknown host, unreadable file
        typer.echo(f"Cannot reach the database at {_safe_url(settings)}: {exc}", err=True)
        raise typer.Exit(1) from None


def _safe_url(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.database_url).render_as_string(hide_password=True)


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(130)
