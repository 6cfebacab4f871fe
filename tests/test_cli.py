"""The ``farmstand`` command: migrate, user create, demo, and bad settings."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner, Result

from farmstand.accounts.models import User
from farmstand.accounts.passwords import Passwords
from farmstand.accounts.roles import Role
from farmstand.catalog.models import Farm, Product
from farmstand.cli import app
from farmstand.db import Database
from farmstand.demo import DEMO_PASSWORD
from farmstand.orders.models import Order, OrderStatusHistory
from farmstand.orders.states import FulfillmentType, OrderStatus, replay
from tests import services

PASSWORD = "operator passphrase"
CHEAP_HASHING = {
    "FARMSTAND_PASSWORD_HASH_TIME_COST": "1",
    "FARMSTAND_PASSWORD_HASH_MEMORY_KIB": "64",
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No FARMSTAND_ variable from the outer shell, and a working directory without a .env."""
    for name in list(os.environ):
        if name.upper().startswith("FARMSTAND_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@dataclass
class Cli:
    env: dict[str, str]

    def __call__(self, *args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(app, list(args), env=self.env, input=input)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def cli(data_dir: Path) -> Cli:
    """The command with its data directory in tmp_path (nothing migrated yet)."""
    return Cli({"FARMSTAND_DATA_DIR": str(data_dir), **CHEAP_HASHING})


@pytest.fixture
def migrated_cli(cli: Cli, data_dir: Path, sqlite_template: Path) -> Cli:
    """The command with an up-to-date SQLite database in its data directory."""
    data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(sqlite_template, data_dir / "farmstand.db")
    return cli


def sqlite_rows(path: Path, query: str, *params: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(query, params).fetchall()


def create_user_args(email: str = "ada@farmstand.example", **options: str) -> list[str]:
    args = {"email": email, "name": "Ada Admin", "role": "ADMIN", "password": PASSWORD, **options}
    command = ["user", "create"]
    for key, value in args.items():
        command += [f"--{key}", value]
    return command


# migrate


def test_migrate_creates_the_sqlite_database_in_the_data_directory(
    cli: Cli, data_dir: Path
) -> None:
    result = cli("migrate")

    assert result.exit_code == 0, result.output
    database = data_dir / "farmstand.db"
    assert database.exists()
    assert "Database at head" in result.stdout
    tables = {row[0] for row in sqlite_rows(database, "SELECT name FROM sqlite_master")}
    assert {"users", "auth_sessions", "farms", "products", "orders"} <= tables

    again = cli("migrate")
    assert again.exit_code == 0, again.output


# user create


def test_user_create_makes_an_admin_who_can_sign_in(migrated_cli: Cli, data_dir: Path) -> None:
    result = migrated_cli(*create_user_args(email="Ada@Farmstand.example", phone="+1 415 555 0123"))

    assert result.exit_code == 0, result.output
    assert "Created admin ada@farmstand.example" in result.stdout
    rows = sqlite_rows(
        data_dir / "farmstand.db",
        "SELECT id, role, name, phone, password_hash FROM users WHERE email = ?",
        "ada@farmstand.example",
    )
    assert len(rows) == 1
    user_id, role, name, phone, password_hash = rows[0]
    assert f"(id {user_id})" in result.stdout
    assert (role, name, phone) == ("ADMIN", "Ada Admin", "+14155550123")
    assert isinstance(password_hash, str)
    assert PASSWORD not in password_hash
    assert services.run(Passwords().verify(password_hash, PASSWORD)) is True


def test_user_create_accepts_a_lower_case_role(migrated_cli: Cli, data_dir: Path) -> None:
    result = migrated_cli(*create_user_args(email="rosa@farmstand.example", role="farmer"))

    assert result.exit_code == 0, result.output
    rows = sqlite_rows(data_dir / "farmstand.db", "SELECT role FROM users")
    assert rows == [("FARMER",)]


def test_user_create_prompts_for_the_password_when_omitted(
    migrated_cli: Cli, data_dir: Path
) -> None:
    args = [
        "user",
        "create",
        "--email",
        "tom@farmstand.example",
        "--name",
        "Tom",
        "--role",
        "ADMIN",
    ]

    result = migrated_cli(*args, input=f"{PASSWORD}\n{PASSWORD}\n")

    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    (password_hash,) = sqlite_rows(data_dir / "farmstand.db", "SELECT password_hash FROM users")[0]
    assert services.run(Passwords().verify(str(password_hash), PASSWORD)) is True


def test_user_create_with_a_taken_email_fails_clearly(migrated_cli: Cli, data_dir: Path) -> None:
    assert migrated_cli(*create_user_args()).exit_code == 0

    result = migrated_cli(*create_user_args(email="ADA@farmstand.example", name="Someone Else"))

    assert result.exit_code != 0
    assert "ada@farmstand.example already exists" in result.stderr
    rows = sqlite_rows(data_dir / "farmstand.db", "SELECT name FROM users")
    assert rows == [("Ada Admin",)]


@pytest.mark.parametrize(
    ("options", "field", "hint"),
    [
        ({"email": "not-an-email"}, "email", "email"),
        ({"password": "short"}, "password", "at least 12 characters"),
        ({"password": "password1234"}, "password", "most common passwords"),
        ({"password": "ada admin rules"}, "password", "must not contain your name"),
        ({"phone": "12345"}, "phone", "E.164"),
        ({"name": "   "}, "name", "at least 1 character"),
    ],
)
def test_user_create_with_bad_input_exits_2_with_a_message(
    migrated_cli: Cli, data_dir: Path, options: dict[str, str], field: str, hint: str
) -> None:
    result = migrated_cli(*create_user_args(**options))

    assert result.exit_code == 2
    assert f"{field}:" in result.stderr
    assert hint in result.stderr
    assert sqlite_rows(data_dir / "farmstand.db", "SELECT COUNT(*) FROM users") == [(0,)]


def test_user_create_makes_a_verified_account(migrated_cli: Cli, data_dir: Path) -> None:
    assert migrated_cli(*create_user_args()).exit_code == 0

    rows = sqlite_rows(data_dir / "farmstand.db", "SELECT email_verified_at FROM users")

    assert rows[0][0] is not None


def test_user_disable_ends_sessions_and_enable_restores_sign_in(
    migrated_cli: Cli, data_dir: Path
) -> None:
    assert (
        migrated_cli(*create_user_args(email="bo@farmstand.example", role="CUSTOMER")).exit_code
        == 0
    )
    db = data_dir / "farmstand.db"
    (user_id,) = sqlite_rows(db, "SELECT id FROM users")[0]
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO auth_sessions (id, user_id, created_at, expires_at) "
            "VALUES ('s1', ?, '2026-01-01 00:00:00', '2999-01-01 00:00:00')",
            (user_id,),
        )

    disabled = migrated_cli("user", "disable", "Bo@farmstand.example")
    after_disable = sqlite_rows(db, "SELECT disabled_at FROM users")[0][0]
    revoked = sqlite_rows(db, "SELECT revoked_at FROM auth_sessions")[0][0]
    reasons = sqlite_rows(db, "SELECT data FROM order_events WHERE type = 'ACCOUNT_CHANGED'")
    enabled = migrated_cli("user", "enable", "bo@farmstand.example")
    unknown = migrated_cli("user", "disable", "nobody@farmstand.example")

    assert disabled.exit_code == 0, disabled.output
    assert "Disabled bo@farmstand.example" in disabled.stdout
    assert after_disable is not None
    assert revoked is not None
    assert any("disabled" in str(row[0]) for row in reasons)
    assert enabled.exit_code == 0
    assert sqlite_rows(db, "SELECT disabled_at FROM users")[0][0] is None
    assert unknown.exit_code == 1
    assert "No user with email nobody@farmstand.example" in unknown.stderr


def test_user_create_with_an_unknown_role_is_a_usage_error(migrated_cli: Cli) -> None:
    result = migrated_cli(*create_user_args(role="GARDENER"))

    assert result.exit_code == 2
    assert "GARDENER" in result.stderr


# demo


@dataclass
class DemoSummary:
    roles: Counter[Role]
    farms: int
    products: int
    statuses: Counter[OrderStatus]
    fulfilments: Counter[FulfillmentType]
    replayed: dict[str, tuple[OrderStatus, OrderStatus]]
    admin_password_ok: bool


async def summarise(database_url: str) -> DemoSummary:
    db = Database(database_url)
    try:
        async with db.transaction(write=False) as session:
            roles = Counter(
                dict(
                    (
                        await session.execute(select(User.role, func.count()).group_by(User.role))
                    ).all()
                )
            )
            farms = await session.scalar(select(func.count()).select_from(Farm))
            products = await session.scalar(select(func.count()).select_from(Product))
            orders = (await session.scalars(select(Order))).all()
            history = (
                await session.execute(
                    select(
                        OrderStatusHistory.order_id,
                        OrderStatusHistory.from_status,
                        OrderStatusHistory.to_status,
                    ).order_by(OrderStatusHistory.order_id, OrderStatusHistory.seq)
                )
            ).all()
            admin_hash = await session.scalar(
                select(User.password_hash).where(User.role == Role.ADMIN)
            )
    finally:
        await db.dispose()
    steps: dict[str, list[tuple[OrderStatus | None, OrderStatus]]] = {}
    for order_id, source, target in history:
        steps.setdefault(order_id, []).append((source, target))
    return DemoSummary(
        roles=roles,
        farms=farms or 0,
        products=products or 0,
        statuses=Counter(order.status for order in orders),
        fulfilments=Counter(order.fulfillment_type for order in orders),
        replayed={o.id: (o.status, replay(steps.get(o.id, []))) for o in orders},
        admin_password_ok=await Passwords().verify(admin_hash, DEMO_PASSWORD),
    )


@pytest.fixture
def demo_cli(cli: Cli, database_url: str) -> Iterator[Cli]:
    """The command pointed at a migrated, empty database (SQLite or PostgreSQL)."""
    yield Cli({**cli.env, "FARMSTAND_DATABASE_URL": database_url})


def test_demo_loads_once_and_then_reports_it_is_present(demo_cli: Cli, database_url: str) -> None:
    first = demo_cli("demo")
    second = demo_cli("demo")

    assert first.exit_code == 0, first.output
    assert "Demo data loaded." in first.stdout
    assert "admin@farmstand.example" in first.stdout
    assert DEMO_PASSWORD in first.stdout
    assert second.exit_code == 0, second.output
    assert "Demo data already present." in second.stdout

    summary = services.run(summarise(database_url))
    assert isinstance(summary, DemoSummary)
    assert summary.roles == {Role.ADMIN: 1, Role.FARMER: 2, Role.CUSTOMER: 3}
    assert summary.farms == 2
    assert summary.products == 12
    assert 25 <= sum(summary.statuses.values()) <= 35
    assert set(summary.statuses) == set(OrderStatus)
    assert set(summary.fulfilments) == set(FulfillmentType)
    for order_id, (current, replayed) in summary.replayed.items():
        assert replayed is current, order_id
    assert summary.admin_password_ok


# bad settings


@pytest.mark.parametrize(
    "command",
    [
        ["migrate"],
        ["demo"],
        ["serve"],
        create_user_args(),
    ],
    ids=["migrate", "demo", "serve", "user-create"],
)
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FARMSTAND_CANCELLATION_WINDOW_HOURS", "-1"),
        ("FARMSTAND_DATABASE_URL", "mysql://x"),
    ],
)
def test_bad_setting_makes_any_command_exit_2_naming_the_variable(
    cli: Cli, command: list[str], variable: str, value: str, data_dir: Path
) -> None:
    result = Cli({**cli.env, variable: value})(*command)

    assert result.exit_code == 2, result.output
    assert variable in result.stderr
    assert "Traceback" not in result.output
    assert not (data_dir / "farmstand.db").exists()


