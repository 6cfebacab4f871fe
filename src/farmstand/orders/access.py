"""Who may see and manage which order: one function per question, used by the services, the
SSE streams and the notification routes alike (never re-written in a route or a stream).

- A customer sees the orders they placed; a farmer sees the orders placed at farms they own;
  an admin sees every order.
- The farm side (the farm's owner, an admin) manages an order: items, estimates, its
  delivery log. Which status changes each may make is the state machine's business
  (``states.transition``).
- An order the caller may not see does not exist for them: 404, never 403.

Farm management itself is ``farmstand.catalog.access``.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import ColumnElement, Table

from farmstand.accounts.principal import Person
from farmstand.accounts.roles import Role
from farmstand.catalog import access as farms
from farmstand.catalog.models import Farm
from farmstand.errors import Forbidden
from farmstand.orders.models import Order
from farmstand.orders.records import OrderRecord

ORDERS = cast(Table, Order.__table__)
FARMS = cast(Table, Farm.__table__)


def may_see_order(user: Person, *, customer_id: str, farm_owner_id: str) -> bool:
    """Whether ``user`` may see an order of ``customer_id`` at a farm of ``farm_owner_id``."""
    if user.role is Role.ADMIN:
        return True
    if user.role is Role.FARMER:
        return farm_owner_id == user.id
    return customer_id == user.id


def may_see(user: Person, order: OrderRecord) -> bool:
    return may_see_order(user, customer_id=order.customer_id, farm_owner_id=order.farm_owner_id)


def may_manage(user: Person, order: OrderRecord) -> bool:
    """Whether ``user`` works on ``order`` for the farm: its farm's manager."""
    return farms.may_manage_farm(user, order.farm_owner_id)


def ensure_manages(user: Person, order: OrderRecord, message: str) -> None:
    """403 with ``message`` unless ``user`` manages ``order`` (call once it is visible)."""
    if not may_manage(user, order):
        raise Forbidden(message)


def visible_orders_condition(user: Person) -> ColumnElement[bool] | None:
    """The orders ``user`` may see, as SQL over ``orders`` joined to ``farms``; None for an
    admin (every order). The lists and the streams share it."""
    if user.role is Role.ADMIN:
        return None
    if user.role is Role.FARMER:
        return FARMS.c.owner_id == user.id
    return ORDERS.c.customer_id == user.id


def may_filter_by_farm(user: Person, farm_owner_id: str) -> bool:
    """Whether ``user`` may list orders by this farm: a farmer only their own farms (another
    farm's is a 404); a customer sees their own orders there, an admin all of them."""
    return user.role is not Role.FARMER or farms.may_manage_farm(user, farm_owner_id)


def may_watch_customer(user: Person, customer_id: str) -> bool:
    """Whether ``user`` may follow everything about ``customer_id``'s orders: themself, or an
    admin."""
    return user.role is Role.ADMIN or customer_id == user.id
