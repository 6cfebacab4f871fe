"""Order errors, each carrying its HTTP status and a message safe to show the user."""

from __future__ import annotations

from farmstand.errors import Conflict, Forbidden, NotFound, Unprocessable


class OrderNotFound(NotFound):
    message = "Order not found."


class OrderItemNotFound(NotFound):
    message = "Order item not found."


class InvalidTransition(Conflict):
    """The target status cannot follow the current one (for this order's fulfilment type)."""


class TransitionForbidden(Forbidden):
    """The actor's role, or their relation to the order, does not allow this change."""


class TransitionGuardFailed(Conflict):
    """The order is not in a state that allows the change yet (items unprepared, ...)."""


class ReasonRequired(Unprocessable):
    message = "A reason is required for this change."


class ConcurrentUpdate(Conflict):
    message = "The order was changed by someone else; reload it and try again."


class OutOfStock(Conflict):
    message = "Not enough stock for one or more items."


class ProductOffSale(Conflict):
    """The farm took a product of the order off sale (``details`` names each)."""


class OrderNotEditable(Conflict):
    message = "The order can no longer be changed."


class OpenOrderLimitReached(Conflict):
    """The customer already has the farm's maximum of open orders there (``maxOpenOrders``)."""


class ItemQuantityLimitExceeded(Unprocessable):
    """A line asks for more of one product than the farm sells per order
    (``maxItemQuantity``)."""
