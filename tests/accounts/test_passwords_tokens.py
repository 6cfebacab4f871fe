"""Password hashing and session tokens, without a database."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from itsdangerous import URLSafeTimedSerializer
from itsdangerous.timed import TimestampSigner

from farmstand.accounts.passwords import Passwords
from farmstand.accounts.tokens import TokenSigner

SECRET = "unit-test-secret-that-is-long-enough-0123456789"
SESSION_ID = "6f1c2b9e-0d7a-4c1e-9a53-2f8e3c4d5b6a"


@pytest.fixture
def passwords() -> Passwords:
    return Passwords(PasswordHasher(time_cost=1, memory_cost=64))


# Passwords


async def test_hash_is_not_the_password_and_verifies(passwords: Passwords) -> None:
    stored = await passwords.hash("correct horse battery")

    assert "correct horse battery" not in stored
    assert stored.startswith("$argon2")
    assert await passwords.verify(stored, "correct horse battery") is True


async def test_same_password_hashes_differently_each_time(passwords: Passwords) -> None:
    first = await passwords.hash("correct horse battery")
    second = await passwords.hash("correct horse battery")

    assert first != second
    assert await passwords.verify(second, "correct horse battery") is True


@pytest.mark.parametrize(
    "attempt", ["Correct horse battery", "correct horse batter", "", "correct horse battery "]
)
async def test_wrong_password_does_not_verify(passwords: Passwords, attempt: str) -> None:
    stored = await passwords.hash("correct horse battery")

    assert await passwords.verify(stored, attempt) is False


async def test_unknown_account_never_verifies(passwords: Passwords) -> None:
    assert await passwords.verify(None, "correct horse battery") is False
    assert await passwords.verify(None, "farmstand-timing-equaliser") is False


@pytest.mark.parametrize("stored", ["", "not-a-hash", "$argon2id$v=19$m=64,t=1,p=1$garbage"])
async def test_corrupt_stored_hash_does_not_verify_or_crash(
    passwords: Passwords, stored: str
) -> None:
    assert await passwords.verify(stored, "correct horse battery") is False


async def test_hash_made_with_old_parameters_needs_rehash(passwords: Passwords) -> None:
    stored = await passwords.hash("correct horse battery")
    stronger = Passwords(PasswordHasher(time_cost=2, memory_cost=128))

    assert passwords.needs_rehash(stored) is False
    assert stronger.needs_rehash(stored) is True
    assert await stronger.verify(stored, "correct horse battery") is True


# Tokens


def test_token_round_trips_the_session_id() -> None:
    signer = TokenSigner(SECRET, max_age_seconds=3600)

    token = signer.sign(SESSION_ID)

    assert signer.unsign(token) == SESSION_ID
    assert signer.max_age_seconds == 3600


def test_token_from_another_secret_is_refused() -> None:
    token = TokenSigner("another-secret-that-is-long-enough-9876543210", 3600).sign(SESSION_ID)

    assert TokenSigner(SECRET, 3600).unsign(token) is None


def test_tampered_token_is_refused() -> None:
    signer = TokenSigner(SECRET, 3600)
    token = signer.sign(SESSION_ID)
    payload, _, rest = token.partition(".")
    other = signer.sign("00000000-0000-0000-0000-000000000000")
    swapped = other.partition(".")[0] + "." + rest

    assert signer.unsign(swapped) is None
    # Flip a character inside the signature (the last base64 character can differ only in
    # padding bits, which decode to the same signature: tampering there proves nothing).
    i = len(token) - 5
    assert signer.unsign(token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]) is None
    assert signer.unsign(payload) is None


@pytest.mark.parametrize(
    "token", ["", ".", "..", "garbage", "a.b.c", "x" * 10_000, "é.ü.ß", "\x00\x01"]
)
def test_garbage_token_is_refused_without_raising(token: str) -> None:
    assert TokenSigner(SECRET, 3600).unsign(token) is None


def test_token_older_than_the_ttl_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    signer = TokenSigner(SECRET, max_age_seconds=60)
    token = signer.sign(SESSION_ID)
    signed_at = TimestampSigner.get_timestamp(TimestampSigner(SECRET))

    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda _self: signed_at + 59)
    assert signer.unsign(token) == SESSION_ID
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda _self: signed_at + 120)
    assert signer.unsign(token) is None


def test_signed_value_that_is_not_a_session_id_is_refused() -> None:
    serializer = URLSafeTimedSerializer(SECRET, salt="farmstand.session")
    token = serializer.dumps({"session": SESSION_ID, "role": "ADMIN"})

    assert TokenSigner(SECRET, 3600).unsign(token) is None


def test_token_for_another_purpose_is_refused() -> None:
    token = URLSafeTimedSerializer(SECRET, salt="farmstand.password-reset").dumps(SESSION_ID)

    assert TokenSigner(SECRET, 3600).unsign(token) is None


def test_token_does_not_contain_the_secret() -> None:
    token = TokenSigner(SECRET, 3600).sign(SESSION_ID)

    assert SECRET not in token
