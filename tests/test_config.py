"""Settings: defaults, the environment, the .env file, validation and the local secret."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from farmstand.config import SECRET_FILE_NAME, Environment, SettingsError, load_settings

LONG_SECRET = "a-production-secret-that-is-long-enough-42"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No FARMSTAND_ variable from the outer shell, and a working directory without a .env."""
    for name in list(os.environ):
        if name.upper().startswith("FARMSTAND_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults_keep_everything_in_the_data_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    monkeypatch.setenv("FARMSTAND_DATA_DIR", str(data_dir))

    settings = load_settings()

    assert settings.environment is Environment.DEVELOPMENT
    assert settings.database_url == f"sqlite+aiosqlite:///{data_dir / 'farmstand.db'}"
    assert settings.is_sqlite
    assert settings.cancellation_window_hours == 24
    assert settings.login_free_failures_per_account == 5
    assert settings.base_url == "http://127.0.0.1:8000"
    assert not settings.secure_cookies
    assert (data_dir / SECRET_FILE_NAME).exists()


def test_without_a_data_directory_the_working_directory_is_used(tmp_path: Path) -> None:
    settings = load_settings()

    assert settings.database_url == "sqlite+aiosqlite:///farmstand.db"
    assert (tmp_path / SECRET_FILE_NAME).exists()


def test_environment_variables_with_the_prefix_are_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FARMSTAND_CANCELLATION_WINDOW_HOURS", "2.5")
    monkeypatch.setenv("FARMSTAND_DATABASE_URL", "postgresql+asyncpg://farm@db.example:5432/farm")
    monkeypatch.setenv("FARMSTAND_BASE_URL", "https://farm.example/")
    monkeypatch.setenv("FARMSTAND_LOG_LEVEL", "debug")
    monkeypatch.setenv("FARMSTAND_LOGIN_FREE_FAILURES_PER_ACCOUNT", "9")
    monkeypatch.setenv("CANCELLATION_WINDOW_HOURS", "99")  # no prefix: ignored

    settings = load_settings()

    assert settings.cancellation_window_hours == 2.5
    assert settings.database_url == "postgresql+asyncpg://farm@db.example:5432/farm"
    assert not settings.is_sqlite
    assert settings.base_url == "https://farm.example"
    assert settings.secure_cookies
    assert settings.log_level == "DEBUG"
    assert settings.login_free_failures_per_account == 9


def test_dotenv_file_in_the_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "# local overrides\n"
        "FARMSTAND_CANCELLATION_WINDOW_HOURS=12\n"
        f"FARMSTAND_SECRET_KEY={LONG_SECRET}\n"
        "UNRELATED_SETTING=whatever\n"
    )

    settings = load_settings()

    assert settings.cancellation_window_hours == 12
    assert settings.secret_key is not None
    assert settings.secret_key.get_secret_value() == LONG_SECRET


def test_environment_variable_wins_over_dotenv_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("FARMSTAND_CANCELLATION_WINDOW_HOURS=12\n")
    monkeypatch.setenv("FARMSTAND_CANCELLATION_WINDOW_HOURS", "6")

    assert load_settings().cancellation_window_hours == 6


@pytest.mark.parametrize(
    ("variable", "value", "hint"),
    [
        ("FARMSTAND_CANCELLATION_WINDOW_HOURS", "-1", "greater than 0"),
        ("FARMSTAND_CANCELLATION_WINDOW_HOURS", "0", "greater than 0"),
        ("FARMSTAND_CANCELLATION_WINDOW_HOURS", "soon", "number"),
        ("FARMSTAND_DATABASE_URL", "mysql://x", "postgresql+asyncpg://"),
        ("FARMSTAND_DATABASE_URL", "postgresql://u@h/db", "postgresql+asyncpg://"),
        ("FARMSTAND_BASE_URL", "farm.example", "http"),
        ("FARMSTAND_LOG_LEVEL", "LOUD", "DEBUG"),
        ("FARMSTAND_ENVIRONMENT", "staging", "production"),
        ("FARMSTAND_LOGIN_FREE_FAILURES_PER_ACCOUNT", "0", "greater than or equal to 1"),
        ("FARMSTAND_SESSION_TTL_HOURS", "-5", "greater than 0"),
        ("FARMSTAND_PASSWORD_HASH_MEMORY_KIB", "8", "64"),
    ],
)
def test_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, hint: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(SettingsError) as raised:
        load_settings()

    message = str(raised.value)
    assert variable in message
    assert hint in message


