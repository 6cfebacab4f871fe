"""The observability settings: checked at start-up with a message naming the variable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from farmstand.config import LogFormat, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No FARMSTAND_ variable from the outer shell, and no .env file."""
    for name in list(os.environ):
        if name.upper().startswith("FARMSTAND_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_are_quiet_and_private(tmp_path: Path):
    settings = load_settings(data_dir=tmp_path)

    assert settings.log_format is LogFormat.TEXT and settings.access_log
    assert settings.metrics_token is None and settings.metrics_port is None
    assert settings.metrics_host == "127.0.0.1" and settings.worker_metrics_port is None
    assert settings.otlp_endpoint is None


def test_values_are_normalised(tmp_path: Path):
    settings = load_settings(
        data_dir=tmp_path,
        log_format="JSON",
        metrics_token="",  # an empty variable: no token
        otlp_endpoint="http://collector:4318/",
    )

    assert settings.log_format is LogFormat.JSON
    assert settings.metrics_token is None
    assert settings.otlp_endpoint == "http://collector:4318"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("metrics_token", "too-short", "FARMSTAND_METRICS_TOKEN: must be at least 16 characters"),
        ("log_format", "xml", "FARMSTAND_LOG_FORMAT"),
        ("otlp_endpoint", "collector:4318", "FARMSTAND_OTLP_ENDPOINT: must be an http://"),
        ("metrics_port", 0, "FARMSTAND_METRICS_PORT"),
        ("worker_metrics_port", 70000, "FARMSTAND_WORKER_METRICS_PORT"),
    ],
)
def test_bad_values_stop_with_the_variable_named(
    tmp_path: Path, field: str, value: object, message: str
):
    with pytest.raises(SettingsError, match=message):
        load_settings(data_dir=tmp_path, **{field: value})


OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def _documented(name: str, doc: str) -> bool:
    """``FARMSTAND_NAME`` in full, or as a sibling's suffix (``FARMSTAND_SMTP_HOST``, ``_PORT``)."""
    if f"FARMSTAND_{name}" in doc:
        return True
    parts = name.split("_")
    return any(
        f"FARMSTAND_{'_'.join(parts[:i])}" in doc and f"`_{'_'.join(parts[i:])}`" in doc
        for i in range(1, len(parts))
    )


def test_every_setting_is_in_the_operations_guide():
    from farmstand.config import Settings

    doc = OPERATIONS.read_text()
    missing = [name for name in Settings.model_fields if not _documented(name.upper(), doc)]
    assert not missing, f"add to docs/operations.md (Settings): {missing}"
