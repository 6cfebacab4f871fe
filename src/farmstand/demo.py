"""Demo data: an admin, two farms with their farmers, three customers, products and ~30 orders.

Orders are walked through the real use cases (place, prepare, change status) with backdated
clocks, so every status history is one the state machine allows.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from farmstand.accounts.models import User
from farmstand.accounts.passwords import Passwords
from farmstand.accounts.roles import Role
from farmstand.accounts.service import create_user
from farmstand.app import build_runtime
from farmstand.catalog import service as catalog
from farmstand.catalog.schemas import FarmIn, ProductIn
from farmstand.config import Settings
from farmstand.db import utcnow
from farmstand.orders import service as orders
from farmstand.orders.schemas import DeliveryAddress, OrderIn, OrderItemIn, OrderPatch
from farmstand.orders.states import FulfillmentType, OrderStatus, Policy

DEMO_PASSWORD = "sunny-market-morning"


@dataclass(frozen=True)
class DemoUser:
    email: str
    name: str
    role: Role
    phone: str | None = None


ADMIN = DemoUser("admin@farmstand.example", "Ada Admin", Role.ADMIN)
FARMERS = (
    DemoUser("rosa@greenacre.example", "Rosa Green", Role.FARMER, "+15035550101"),
    DemoUser("tom@hillside.example", "Tom Hill", Role.FARMER, "+15035550102"),
)
CUSTOMERS = (
    DemoUser("carol@example.com", "Carol Baker", Role.CUSTOMER, "+15035550201"),
    DemoUser("dan@example.com", "Dan Cook", Role.CUSTOMER, "+15035550202"),
    DemoUser("erin@example.com", "Erin Fields", Role.CUSTOMER),
)
FARMS = (
    FarmIn(
        name="Green Acre Farm",
        pickup_location="Saturday Market, stall 12",
        pickup_instructions="Give your order number at the green tent.",
        timezone="America/Los_Angeles",
        max_open_orders=10,  # regulars pre-order for several markets ahead
    ),
    FarmIn(
        name="Hillside Orchard",
        pickup_location="Hillside barn, 44 Orchard Lane",
        pickup_instructions="Ring the bell by the barn door.",
        timezone="America/Los_Angeles",
        max_open_orders=10,
    ),
)
PRODUCTS = (
    (
        ("Heirloom tomatoes", "lb", "4.50"),
        ("Salad greens", "bag", "5.00"),
        ("Free-range eggs", "dozen", "7.25"),
        ("Carrots", "bunch", "3.00"),
        ("Sourdough loaf", "loaf", "8.00"),
        ("Basil", "bunch", "2.50"),
    ),
    (
        ("Honeycrisp apples", "lb", "3.75"),
        ("Pears", "lb", "3.25"),
        ("Apple cider", "half gallon", "9.00"),
        ("Wildflower honey", "jar", "12.00"),
        ("Plum jam", "jar", "6.50"),
        ("Cherries", "pint", "6.00"),
    ),
)

# Target status for each order, and the fulfilment types it makes sense for.
PLAN: tuple[tuple[OrderStatus, FulfillmentType], ...] = tuple(
    (status, fulfilment)
    for status, types in (
        (
            OrderStatus.PENDING,
            (
                FulfillmentType.PICKUP,
                FulfillmentType.DELIVERY,
                FulfillmentType.SHIPPING,
                FulfillmentType.PICKUP,
            ),
        ),
        (
            OrderStatus.CONFIRMED,
            (
                FulfillmentType.PICKUP,
                FulfillmentType.DELIVERY,
                FulfillmentType.SHIPPING,
                FulfillmentType.PICKUP,
            ),
        ),
        (
            OrderStatus.PREPARING,
            (
                FulfillmentType.PICKUP,
                FulfillmentType.DELIVERY,
                FulfillmentType.SHIPPING,
                FulfillmentType.PICKUP,
            ),
        ),
        (OrderStatus.READY_FOR_PICKUP, (FulfillmentType.PICKUP,) * 4),
        (
            OrderStatus.OUT_FOR_DELIVERY,
            (FulfillmentType.DELIVERY, FulfillmentType.SHIPPING, FulfillmentType.DELIVERY),
        ),
        (
            OrderStatus.COMPLETED,
            (
                FulfillmentType.PICKUP,
                FulfillmentType.DELIVERY,
                FulfillmentType.SHIPPING,
                FulfillmentType.PICKUP,
            ),
        ),
        (
            OrderStatus.CANCELLED,
            (
                FulfillmentType.PICKUP,
                FulfillmentType.DELIVERY,
                FulfillmentType.PICKUP,
                FulfillmentType.PICKUP,
            ),
        ),
        (
            OrderStatus.REFUNDED,
            (FulfillmentType.PICKUP, FulfillmentType.SHIPPING, FulfillmentType.PICKUP),
        ),
    )
    for fulfilment in types
)

ADDRESS = DeliveryAddress(
    line1="12 Elm Street", city="Portland", region="OR", postal_code="97201", country="US"
)


def describe_logins() -> str:
    lines = [f"Demo logins (password for all: {DEMO_PASSWORD}):"]
    for user in (ADMIN, *FARMERS, *CUSTOMERS):
        lines.append(f"  {user.role.lower():<9} {user.email}")
    return "\n".join(lines)


async def load_demo(settings: Settings, *, now: datetime | None = None) -> bool:
    """Create the demo data unless it is already there; True when it was created."""
    runtime = build_runtime(settings)
    try:
        async with runtime.db.transaction() as session:
            if await session.scalar(select(User.id).where(User.email == ADMIN.email)):
                return False
            await _create(session, runtime.passwords, runtime.order_policy, now or utcnow())
            return True
    finally:
        await runtime.stop()


async def _create(
    session: AsyncSession, passwords: Passwords, policy: Policy, now: datetime
) -> None:
    rng = random.Random(2026)
    users: dict[str, User] = {}
    for spec in (ADMIN, *FARMERS, *CUSTOMERS):
        users[spec.email] = await create_user(
            session,
            passwords,
            email=spec.email,
            password=DEMO_PASSWORD,
            name=spec.name,
            role=spec.role,
            phone=spec.phone,
            timezone="America/Los_Angeles",
        )
    admin = users[ADMIN.email]
    farms = []
    for farmer_spec, farm_in, catalogue in zip(FARMERS, FARMS, PRODUCTS, strict=True):
        farmer_user = users[farmer_spec.email]
        farm = await catalog.create_farm(session, farmer_user, farm_in)
        products = [
            await catalog.create_product(
                session,
                farmer_user,
                farm.id,
                ProductIn(name=name, unit=unit, price=Decimal(price), stock=500),
            )
            for name, unit, price in catalogue
        ]
        farms.append((farmer_user, farm, products))

    customers = [users[c.email] for c in CUSTOMERS]
    for index, (target, fulfilment) in enumerate(PLAN):
        farmer, farm, products = farms[index % len(farms)]
        customer = customers[index % len(customers)]
        # Older orders went further; open ones are recent (within the cancellation window).
        final = target in (OrderStatus.COMPLETED, OrderStatus.CANCELLED, OrderStatus.REFUNDED)
        placed = now - timedelta(hours=rng.uniform(30, 240) if final else rng.uniform(1, 20))
        clock = _Clock(placed, rng, limit=now)
        lines = rng.sample(products, k=rng.randint(1, 3))
        order = await orders.place_order(
            session,
            customer,
            OrderIn(
                farm_id=farm.id,
                items=[OrderItemIn(product_id=p.id, quantity=rng.randint(1, 4)) for p in lines],
                fulfillment_type=fulfilment,
                delivery_address=ADDRESS if fulfilment is not FulfillmentType.PICKUP else None,
                delivery_notes="Leave by the side gate."
                if fulfilment is not FulfillmentType.PICKUP
                else None,
            ),
            now=clock.now,
        )
        actor = admin if index % 7 == 0 else farmer
        for step, reason, by in _path(target, fulfilment, index):
            who = {"farm": actor, "customer": customer}[by]
            if step in (OrderStatus.READY_FOR_PICKUP, OrderStatus.OUT_FOR_DELIVERY):
                for item in order.items:
                    await orders.set_item_prepared(
                        session, who, order.id, item.id, True, now=clock.tick()
                    )
                if fulfilment is FulfillmentType.SHIPPING:
                    await orders.update_details(
                        session,
                        who,
                        order.id,
                        OrderPatch(tracking_number=f"1Z{rng.randrange(10**9):09d}", carrier="UPS"),
                        now=clock.tick(),
                    )
            if step is OrderStatus.CONFIRMED:
                await orders.update_details(
                    session,
                    who,
                    order.id,
                    OrderPatch(estimated_ready_at=clock.now + timedelta(hours=3)),
                    now=clock.tick(),
                )
            order = await orders.change_status(
                session, who, order.id, step, policy=policy, reason=reason, now=clock.tick()
            )


def _path(
    target: OrderStatus, fulfilment: FulfillmentType, index: int
) -> list[tuple[OrderStatus, str | None, str]]:
    """The steps from PENDING to ``target``: (status, reason, 'farm' or 'customer')."""
    s = OrderStatus
    last_mile = s.READY_FOR_PICKUP if fulfilment is FulfillmentType.PICKUP else s.OUT_FOR_DELIVERY
    forward = [s.CONFIRMED, s.PREPARING, last_mile, s.COMPLETED]
    if target is s.PENDING:
        return []
    if target in forward:
        return [(step, None, "farm") for step in forward[: forward.index(target) + 1]]
    if target is s.CANCELLED:
        if index % 2:
            return [(s.CANCELLED, "Plans changed", "customer")]
        return [(s.CONFIRMED, None, "farm"), (s.CANCELLED, "Hail damaged the crop", "farm")]
    # REFUNDED: after a cancellation, or after completion when something was wrong.
    if index % 2:
        return [
            (s.CANCELLED, "Sold out at the market", "farm"),
            (s.REFUNDED, "Refund for cancelled order", "farm"),
        ]
    return [
        *((step, None, "farm") for step in forward),
        (s.REFUNDED, "Bruised fruit in the box", "farm"),
    ]


class _Clock:
    """Backdated time that moves forward a few minutes per step."""

    def __init__(self, start: datetime, rng: random.Random, limit: datetime) -> None:
        self.now = start
        self._rng = rng
        self._limit = limit

    def tick(self) -> datetime:
        # Never past the real present: history and events must not come from the future.
        step = timedelta(minutes=self._rng.randint(3, 40))
        self.now = min(self.now + step, max(self.now, self._limit))
        return self.now
