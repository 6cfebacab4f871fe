"""Files only their owner may read, whatever the umask: the development secret, the SQLite
database and its -wal/-shm files, the VAPID keys, the local mailbox and SMS outbox."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from farmstand.config import SECRET_FILE_NAME, load_settings
from farmstand.db import Database
from farmstand.notifications.channels.base import Recipient
from farmstand.notifications.channels.mailbox import FileMailboxSender
from farmstand.notifications.channels.sms import FileOutboxSender
from farmstand.notifications.channels.vapid import VAPID_FILE_NAME, vapid_keys
from farmstand.notifications.models import NotificationChannel
from tests.notifications.peers import make_delivery, notification_settings


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """A umask that leaves every mode as asked (a shared host's 0002, or worse)."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def test_a_rewritten_secret_file_is_private_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, permissive_umask: None
) -> None:
    # Given a secret file too short to use, readable by everyone (an old copy, a bad restore)
    secret_file = tmp_path / SECRET_FILE_NAME
    secret_file.write_text("short\n")
    os.chmod(secret_file, 0o644)
    monkeypatch.setenv("FARMSTAND_DATA_DIR", str(tmp_path))

    # When the settings replace it with a new secret
    settings = load_settings()

    # Then the new file is the owner's only
    assert settings.secret_key is not None
    assert secret_file.read_text().strip() == settings.secret_key.get_secret_value()
    assert mode(secret_file) == 0o600


async def test_the_sqlite_database_and_its_wal_files_are_private(
    tmp_path: Path, permissive_umask: None
) -> None:
    path = tmp_path / "farmstand.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        async with db.transaction() as session:
            await session.execute(text("CREATE TABLE t (x INTEGER)"))
            await session.execute(text("INSERT INTO t VALUES (1)"))
        files = {name: mode(tmp_path / name) for name in os.listdir(tmp_path)}
    finally:
        await db.dispose()
    assert {"farmstand.db", "farmstand.db-wal", "farmstand.db-shm"} <= set(files)
    assert set(files.values()) == {0o600}, files


async def test_an_existing_world_readable_database_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "farmstand.db"
    path.touch()
    os.chmod(path, 0o644)
    db = Database(f"sqlite+aiosqlite:///{path}")
    await db.dispose()
    assert mode(path) == 0o600


async def test_the_mailbox_and_sms_outbox_are_private(
    tmp_path: Path, permissive_umask: None
) -> None:
    settings = notification_settings(tmp_path)
    [mailed] = await FileMailboxSender(settings).send_many([make_delivery()])
    sms = make_delivery(channel=NotificationChannel.SMS)
    sms = type(sms)(
        **{
            **sms.__dict__,
            "recipient": Recipient("u1", "Jane", "jane@example.com", "+14155550123", "UTC"),
        }
    )
    [texted] = await FileOutboxSender(settings).send_many([sms])
    assert not isinstance(mailed, Exception) and not isinstance(texted, Exception)

    for directory in (settings.mailbox_dir, settings.sms_outbox_dir):
        assert mode(directory) == 0o700
        files = list(directory.iterdir())
        assert files and all(mode(f) == 0o600 for f in files)


def test_the_generated_vapid_key_file_is_private(tmp_path: Path, permissive_umask: None) -> None:
    vapid_keys(notification_settings(tmp_path))
    assert mode(tmp_path / VAPID_FILE_NAME) == 0o600