def test_bad_setting_in_dotenv_file_makes_the_command_exit_2(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("FARMSTAND_LOG_LEVEL=LOUD\n")

    result = cli("migrate")

    assert result.exit_code == 2
    assert "FARMSTAND_LOG_LEVEL" in result.stderr


def test_data_directory_that_is_a_file_makes_the_command_exit_2(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory\n")
    cli = Cli({"FARMSTAND_DATA_DIR": str(tmp_path / "a-file")})

    result = cli("migrate")

    assert result.exit_code == 2
    assert "FARMSTAND_DATA_DIR" in result.stderr


def test_without_a_command_the_help_is_shown() -> None:
    result = CliRunner().invoke(app, [])

    assert "migrate" in result.output
    assert "demo" in result.output
    assert "user" in result.output


def test_demo_before_migrate_says_to_migrate_not_a_traceback(cli: Cli) -> None:
    result = cli("demo")
    assert result.exit_code == 1
    assert "run `farmstand migrate` first" in result.output
    assert "Traceback" not in result.output


def test_an_unreachable_database_is_named_in_one_line(cli: Cli) -> None:
    cli.env["FARMSTAND_DATABASE_URL"] = "postgresql+asyncpg://nobody@127.0.0.1:1/none"
    result = cli(
        "user",
        "create",
        "--email",
        "a@example.com",
        "--name",
        "A",
        "--role",
        "ADMIN",
        "--password",
        PASSWORD,
    )
    assert result.exit_code == 1
    assert "Cannot reach the database at postgresql+asyncpg://nobody@127.0.0.1:1/none" in (
        result.output
    )


def test_the_worker_command_and_push_keys_exist(cli: Cli) -> None:
    keys = cli("push", "keys")
    assert keys.exit_code == 0
    assert "FARMSTAND_VAPID_PRIVATE_KEY=" in keys.output
    assert "FARMSTAND_VAPID_PUBLIC_KEY=" in keys.output
    assert cli("worker", "--help").exit_code == 0
