"""The bench's data set: farmers, farms, products, customers and orders, loaded with bulk SQL.

Rows have the shapes the app itself writes (``accounts.service.create_user``,
``orders.service.place_order``, ``change_status``, ``set_item_prepared``), generated from a
seed so two runs with the same options load the same data. The one password is hashed once,
with argon2 parameters the bench also gives the server (so signing in does not re-hash).
"""

from __future__ import annotations

import base64
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from argon2 import PasswordHasher
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import create_async_engine

from farmstand.accounts.models import User
from farmstand.catalog.models import Farm, Product
from farmstand.db import Base, utcnow
from farmstand.notifications.models import PushSubscription
from farmstand.orders.models import Order, OrderItem, OrderStatusHistory

# Cheap argon2 for the bench accounts (and the server, via its settings): signing in
# thousands of accounts must take seconds, and sign-in is not one of the measured figures.
HASH_TIME_COST = 1
HASH_MEMORY_KIB = 64
ORDER_NUMBER_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
PRODUCTS_PER_FARM = 5
ITEMS_PER_ORDER = 2
STOCK = 1_000_000
CHUNK = 2000


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class PushKeys:
    """The browser side of every seeded push subscription (the push peer decrypts with it)."""

    private_scalar: str  # base64url of the raw P-256 private scalar
    p256dh: str  # base64url of the uncompressed public point
    auth: str  # base64url of the 16-byte auth secret

    @classmethod
    def generate(cls, rng: random.Random) -> PushKeys:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        order = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)
        scalar = rng.randrange(1, order)
        key = ec.derive_private_key(scalar, ec.SECP256R1())
        point = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return cls(b64url(scalar.to_bytes(32, "big")), b64url(point), b64url(rng.randbytes(16)))


@dataclass(frozen=True)
class Segment:
    """A run of orders for one phase: whose they are (the first ``customers``/``farms``)."""

    name: str
    count: int
    customers: int | None = None  # only among the first N customers (None: any)
    farms: int | None = None
    reachable: bool = False  # only customers with a phone and a push subscription


@dataclass
class Dataset:
    """What the load process needs to know about the seeded data (written to a JSON file)."""

    seed: int
    password: str
    farmers: list[str] = field(default_factory=list)  # emails; farmer i owns farm i
    customers: list[str] = field(default_factory=list)
    farm_ids: list[str] = field(default_factory=list)
    farmer_ids: list[str] = field(default_factory=list)  # user ids, in the order of farmers
    customer_ids: list[str] = field(default_factory=list)
    products: list[list[str]] = field(default_factory=list)  # per farm
    # Per segment name: [order id, farm index, customer index, [item ids]]
    orders: dict[str, list[list[Any]]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "password": self.password,
            "farmers": self.farmers,
            "customers": self.customers,
            "farm_ids": self.farm_ids,
            "farmer_ids": self.farmer_ids,
            "customer_ids": self.customer_ids,
            "products": self.products,
            "orders": self.orders,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Dataset:
        return cls(**data)

    def counts(self) -> dict[str, int]:
        return {
            "farmers": len(self.farmers),
            "farms": len(self.farm_ids),
            "customers": len(self.customers),
            "products": sum(len(p) for p in self.products),
            **{f"orders_{name}": len(rows) for name, rows in self.orders.items()},
        }


def reachable(customer: int) -> bool:
    """Nine customers in ten have a phone and a push subscription; the rest get email only
    (their SMS and push rows are written SKIPPED, as the app does)."""
    return customer % 10 != 9


class _Ids:
    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def __call__(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))


def _order_number(index: int) -> str:
    digits = []
    value = index + 31**5  # six symbols for the first 850 million orders
    while value:
        value, rest = divmod(value, len(ORDER_NUMBER_ALPHABET))
        digits.append(ORDER_NUMBER_ALPHABET[rest])
    return "FS-" + "".join(reversed(digits))


