"""Builders for tests: users, farms, products and orders in any status, made through the
real use cases so every row is one the product could have written."""

from __future__ import annotations

import itertools
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx

from farmstand.accounts import service as accounts
from farmstand.accounts.models import User
from farmstand.accounts.roles import Role
from farmstand.catalog import service as catalog
from farmstand.catalog.models import Farm, Product
from farmstand.catalog.schemas import FarmIn, ProductIn
from farmstand.deps import Runtime
from farmstand.orders import service as orders
from farmstand.orders import states
from farmstand.orders.records import OrderRecord
from farmstand.orders.schemas import DeliveryAddress, OrderIn, OrderItemIn, OrderPatch
from farmstand.orders.states import FulfillmentType, OrderStatus

PASSWORD = "correct horse battery"
ADDRESS = DeliveryAddress(line1="1 Main St", city="Springfield", postal_code="12345")
_counter = itertools.count(1)


class Factory:
    def __init__(self, runtime: Runtime, client: httpx.AsyncClient | None = None) -> None:
        self.runtime = runtime
        self.db = runtime.db
        self.client = client

    async def user(
        self,
        role: Role = Role.CUSTOMER,
        *,
        email: str | None = None,
        name: str | None = None,
        phone: str | None = None,
        password: str = PASSWORD,
    ) -> User:
        n = next(_counter)
        async with self.db.transaction() as session:
            return await accounts.create_user(
                session,
                self.runtime.passwords,
                email=email or f"{role.lower()}{n}@example.test",
                password=password,
                name=name or f"{role.title()} {n}",
                role=role,
                phone=phone,
            )

    async def farm(self, owner: User | None = None, **fields: Any) -> Farm:
        """A farm; its per-customer limits are lifted (tests of other behaviour place many
        orders for one customer) unless given, as the limit tests do."""
        owner = owner or await self.user(Role.FARMER)
        data = FarmIn(
            **{
                "name": f"Farm {next(_counter)}",
                "pickup_location": "Market stall 1",
                "max_open_orders": 1_000,
                "max_item_quantity": 10_000,
                **fields,
            }
        )
        async with self.db.transaction() as session:
            return await catalog.create_farm(session, owner, data)

    async def product(
        self, farm: Farm, *, price: str = "4.50", stock: int = 100, name: str | None = None
    ) -> Product:
        async with self.db.transaction() as session:
            owner = await session.get(User, farm.owner_id)
            assert owner is not None
            return await catalog.create_product(
                session,
                owner,
                farm.id,
                ProductIn(
                    name=name or f"Product {next(_counter)}",
                    unit="lb",
                    price=Decimal(price),
                    stock=stock,
                ),
            )

    async def order(
        self,
        *,
        status: OrderStatus = OrderStatus.PENDING,
        fulfillment: FulfillmentType = FulfillmentType.PICKUP,
        customer: User | None = None,
        farm: Farm | None = None,
        products: list[Product] | None = None,
        quantity: int = 1,
        placed_at: datetime | None = None,
    ) -> OrderRecord:
        """An order walked from PENDING to ``status`` along the shortest allowed path."""
        customer = customer or await self.user(Role.CUSTOMER)
        farm = farm or await self.farm()
        products = products or [await self.product(farm)]
        data = OrderIn(
            farm_id=farm.id,
            items=[OrderItemIn(product_id=p.id, quantity=quantity) for p in products],
            fulfillment_type=fulfillment,
            delivery_address=None if fulfillment is FulfillmentType.PICKUP else ADDRESS,
        )
        async with self.db.transaction() as session:
            order = await orders.place_order(session, customer, data, now=placed_at)
            owner = await session.get(User, farm.owner_id)
            assert owner is not None
            for rule in states.path_to(status, fulfillment):
                if rule.target in (OrderStatus.READY_FOR_PICKUP, OrderStatus.OUT_FOR_DELIVERY):
                    for item in order.items:
                        await orders.set_item_prepared(session, owner, order.id, item.id, True)
                    if fulfillment is FulfillmentType.SHIPPING:
                        await orders.update_details(
                            session, owner, order.id, OrderPatch(tracking_number="1Z999")
                        )
                order = await orders.change_status(
                    session,
                    owner,
                    order.id,
                    rule.target,
                    policy=self.runtime.order_policy,
                    reason="test reason",
                )
            return order

    async def token(self, user: User) -> str:
        signed_in = await accounts.login(
            self.db,
            self.runtime.passwords,
            self.runtime.signer,
            self.runtime.throttle,
            email=user.email,
            password=PASSWORD,
            address=None,
            user_agent="tests",
        )
        return signed_in.token

    async def headers(self, user: User) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token(user)}"}
