"""Every table, imported in one place so Alembic and the tests see the whole schema."""

from farmstand.accounts.models import AuthSession, LoginThrottle, User
from farmstand.catalog.models import Farm, Product
from farmstand.db import Base
from farmstand.events.models import EventCounter, OrderEvent
from farmstand.notifications.models import (
    NotificationPreference,
    NotificationResend,
    OrderNotification,
    OrderReminder,
    PushSubscription,
)
from farmstand.orders.models import Order, OrderItem, OrderStatusHistory

__all__ = [
    "AuthSession",
    "Base",
    "EventCounter",
    "Farm",
    "LoginThrottle",
    "NotificationPreference",
    "NotificationResend",
    "Order",
    "OrderEvent",
    "OrderItem",
    "OrderNotification",
    "OrderReminder",
    "OrderStatusHistory",
    "Product",
    "PushSubscription",
    "User",
]
