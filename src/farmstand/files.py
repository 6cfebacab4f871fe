"""Files only their owner may read: the development secret, the SQLite database, the VAPID
keys, the local mailbox and SMS outbox.

Modes are set explicitly (``fchmod``/``chmod``), whatever the process's umask: a permissive
umask (0002, 0) must not leave a secret or a customer's email readable by other accounts.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700

_tightened: set[Path] = set()


def private_dir(directory: Path) -> Path:
    """Create ``directory`` (and missing parents) and make it 0700; once per process each."""
    if directory in _tightened:
        return directory
    directory.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    os.chmod(directory, PRIVATE_DIR)
    _tightened.add(directory)
    return directory


def write_private(path: Path, data: bytes, *, durable: bool = False) -> Path:
    """Write ``path`` through a temporary file created 0600 and a rename: never half a file,
    and the mode holds even when an older file with a wider mode is replaced."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), PRIVATE_FILE)
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return path


def private_file(path: Path) -> None:
    """Make sure ``path`` exists and is 0600 (created empty when missing)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite+aiosqlite:///path`` URL; None for an in-memory database."""
    rest = url.split("://", 1)[1] if "://" in url else ""
    path = rest[1:] if rest.startswith("/") else rest
    path = path.split("?", 1)[0]
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return Path(path)


def private_sqlite(url: str) -> None:
    """Create the SQLite file 0600 before SQLite does (it gives its -wal and -shm files the
    database file's mode), and tighten an existing file and its companions."""
    path = sqlite_path(url)
    if path is None or not path.parent.is_dir():
        return  # SQLite says what is wrong with the path
    private_file(path)
    for suffix in ("-wal", "-shm", "-journal"):
        companion = path.with_name(path.name + suffix)
        with contextlib.suppress(FileNotFoundError):
            os.chmod(companion, PRIVATE_FILE)
