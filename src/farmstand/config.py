"""Settings read from the environment (prefix ``FARMSTAND_``) and an optional ``.env`` file."""

from __future__ import annotations

import ipaddress
import secrets
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from farmstand.files import write_private

SECRET_FILE_NAME = ".farmstand-secret"


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class EventBusKind(StrEnum):
    MEMORY = "memory"
    REDIS = "redis"


class SmtpSecurity(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"


class LogFormat(StrEnum):
    TEXT = "text"  # one readable line per record, for a terminal
    JSON = "json"  # one JSON object per line, for a log collector


class DispatcherMode(StrEnum):
    EMBEDDED = "embedded"  # inside `farmstand serve`
    OFF = "off"  # only `farmstand worker` processes send


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FARMSTAND_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    environment: Environment = Environment.DEVELOPMENT
    data_dir: Path = Field(default=Path("."), description="Where local files are kept.")
    database_url: str = Field(
        default="",
        description="SQLAlchemy async URL; empty means a SQLite file in the data directory.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Signs session tokens. Generated and kept in a local file in development.",
    )
    base_url: str = "http://127.0.0.1:8000"
    cancellation_window_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 24
    session_ttl_hours: Annotated[float, Field(gt=0, le=24 * 90)] = 24 * 7
    # Sign-in throttling (docs/security.md): failures are counted per (email, address) pair
    # and per address; past the free ones each attempt waits a doubling delay, capped.
    login_free_failures_per_account: Annotated[int, Field(ge=1, le=1000)] = 5
    login_account_backoff_max_seconds: Annotated[float, Field(gt=0, le=86400)] = 15 * 60
    login_account_window_seconds: Annotated[int, Field(ge=1)] = 24 * 3600
    login_free_failures_per_address: Annotated[int, Field(ge=1, le=100_000)] = 100
    login_address_backoff_max_seconds: Annotated[float, Field(gt=0, le=86400)] = 60
    login_address_window_seconds: Annotated[int, Field(ge=1)] = 3600
    login_backoff_base_seconds: Annotated[float, Field(gt=0, le=3600)] = 1
    # X-Forwarded-For/-Proto are believed only from these peers (IPs or CIDRs, comma-separated).
    trusted_proxies: str = ""
    # Email verification and rate limits on account and order requests (per hour windows).
    email_verification_ttl_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 24
    rate_limit_window_seconds: Annotated[int, Field(ge=1, le=7 * 86400)] = 3600
    register_limit_per_email: Annotated[int, Field(ge=1)] = 3
    register_limit_per_address: Annotated[int, Field(ge=1)] = 20
    verification_resend_limit_per_email: Annotated[int, Field(ge=1)] = 3
    verification_resend_limit_per_address: Annotated[int, Field(ge=1)] = 10
    order_limit_per_account: Annotated[int, Field(ge=1)] = 30
    order_limit_per_address: Annotated[int, Field(ge=1)] = 300
    password_hash_time_cost: Annotated[int, Field(ge=1, le=20)] = 3
    password_hash_memory_kib: Annotated[int, Field(ge=64, le=1024 * 1024)] = 64 * 1024
    # Connections per server process, kept open; a request waits at most the timeout for one
    # and is then refused with 503 and Retry-After (the client retries; nothing was written).
    db_pool_size: Annotated[int, Field(ge=1, le=500)] = 20
    db_max_overflow: Annotated[int, Field(ge=0, le=500)] = 0
    db_pool_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 3
    # Requests handled at once per process (live streams not counted); past it, 503 at once.
    max_requests_in_flight: Annotated[int, Field(ge=0, le=100_000)] = 256
    # How long a signed-in session is trusted without looking at the database again; signing
    # out, revocation and account changes clear it in every process at once.
    auth_cache_seconds: Annotated[float, Field(ge=0, le=3600)] = 30
    auth_cache_size: Annotated[int, Field(ge=1, le=10_000_000)] = 50_000
    log_level: str = "INFO"
    # Request bodies larger than this are refused with 413 before they are read (docs/security.md).
    max_request_body_bytes: Annotated[int, Field(ge=1024, le=1024 * 1024 * 1024)] = 1024 * 1024
    # Strict-Transport-Security on replies to https requests; 0 leaves the header out.
    hsts_max_age_seconds: Annotated[int, Field(ge=0, le=2 * 365 * 86400)] = 365 * 86400

    # Observability (docs/operations.md)
    log_format: LogFormat = LogFormat.TEXT
    access_log: bool = True  # one line per request
    # /metrics on the app's port answers this bearer token (or an admin's session), else 404.
    metrics_token: SecretStr | None = None
    # A separate metrics listener without authentication, for a scraper on the same host.
    metrics_host: str = "127.0.0.1"
    metrics_port: Annotated[int | None, Field(ge=1, le=65535)] = None  # `farmstand serve`
    worker_metrics_port: Annotated[int | None, Field(ge=1, le=65535)] = None  # `farmstand worker`
    # OpenTelemetry traces by OTLP/HTTP, e.g. http://collector:4318 (spans go to /v1/traces).
    # Unset: off, unless OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set.
    otlp_endpoint: str | None = None

    event_bus: EventBusKind = EventBusKind.MEMORY
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_channel: Annotated[str, Field(min_length=1, max_length=100)] = "farmstand:events"
    sse_heartbeat_seconds: Annotated[float, Field(gt=0, le=3600)] = 30
    sse_retry_ms: Annotated[int, Field(ge=100, le=600_000)] = 3000
    sse_queue_size: Annotated[int, Field(ge=1, le=100_000)] = 500
    sse_send_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 15
    event_retention_days: Annotated[float, Field(gt=0, le=3650)] = 7
    event_relay_interval_seconds: Annotated[float, Field(gt=0, le=3600)] = 1
    event_relay_grace_seconds: Annotated[float, Field(ge=0, le=3600)] = 2
    event_poll_interval_seconds: Annotated[float, Field(gt=0, le=3600)] = 1
    # The garbage collector of `farmstand serve` processes (see farmstand/gc_tuning.py).
    gc_freeze: bool = True
    gc_young_threshold: Annotated[int, Field(ge=0, le=1_000_000)] = 10_000

    # Notifications: delivery
    dispatcher: DispatcherMode = DispatcherMode.EMBEDDED
    dispatcher_batch_size: Annotated[int, Field(ge=1, le=1000)] = 50
    dispatcher_poll_seconds: Annotated[float, Field(gt=0, le=600)] = 1
    notification_lease_seconds: Annotated[float, Field(gt=0, le=3600)] = 120
    notification_max_attempts: Annotated[int, Field(ge=1, le=50)] = 6
    notification_retry_base_seconds: Annotated[float, Field(gt=0, le=86400)] = 30
    notification_retry_max_seconds: Annotated[float, Field(gt=0, le=7 * 86400)] = 3600
    # A message that keeps failing on its own is retried for at least this long (and at least
    # notification_max_attempts times) before it is FAILED.
    notification_retry_hours: Annotated[float, Field(ge=0, le=24 * 30)] = 24
    # A provider-wide failure (unreachable, login refused, 5xx, 429) pauses the channel in
    # every process: first for the base, doubling on each failed probe, up to the max.
    notification_pause_base_seconds: Annotated[float, Field(gt=0, le=3600)] = 15
    notification_pause_max_seconds: Annotated[float, Field(gt=0, le=86400)] = 600
    # SENT, FAILED and SKIPPED rows older than this are deleted by the dispatcher.
    notification_retention_days: Annotated[float, Field(gt=0, le=3650)] = 90
    email_concurrency: Annotated[int, Field(ge=1, le=100)] = 4
    sms_concurrency: Annotated[int, Field(ge=1, le=100)] = 8
    push_concurrency: Annotated[int, Field(ge=1, le=100)] = 8
    # Email: SMTP when a host is set, else .eml files in <data_dir>/mailbox
    smtp_host: str | None = None
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = 587
    smtp_security: SmtpSecurity = SmtpSecurity.STARTTLS
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 30
    email_from: str = "Farmstand <no-reply@farmstand.localhost>"
    email_reply_to: str | None = None
    # SMS: Twilio when an account is set, else JSON files in <data_dir>/sms-outbox
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from_number: str | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_api_base: str = "https://api.twilio.com"
    # The URL the internet reaches this server at, e.g. https://farmstand.example.com. When set,
    # each SMS asks Twilio for delivery reports at <public_base_url>/api/webhooks/twilio/status.
    public_base_url: str | None = None
    # Web Push (VAPID): generated into <data_dir>/.farmstand-vapid.json in development
    vapid_private_key: SecretStr | None = None
    vapid_public_key: str | None = None
    vapid_subject: str = "mailto:admin@farmstand.localhost"
    # Push endpoints must belong to a known push service (else the server could be made to
    # POST anywhere). Comma-separated host suffixes.
    push_service_hosts: str = (
        "fcm.googleapis.com,updates.push.services.mozilla.com,push.services.mozilla.com,"
        "notify.windows.com,push.apple.com"
    )
    push_allow_http: bool = False  # tests with a local push service only
    # Delays and reminders
    scheduler_interval_seconds: Annotated[float, Field(gt=0, le=3600)] = 60
    reminder_after_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 2
    reminder_before_pickup_minutes: Annotated[float, Field(gt=0, le=24 * 60)] = 60
    # How long the unsubscribe link in an email works (it also ends once used, or when the
    # user changes their notification settings or email address).
    unsubscribe_link_days: Annotated[float, Field(gt=0, le=3650)] = 60
    # A farm resending a notification
    resend_min_interval_seconds: Annotated[float, Field(ge=0, le=86400)] = 300
    resend_max_per_day: Annotated[int, Field(ge=1, le=100)] = 5

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if value and not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "must start with sqlite+aiosqlite:// or postgresql+asyncpg:// "
                "(for example postgresql+asyncpg://user@127.0.0.1:5432/farmstand)"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("twilio_api_base")
    @classmethod
    def _twilio_base(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("public_base_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("metrics_token")
    @classmethod
    def _metrics_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (make one: openssl rand -hex 32)")
        return value

    @field_validator("otlp_endpoint")
    @classmethod
    def _otlp_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL (OTLP over HTTP)")
        return value.rstrip("/")

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: str) -> str:
        items = [item.strip() for item in value.split(",") if item.strip()]
        for item in items:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"{item!r} is not an IP address or network (such as 10.0.0.5 or 10.0.0.0/8)"
                ) from None
        return ",".join(items)

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @model_validator(mode="after")
    def _defaults_from_data_dir(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{self.data_dir / 'farmstand.db'}"
        if self.secret_key is None:
            if self.environment is Environment.PRODUCTION:
                raise ValueError("FARMSTAND_SECRET_KEY must be set in production")
            try:
                self.secret_key = SecretStr(_local_secret(self.data_dir))
            except OSError as exc:
                raise ValueError(
                    f"FARMSTAND_DATA_DIR ({self.data_dir}) cannot keep the development secret: "
                    f"{exc.strerror or exc}"
                ) from None
        if self.twilio_configured and not (
            self.twilio_from_number or self.twilio_messaging_service_sid
        ):
            raise ValueError(
                "FARMSTAND_TWILIO_FROM_NUMBER or FARMSTAND_TWILIO_MESSAGING_SERVICE_SID must be "
                "set with the Twilio account"
            )
        if len(self.secret_key.get_secret_value()) < 32:
            raise ValueError("FARMSTAND_SECRET_KEY must be at least 32 characters long")
        return self

    def __repr_args__(self) -> Any:
        # Passwords inside connection URLs stay out of logs and tracebacks.
        for name, value in super().__repr_args__():
            if name in ("database_url", "redis_url") and isinstance(value, str):
                value = mask_url(value)
            yield name, value

    @property
    def mailbox_dir(self) -> Path:
        return self.data_dir / "mailbox"

    @property
    def sms_outbox_dir(self) -> Path:
        return self.data_dir / "sms-outbox"

    @property
    def push_hosts(self) -> list[str]:
        return [h.strip().lower() for h in self.push_service_hosts.split(",") if h.strip()]

    @property
    def trusted_proxy_list(self) -> list[str]:
        return [item for item in self.trusted_proxies.split(",") if item]

    @property
    def twilio_configured(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def secure_cookies(self) -> bool:
        return self.base_url.startswith("https://")


def _local_secret(data_dir: Path) -> str:
    """Read the development secret from its file, creating it (mode 0600) on first use."""
    path = data_dir / SECRET_FILE_NAME
    try:
        existing = path.read_text().strip()
    except FileNotFoundError:
        existing = ""
    if len(existing) >= 32:
        return existing
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    # A new file, 0600 whatever the umask, renamed over any old one (an empty or short file
    # left with a wider mode does not keep that mode).
    write_private(path, (secret + "\n").encode())
    return secret


def mask_url(url: str) -> str:
    """``scheme://user:***@host/...`` for a URL with a password; unchanged otherwise."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class SettingsError(Exception):
    """Raised with a readable message when the environment holds a bad value."""


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            name = f"FARMSTAND_{field.upper()}" if field else "settings"
            message = error["msg"].removeprefix("Value error, ")
            lines.append(f"  {name}: {message}")
        raise SettingsError("Invalid settings:\n" + "\n".join(lines)) from None
