"""Reading notification rows back in tests."""

from __future__ import annotations

from sqlalchemy import select

from farmstand.notifications.models import OrderNotification
from tests.factories import Factory


async def rows_of(
    factory: Factory, order_id: str, *, type: str | None = None
) -> list[OrderNotification]:
    async with factory.db.transaction(write=False) as session:
        query = select(OrderNotification).where(OrderNotification.order_id == order_id)
        if type is not None:
            query = query.where(OrderNotification.type == type)
        return list(
            await session.scalars(
                query.order_by(OrderNotification.created_at, OrderNotification.channel)
            )
        )


async def sent_rows_of(
    factory: Factory, order_id: str, *, type: str | None = None
) -> list[OrderNotification]:
    """The rows after the dispatcher sent what was due (email, SMS and push are rendered when
    sent; each row then keeps the copy that went out)."""
    while await factory.runtime.dispatcher.run_once():
        pass
    return await rows_of(factory, order_id, type=type)


def by_channel(rows: list[OrderNotification]) -> dict[str, OrderNotification]:
    return {str(row.channel): row for row in rows}
