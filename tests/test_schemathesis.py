"""The whole HTTP API fuzzed from its own OpenAPI schema with schemathesis.

Every operation is called as each role (anonymous, customer, farmer, admin) with generated
requests, valid and invalid, against an app in-process on SQLite. The answer must never be a
500, must use a status code the operation documents, and must match the documented schema.

Seed data (a farm with products, orders in several statuses, a second farm the farmer does not
own) is built once per module through the real use cases on a copy of the migrated SQLite
template, and that file is copied again for every test, as `sqlite_url` copies the template:
the ids are the same in each copy and every test starts from the same state. Hooks swap
generated values for real ones most of the time (ids in paths, filters and bodies, status
targets the seeded order allows, detail fields that fit its fulfilment type), so the requests
reach past "not found" into the rules.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import hypothesis.strategies as st
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from farmstand.accounts.roles import Role
from farmstand.app import build_runtime, create_app
from farmstand.orders.service import PREPARABLE
from farmstand.orders.states import TRANSITIONS, FulfillmentType, OrderStatus
from tests import services
from tests.conftest import make_settings
from tests.factories import PASSWORD, Factory

ROLES = ("anonymous", "customer", "farmer", "admin")
# Left off: `positive_data_acceptance` wants a 2xx for every schema-valid request, but here a
# valid request is refused by design for the wrong role (403), another's order (404) or the
# wrong status (409); and `negative_data_rejection` would blame the hooks below, which turn some
# invalid requests into valid ones by putting real ids in.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 2026,
        "generation": {"max-examples": 25, "deterministic": True, "database": "none"},
        "phases": {
            # One request at a time against a fresh copy of the data; no request chains.
            "stateful": {"enabled": False},
            # No probes with methods an endpoint lacks: Starlette's router answers those 405
            # before any of our code runs, and they were a fifth of the requests.
            "coverage": {"unexpected-methods": []},
        },
        # A stream is cut after its first frame (``FirstFrameOnly``), so the timeout is only
        # for a refusal that is slow to come on a loaded machine: it failed at 1 s in a run
        # beside the bench, where waiting for news took up the whole second anyway.
        "operations": [
            {
                "include-tag": "events",
                "request-timeout": 10,
                "max-stream-events": 5,
                "generation": {"max-examples": 10},
            }
        ],
    }
)


def _openapi() -> dict[str, Any]:
    # The schema does not depend on the settings; this app never opens its database, but may
    # write generated keys into its data directory.
    with tempfile.TemporaryDirectory() as data_dir:
        app = create_app(make_settings("sqlite+aiosqlite:///:memory:", Path(data_dir)))
        return app.openapi()


SCHEMA = schemathesis.openapi.from_dict(_openapi(), config=CONFIG)


@dataclass
class Seed:
    """Ids of the seeded rows, and a bearer token per role."""

    farms: dict[str, list[str]] = field(default_factory=dict)  # farm id -> its product ids
    orders: dict[str, list[str]] = field(default_factory=dict)  # order id -> its item ids
    # order id -> (status when seeded, fulfilment type)
    kinds: dict[str, tuple[OrderStatus, FulfillmentType]] = field(default_factory=dict)
    customer_id: str = ""  # the customer who placed the orders
    tokens: dict[str, str] = field(default_factory=dict)  # role -> token
    logins: list[tuple[str, str]] = field(default_factory=list)  # (email, password)

    def headers(self, role: str) -> dict[str, str]:
        token = self.tokens.get(role)
        return {"Authorization": f"Bearer {token}"} if token else {}


# The seed of the running test, read by the hooks below when Hypothesis draws an example.
ACTIVE: list[Seed] = []


async def _seed(settings_url: str, data_dir: Path) -> Seed:
    runtime = build_runtime(make_settings(settings_url, data_dir))
    # Started, so the seeded orders' events are sequenced (and the app's relay has no backlog).
    await runtime.start()
    try:
        factory = Factory(runtime)
        seed = Seed()
        admin = await factory.user(Role.ADMIN)
        farmer = await factory.user(Role.FARMER)
        customer = await factory.user(Role.CUSTOMER)
        farm = await factory.farm(farmer)
        products = [await factory.product(farm, stock=10_000) for _ in range(3)]
        other_farm = await factory.farm()  # owned by someone else: invisible to `farmer`
        other_products = [await factory.product(other_farm)]
        seed.farms = {
            farm.id: [p.id for p in products],
            other_farm.id: [p.id for p in other_products],
        }
        # Open orders first: Hypothesis starts from the first element of a sampled list.
        S, F = OrderStatus, FulfillmentType
        plan = [
            (S.CONFIRMED, F.PICKUP),
            (S.PREPARING, F.SHIPPING),
            (S.PENDING, F.DELIVERY),
            (S.PREPARING, F.PICKUP),
            (S.PENDING, F.PICKUP),
            (S.READY_FOR_PICKUP, F.PICKUP),
            (S.OUT_FOR_DELIVERY, F.SHIPPING),
            (S.COMPLETED, F.PICKUP),
            (S.CANCELLED, F.PICKUP),
            (S.REFUNDED, F.PICKUP),
        ]
        for status, fulfillment in plan:
            order = await factory.order(
                status=status,
                fulfillment=fulfillment,
                customer=customer,
                farm=farm,
                products=products[:2],
            )
            seed.orders[order.id] = [item.id for item in order.items]
            seed.kinds[order.id] = (status, fulfillment)
        seed.customer_id = customer.id
        stranger = await factory.order(farm=other_farm, products=other_products)
        seed.orders[stranger.id] = [item.id for item in stranger.items]
        seed.kinds[stranger.id] = (OrderStatus.PENDING, FulfillmentType.PICKUP)
        for role, user in (("customer", customer), ("farmer", farmer), ("admin", admin)):
            seed.tokens[role] = await factory.token(user)
            seed.logins.append((user.email, PASSWORD))
        return seed
    finally:
        await runtime.stop()


@pytest.fixture(scope="module")
def seeded(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Seed]:
    """A migrated SQLite file holding the seed data, made once for the module."""
    directory = tmp_path_factory.mktemp("schemathesis-seed")
    path = directory / "seeded.db"
    shutil.copyfile(sqlite_template, path)
    seed = services.run(_seed(f"sqlite+aiosqlite:///{path}", directory))
    assert isinstance(seed, Seed)
    return path, seed


class FirstFrameOnly:
    """Ends an event stream after its first frame. The status, the headers and that frame are
    what the schema describes; a stream left open would hold every example until the request
    timeout for news that never comes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        streaming = ended = False
        with anyio.CancelScope() as cut:

            async def relay(message: Message) -> None:
                nonlocal streaming, ended
                if ended:
                    return
                if message["type"] == "http.response.start":
                    streaming = any(
                        name.lower() == b"content-type" and value.startswith(b"text/event-stream")
                        for name, value in message.get("headers", [])
                    )
                elif streaming and message["type"] == "http.response.body" and message["body"]:
                    message = {**message, "more_body": False}
                    ended = True
                    cut.cancel()
                await send(message)

            await self.app(scope, receive, relay)