class _Builder:
    def __init__(self, seed: int, farms: int, customers: int, push_base: str, keys: PushKeys):
        self.rng = random.Random(seed)
        self.new_id = _Ids(self.rng)
        self.now = utcnow()
        self.push_base = push_base
        self.keys = keys
        self.farms = farms
        self.customers = customers
        self.password = f"bench-password-{seed}"
        self.rows: dict[str, list[dict[str, Any]]] = {
            name: []
            for name in ("users", "farms", "products", "push", "orders", "items", "history")
        }
        self.data = Dataset(seed=seed, password=self.password)
        self.farmer_ids: list[str] = []
        self.customer_ids: list[str] = []
        self.farm_rows: list[dict[str, Any]] = []
        self.product_rows: list[list[dict[str, Any]]] = []
        self.order_count = 0

    def people(self, password_hash: str) -> None:
        for i in range(self.farms):
            email = f"farmer{i}@bench.example.com"
            user_id = self._user(email, f"Bench Farmer {i}", "FARMER", i, password_hash, True)
            self.farmer_ids.append(user_id)
            self.data.farmers.append(email)
            farm: dict[str, Any] = {
                "id": self.new_id(),
                "owner_id": user_id,
                "name": f"Bench Farm {i}",
                "pickup_location": f"Market hall, stall {i + 1}",
                "pickup_instructions": "Give your order number at the stall.",
                "timezone": "UTC",
                # Synthetic customers place many orders at each farm: the per-customer limits
                # (which would refuse them) are lifted; the cost of checking them is measured.
                "max_open_orders": 1_000,
                "max_item_quantity": 10_000,
                "created_at": self.now,
                "updated_at": self.now,
            }
            self.rows["farms"].append(farm)
            self.farm_rows.append(farm)
            self.data.farm_ids.append(farm["id"])
            products = []
            for p in range(PRODUCTS_PER_FARM):
                product: dict[str, Any] = {
                    "id": self.new_id(),
                    "farm_id": farm["id"],
                    "name": f"Produce {p + 1}",
                    "unit": "bunch",
                    "price": Decimal(f"{2 + p}.50"),
                    "stock": STOCK,
                    "created_at": self.now,
                    "updated_at": self.now,
                }
                products.append(product)
                self.rows["products"].append(product)
            self.product_rows.append(products)
            self.data.products.append([p["id"] for p in products])
        for i in range(self.customers):
            email = f"customer{i}@bench.example.com"
            user_id = self._user(
                email, f"Bench Customer {i}", "CUSTOMER", i, password_hash, reachable(i)
            )
            self.customer_ids.append(user_id)
            self.data.customers.append(email)

    def _user(
        self, email: str, name: str, role: str, i: int, password_hash: str, reachable: bool
    ) -> str:
        user_id = self.new_id()
        self.rows["users"].append(
            {
                "id": user_id,
                "email": email,
                "name": name,
                "role": role,
                "phone": f"+1555{(1 if role == 'FARMER' else 2)}{i:06d}" if reachable else None,
                "timezone": "UTC",
                "password_hash": password_hash,
                "quiet_hours_start": None,
                "quiet_hours_end": None,
                "email_unsubscribed_at": None,
                "email_verified_at": self.now,
                "created_at": self.now,
                "updated_at": self.now,
            }
        )
        if reachable:
            sub_id = self.new_id()
            self.rows["push"].append(
                {
                    "id": sub_id,
                    "user_id": user_id,
                    "endpoint": f"{self.push_base}/push/{sub_id}",
                    "p256dh": self.keys.p256dh,
                    "auth": self.keys.auth,
                    "user_agent": "farmstand-bench",
                    "created_at": self.now,
                    "last_used_at": None,
                }
            )
        return user_id

    def segment(self, segment: Segment, status: str) -> None:
        customer_pool = min(segment.customers or self.customers, self.customers)
        farm_pool = min(segment.farms or self.farms, self.farms)
        candidates = [c for c in range(customer_pool) if not segment.reachable or reachable(c)]
        if not candidates:
            candidates = list(range(customer_pool))
        out = self.data.orders.setdefault(segment.name, [])
        for j in range(segment.count):
            customer = candidates[self.rng.randrange(len(candidates))]
            farm = j % farm_pool
            out.append(self._order(farm, customer, status))

    def _order(self, farm: int, customer: int, status: str) -> list[Any]:
        index = self.order_count
        self.order_count += 1
        farm_row = self.farm_rows[farm]
        customer_id = self.customer_ids[customer]
        farmer_id = self.farmer_ids[farm]
        order_id = self.new_id()
        placed = self.now - timedelta(minutes=30, microseconds=index)
        picks = self.rng.sample(self.product_rows[farm], ITEMS_PER_ORDER)
        preparing = status == "PREPARING"
        items, total = [], Decimal("0")
        for position, product in enumerate(picks):
            quantity = 1 + self.rng.randrange(3)
            total += product["price"] * quantity
            items.append(
                {
                    "id": self.new_id(),
                    "order_id": order_id,
                    "product_id": product["id"],
                    "position": position,
                    "product_name": product["name"],
                    "unit": product["unit"],
                    "quantity": quantity,
                    "unit_price": product["price"],
                    "prepared": preparing,
                    "prepared_at": placed + timedelta(minutes=3) if preparing else None,
                }
            )
        self.rows["items"] += items
        steps: list[tuple[str | None, str, str | None, dict[str, Any], datetime]] = [
            (None, "PENDING", "Order placed", {"paid": True, "totalAmount": str(total)}, placed)
        ]
        if preparing:
            confirmed, started = placed + timedelta(minutes=1), placed + timedelta(minutes=2)
            steps.append(("PENDING", "CONFIRMED", None, {"notifyCustomer": True}, confirmed))
            steps.append(("CONFIRMED", "PREPARING", None, {"notifyCustomer": True}, started))
        for seq, (source, target, reason, meta, at) in enumerate(steps, start=1):
            self.rows["history"].append(
                {
                    "id": self.new_id(),
                    "seq": seq,
                    "order_id": order_id,
                    "from_status": source,
                    "to_status": target,
                    "changed_by": customer_id if source is None else farmer_id,
                    "reason": reason,
                    "metadata": meta,
                    "created_at": at,
                }
            )
        # Each change and each item marked prepared bumped the version (the history's seq).
        version = len(steps) + (len(items) if preparing else 0)
        self.rows["orders"].append(
            {
                "id": order_id,
                "order_number": _order_number(index),
                "status": status,
                "fulfillment_type": "PICKUP",
                "customer_id": customer_id,
                "farm_id": farm_row["id"],
                "total_amount": total,
                "paid_at": placed,
                "confirmed_at": placed + timedelta(minutes=1) if preparing else None,
                "preparing_at": placed + timedelta(minutes=2) if preparing else None,
                "pickup_location": farm_row["pickup_location"],
                "pickup_instructions": farm_row["pickup_instructions"],
                "delivery_address": None,
                "delivery_notes": None,
                "version": version,
                "created_at": placed,
                "updated_at": placed + timedelta(minutes=3) if preparing else placed,
            }
        )
        return [order_id, farm, customer, [item["id"] for item in items]]


