"""Which passwords are accepted (NIST SP 800-63B): length in code points, the common list,
nothing built from the account's email or name; everywhere a password is chosen."""

from __future__ import annotations

import httpx
import pytest

from farmstand.accounts import password_policy
from farmstand.demo import ADMIN, CUSTOMERS, DEMO_PASSWORD, FARMERS
from tests.accounts.test_api import register_body
from tests.factories import PASSWORD


@pytest.mark.parametrize(
    ("password", "expected"),
    [
        ("aaaaaaaaaa", "at least 12 characters"),
        ("aaaaaaaaaaaa", "too repetitive"),
        ("abcdefghijklmnop", "too repetitive"),
        ("password1234", "most common passwords"),
        ("qwertyuiop[]", "most common passwords"),
        ("sunshine2024!", "a few digits or symbols added"),
        ("x" * 257, "at most 256 characters"),
        ("my farmstand account", "name of this service"),
    ],
)
def test_weak_passwords_are_refused_with_a_reason(password: str, expected: str) -> None:
    assert any(expected in problem for problem in password_policy.problems(password))


def test_length_counts_characters_not_bytes() -> None:
    # Twelve characters of several bytes each are twelve characters: accepted.
    assert password_policy.problems("ñandú-çà-飛鳥山") == []
    assert "at least 12" in password_policy.problems("飛鳥山飛鳥山飛鳥山")[0]


def test_passwords_with_the_email_or_name_are_refused() -> None:
    problems = password_policy.problems(
        "carolineisgreat!", email="caroline@example.com", name="Caroline Baker"
    )
    assert password_policy.HAS_EMAIL in problems
    assert password_policy.HAS_NAME in problems
    assert password_policy.problems("baker of bread 7", name="Caroline Baker") == [
        password_policy.HAS_NAME
    ]


def test_long_uncommon_passphrases_need_no_digits_or_symbols() -> None:
    assert password_policy.problems("plum tomatoes in june") == []
    assert password_policy.problems(PASSWORD) == []


def test_the_demo_logins_pass_the_policy() -> None:
    for user in (ADMIN, *FARMERS, *CUSTOMERS):
        assert password_policy.problems(DEMO_PASSWORD, email=user.email, name=user.name) == []


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("aaaaaaaaaaaa", "too repetitive"),
        ("password1234", "most common"),
        ("ann.lee.in.the.orchard", "your email"),
        ("Ann Lee picks plums", "your name"),
    ],
)
async def test_registration_refuses_weak_passwords_with_field_details(
    client: httpx.AsyncClient, password: str, message: str
) -> None:
    body = register_body(email="ann.lee@example.com", name="Ann Lee", password=password)

    response = await client.post("/api/auth/register", json=body)

    assert response.status_code == 422
    (detail,) = response.json()["details"]
    assert detail["field"] == "password"
    assert message in detail["message"]