@pytest.fixture
def api(seeded: tuple[Path, Seed], tmp_path: Path) -> Iterator[ASGIApp]:
    """An app on a fresh copy of the seeded database (built like the `app` fixture)."""
    template, seed = seeded
    path = tmp_path / "farmstand.db"
    shutil.copyfile(template, path)
    app = create_app(make_settings(f"sqlite+aiosqlite:///{path}", tmp_path))
    ACTIVE.append(seed)
    try:
        yield FirstFrameOnly(app)
    finally:
        ACTIVE.remove(seed)
        # schemathesis started the app's lifespan on first call; end it (disposes the engine).
        shutdown_lifespans()


def _active() -> Seed:
    assert ACTIVE, "the `api` fixture sets the seed"
    return ACTIVE[-1]


def _mostly(real: st.SearchStrategy[Any], generated: Any) -> st.SearchStrategy[Any]:
    """Three times in four a value built from the seed data, else the generated one."""
    return st.integers(0, 3).flatmap(lambda n: st.just(generated) if n == 0 else real)


def _endpoint(context: schemathesis.HookContext) -> tuple[str, str]:
    operation = context.operation
    return (operation.method.upper(), operation.path) if operation else ("", "")


@SCHEMA.hook("flatmap_path_parameters")
def real_path_ids(
    context: schemathesis.HookContext, path_parameters: object
) -> st.SearchStrategy[Any]:
    if not isinstance(path_parameters, dict):
        return st.just(path_parameters)
    seed = _active()
    if "order_id" in path_parameters:
        parent, child, children = "order_id", "item_id", seed.orders
    elif "farm_id" in path_parameters:
        parent, child, children = "farm_id", "product_id", seed.farms
    else:
        return st.just(path_parameters)

    def with_parent(parent_id: str) -> st.SearchStrategy[dict[str, Any]]:
        chosen = {**path_parameters, parent: parent_id}
        if child not in path_parameters:
            return st.just(chosen)
        real_child = st.sampled_from(children[parent_id]).map(lambda c: {**chosen, child: c})
        return _mostly(real_child, chosen)

    # Insertion order, so a derandomized run picks the same kind of row every time.
    parents = st.sampled_from(list(children))
    if child == "item_id" and child in path_parameters:
        # Items can be marked only on orders being prepared: offer those as often as the rest.
        open_orders = [i for i, (status, _) in seed.kinds.items() if status in PREPARABLE]
        parents = st.one_of(st.sampled_from(open_orders), parents)
    return _mostly(parents.flatmap(with_parent), path_parameters)