def build(
    *,
    seed: int,
    farms: int,
    customers: int,
    pending: list[Segment],
    preparing: list[Segment],
    push_base: str,
    keys: PushKeys,
) -> tuple[Dataset, dict[str, list[dict[str, Any]]]]:
    """The data set and its rows per table (nothing written yet)."""
    builder = _Builder(seed, farms, customers, push_base, keys)
    hasher = PasswordHasher(time_cost=HASH_TIME_COST, memory_cost=HASH_MEMORY_KIB)
    builder.people(hasher.hash(builder.password))
    builder.data.farmer_ids = builder.farmer_ids
    builder.data.customer_ids = builder.customer_ids
    for segment in pending:
        builder.segment(segment, "PENDING")
    for segment in preparing:
        builder.segment(segment, "PREPARING")
    return builder.data, builder.rows


TABLES = (
    ("users", User.__tablename__),
    ("farms", Farm.__tablename__),
    ("products", Product.__tablename__),
    ("push", PushSubscription.__tablename__),
    ("orders", Order.__tablename__),
    ("items", OrderItem.__tablename__),
    ("history", OrderStatusHistory.__tablename__),
)


async def load(database_url: str, rows: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    """Insert the rows (multi-row INSERTs in one transaction per table); counts per table."""
    engine = create_async_engine(database_url)
    counts = {}
    try:
        for name, table_name in TABLES:
            table = Base.metadata.tables[table_name]
            batch = rows[name]
            async with engine.begin() as conn:
                for start in range(0, len(batch), CHUNK):
                    await conn.execute(insert(table), batch[start : start + CHUNK])
            counts[name] = len(batch)
    finally:
        await engine.dispose()
    return counts
