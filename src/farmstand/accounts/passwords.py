"""Password hashing with argon2 (argon2-cffi), run off the event loop."""

from __future__ import annotations

from functools import cached_property

import anyio.to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class Passwords:
    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or PasswordHasher()

    @cached_property
    def _dummy_hash(self) -> str:
        return self.hasher.hash("farmstand-timing-equaliser")

    async def hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(self.hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Check a password; with no hash (unknown account) spend the same time and fail."""
        target = password_hash or self._dummy_hash

        def _check() -> bool:
            try:
                return self.hasher.verify(target, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        matches = await anyio.to_thread.run_sync(_check)
        return matches and password_hash is not None

    def needs_rehash(self, password_hash: str) -> bool:
        return self.hasher.check_needs_rehash(password_hash)