@SCHEMA.hook("flatmap_query")
def real_query_ids(context: schemathesis.HookContext, query: object) -> st.SearchStrategy[Any]:
    if not isinstance(query, dict):
        return st.just(query)
    seed = _active()
    farm_ids = st.sampled_from(list(seed.farms))
    endpoint = _endpoint(context)
    if endpoint == ("GET", "/api/orders"):
        statuses = st.lists(st.sampled_from(list(OrderStatus)), min_size=1, max_size=3)
        extra = st.fixed_dictionaries(
            {},
            optional={
                "farmId": farm_ids,
                "status": statuses.map(",".join),
                "limit": st.integers(1, 5),
            },
        )
    elif endpoint == ("GET", "/api/orders/events"):
        # Exactly one of the three scopes, as the endpoint asks.
        extra = st.one_of(
            farm_ids.map(lambda i: {"farmId": i}),
            st.sampled_from(list(seed.orders)).map(lambda i: {"orderId": i}),
            st.just({"customerId": seed.customer_id}),
        )
        query = {k: v for k, v in query.items() if k not in ("farmId", "orderId", "customerId")}
    else:
        return st.just(query)
    return _mostly(extra.map(lambda more: {**query, **more}), query)


@SCHEMA.hook("flatmap_body")
def real_body_ids(context: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
    if not isinstance(body, dict):
        return st.just(body)
    seed = _active()
    endpoint = _endpoint(context)
    real: st.SearchStrategy[Any]
    if endpoint == ("POST", "/api/auth/login"):
        real = st.sampled_from(seed.logins).map(
            lambda login: {**body, "email": login[0], "password": login[1]}
        )
    elif endpoint == ("POST", "/api/orders") and isinstance(body.get("items"), list):
        lines = [line for line in body["items"] if isinstance(line, dict)]

        def order_for(farm_id: str) -> st.SearchStrategy[dict[str, Any]]:
            product_ids = st.sampled_from(seed.farms[farm_id])
            items = st.tuples(*(product_ids for _ in lines)).map(
                lambda ids: [
                    {**line, "productId": pid, "quantity": 1}
                    for line, pid in zip(lines, ids, strict=True)
                ]
            )
            return items.map(lambda new: {**body, "farmId": farm_id, "items": new})

        real = st.sampled_from(list(seed.farms)).flatmap(order_for)
    elif endpoint == ("POST", "/api/orders/bulk-status"):
        real = st.lists(st.sampled_from(list(seed.orders)), min_size=1, max_size=4).map(
            lambda ids: {**body, "orderIds": ids}
        )
    elif endpoint[1].startswith("/api/farms/{farm_id}/products"):
        # The schema allows any string for a price; only a decimal with two places is one.
        prices = st.decimals(0, Decimal("99999999.99"), places=2).map(str)
        real = prices.map(lambda price: {**body, "price": price})
    elif "expectedVersion" in body:
        # A random version almost never matches; without one the change itself is tried.
        real = st.just({k: v for k, v in body.items() if k != "expectedVersion"})
    else:
        return st.just(body)
    return _mostly(real, body)


# Any offset a client may send (up to ±23:59) on any date, the first and last ones included.
AWARE_TIMES = st.builds(
    lambda moment, minutes: moment.replace(tzinfo=timezone(timedelta(minutes=minutes))).isoformat(),
    st.one_of(st.sampled_from([datetime.min, datetime.max]), st.datetimes()),
    st.integers(-(24 * 60 - 1), 24 * 60 - 1),
)
FIELDS_FOR = {
    FulfillmentType.PICKUP: {"pickupLocation", "pickupInstructions"},
    FulfillmentType.DELIVERY: set(),
    FulfillmentType.SHIPPING: {"trackingNumber", "carrier"},
}
ONLY_FOR_SOME = set().union(*FIELDS_FOR.values())


@SCHEMA.hook("flatmap_case")
def plausible_order_changes(
    context: schemathesis.HookContext, case: schemathesis.Case
) -> st.SearchStrategy[Any]:
    """Status targets and detail fields that fit the seeded order, so changes get through."""
    endpoint = _endpoint(context)
    kind = _active().kinds.get((case.path_parameters or {}).get("order_id", ""))
    if kind is None or not isinstance(case.body, dict):
        return st.just(case)
    status, fulfillment = kind
    body = case.body
    if endpoint == ("PUT", "/api/orders/{order_id}/status"):
        targets = [
            rule.target
            for rule in TRANSITIONS
            if rule.source is status and fulfillment in rule.fulfillment
        ]
        if not targets:
            return st.just(case)
        bodies = st.sampled_from(targets).map(
            lambda target: {**body, "status": target, "reason": body.get("reason") or "Fuzzing"}
        )
    elif endpoint == ("PATCH", "/api/orders/{order_id}"):
        kept = {
            key: value
            for key, value in body.items()
            if key not in ONLY_FOR_SOME or key in FIELDS_FOR[fulfillment]
        }
        times = st.fixed_dictionaries(
            {"estimatedReadyAt": AWARE_TIMES}, optional={"estimatedPickupAt": AWARE_TIMES}
        )
        bodies = times.map(lambda more: {**kept, **more})
    else:
        return st.just(case)
    return _mostly(bodies.map(lambda new: _with_body(case, new)), case)


def _with_body(case: schemathesis.Case, body: dict[str, Any]) -> schemathesis.Case:
    case.body = body
    return case


@SCHEMA.parametrize()
@pytest.mark.parametrize("role", ROLES)
# `api` is one database per operation and role, shared by that test's examples on purpose:
# whatever earlier examples changed, every answer must still conform.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_api_answers_within_its_schema(case: schemathesis.Case, role: str, api: ASGIApp) -> None:
    case.call_and_validate(app=api, headers=_active().headers(role), checks=CHECKS)