def test_every_bad_value_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FARMSTAND_CANCELLATION_WINDOW_HOURS", "-1")
    monkeypatch.setenv("FARMSTAND_DATABASE_URL", "mysql://x")

    with pytest.raises(SettingsError) as raised:
        load_settings()

    assert "FARMSTAND_CANCELLATION_WINDOW_HOURS" in str(raised.value)
    assert "FARMSTAND_DATABASE_URL" in str(raised.value)


def test_bad_value_in_dotenv_file_names_the_variable(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("FARMSTAND_CANCELLATION_WINDOW_HOURS=-1\n")

    with pytest.raises(SettingsError, match="FARMSTAND_CANCELLATION_WINDOW_HOURS"):
        load_settings()


def test_development_secret_is_generated_privately_and_reused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data_dir = tmp_path / "new" / "data"
    monkeypatch.setenv("FARMSTAND_DATA_DIR", str(data_dir))

    first = load_settings()
    second = load_settings()

    secret_file = data_dir / SECRET_FILE_NAME
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert first.secret_key is not None
    assert second.secret_key is not None
    generated = first.secret_key.get_secret_value()
    assert len(generated) >= 32
    assert secret_file.read_text().strip() == generated
    assert second.secret_key.get_secret_value() == generated


@pytest.mark.parametrize("where", ["a-file", "a-file/data"])
def test_data_directory_that_cannot_hold_the_secret_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, where: str
) -> None:
    (tmp_path / "a-file").write_text("not a directory\n")
    monkeypatch.setenv("FARMSTAND_DATA_DIR", str(tmp_path / where))

    with pytest.raises(SettingsError, match="FARMSTAND_DATA_DIR"):
        load_settings()


def test_each_data_directory_gets_its_own_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FARMSTAND_DATA_DIR", str(tmp_path / "one"))
    one = load_settings().secret_key
    monkeypatch.setenv("FARMSTAND_DATA_DIR", str(tmp_path / "two"))
    two = load_settings().secret_key

    assert one is not None
    assert two is not None
    assert one.get_secret_value() != two.get_secret_value()


def test_a_configured_secret_is_used_and_no_file_is_written(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FARMSTAND_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FARMSTAND_SECRET_KEY", LONG_SECRET)

    settings = load_settings()

    assert settings.secret_key is not None
    assert settings.secret_key.get_secret_value() == LONG_SECRET
    assert not (tmp_path / SECRET_FILE_NAME).exists()


def test_production_without_a_secret_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FARMSTAND_ENVIRONMENT", "production")
    monkeypatch.setenv("FARMSTAND_DATA_DIR", str(tmp_path))

    with pytest.raises(SettingsError, match="FARMSTAND_SECRET_KEY must be set in production"):
        load_settings()
    assert not (tmp_path / SECRET_FILE_NAME).exists()


def test_production_with_a_secret_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FARMSTAND_ENVIRONMENT", "production")
    monkeypatch.setenv("FARMSTAND_SECRET_KEY", LONG_SECRET)

    assert load_settings().environment is Environment.PRODUCTION


@pytest.mark.parametrize("environment", ["development", "production"])
def test_short_secret_is_refused(monkeypatch: pytest.MonkeyPatch, environment: str) -> None:
    monkeypatch.setenv("FARMSTAND_ENVIRONMENT", environment)
    monkeypatch.setenv("FARMSTAND_SECRET_KEY", "too-short")

    with pytest.raises(SettingsError) as raised:
        load_settings()

    assert "FARMSTAND_SECRET_KEY" in str(raised.value)
    assert "at least 32 characters" in str(raised.value)
    assert "too-short" not in str(raised.value)


def test_secret_is_hidden_from_repr_and_dumps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FARMSTAND_SECRET_KEY", LONG_SECRET)

    settings = load_settings()

    assert LONG_SECRET not in repr(settings)
    assert LONG_SECRET not in str(settings)
    assert LONG_SECRET not in settings.model_dump_json()
    assert LONG_SECRET not in str(settings.model_dump())


def test_generated_secret_is_hidden_from_repr(tmp_path: Path) -> None:
    settings = load_settings()

    generated = (tmp_path / SECRET_FILE_NAME).read_text().strip()
    assert generated not in repr(settings)


def test_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FARMSTAND_CANCELLATION_WINDOW_HOURS", "6")

    assert load_settings(cancellation_window_hours=3).cancellation_window_hours == 3


def test_passwords_in_connection_urls_stay_out_of_the_settings_repr(tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path,
        database_url="postgresql+asyncpg://farm:s3cret-pass@db.internal/farmstand",
        redis_url="redis://:redis-pass@cache:6379/0",
    )
    shown = repr(settings)
    assert "s3cret-pass" not in shown and "redis-pass" not in shown
    assert "farm:***@db.internal" in shown
    assert settings.database_url.endswith("farm:s3cret-pass@db.internal/farmstand")
