"""Catalogue errors, each carrying its HTTP status and a message safe to show the user."""

from __future__ import annotations

from farmstand.errors import Conflict, Forbidden, NotFound


class FarmNotFound(NotFound):
    message = "Farm not found."


class ProductNotFound(NotFound):
    message = "Product not found."


class NotFarmOwner(Forbidden):
    message = "Only the farm's owner can do that."


class StockChanged(Conflict):
    """The product's stock is no longer what the farmer last saw (orders took some meanwhile):
    a stock set from a stale view would lose them."""

    def __init__(self, stock: int) -> None:
        super().__init__(
            f"Stock changed meanwhile (now {stock}).",
            details={"field": "stock", "currentStock": stock},
        )
        self.stock = stock
