"""Order request and reply shapes (camelCase on the wire)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, Field, StringConstraints, model_validator

from farmstand.accounts.roles import Role
from farmstand.orders.states import FulfillmentType, OrderStatus
from farmstand.schemas import CamelInput, CamelModel, MoneyOut

Id = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
Location = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]
LongText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]
Required = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:00-05:00 is past the last representable UTC time
        raise ValueError("must be between years 1 and 9999 once converted to UTC") from None


# Any offset is accepted; stored and echoed back in UTC like every other time.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


class DeliveryAddress(CamelInput):
    line1: Required
    line2: ShortText | None = None
    city: Required
    region: ShortText | None = None
    postal_code: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20)
    ]
    country: (
        Annotated[
            str, StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Za-z]{2}$")
        ]
        | None
    ) = Field(default=None, description="ISO 3166 two-letter country code")


class OrderItemIn(CamelInput):
    product_id: Id
    quantity: Annotated[int, Field(ge=1, le=10_000)]


class OrderIn(CamelInput):
    farm_id: Id
    items: Annotated[list[OrderItemIn], Field(min_length=1, max_length=100)]
    fulfillment_type: FulfillmentType = FulfillmentType.PICKUP
    pickup_location: Location | None = None
    delivery_address: DeliveryAddress | None = None
    delivery_notes: LongText | None = None

    @model_validator(mode="after")
    def _details_match_fulfilment(self) -> OrderIn:
        if self.fulfillment_type is FulfillmentType.PICKUP:
            if self.delivery_address is not None:
                raise ValueError("deliveryAddress is only for DELIVERY or SHIPPING orders")
        else:
            if self.delivery_address is None:
                raise ValueError(f"deliveryAddress is required for {self.fulfillment_type} orders")
            if self.pickup_location:
                raise ValueError("pickupLocation is only for PICKUP orders")
        return self


class StatusIn(CamelInput):
    status: OrderStatus
    reason: Reason | None = None
    notify_customer: bool = Field(
        default=True,
        description="False for a correction: the customer is not notified (kept in history).",
    )
    expected_version: Annotated[int, Field(ge=1)] | None = Field(
        default=None,
        description="The order version you last saw; a different current version is a 409.",
    )


class ItemPatch(CamelInput):
    prepared: bool


class OrderPatch(CamelInput):
    estimated_ready_at: UtcDatetime | None = None
    estimated_pickup_at: UtcDatetime | None = None
    pickup_location: Location | None = None
    pickup_instructions: LongText | None = None
    tracking_number: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
        | None
    ) = None
    carrier: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
        | None
    ) = None
    expected_version: Annotated[int, Field(ge=1)] | None = None


class BulkStatusIn(CamelInput):
    order_ids: Annotated[list[Id], Field(min_length=1, max_length=500)]
    status: OrderStatus
    reason: Reason | None = None
    notify_customer: bool = True


class PartyOut(CamelModel):
    id: str
    name: str


class ProductRef(CamelModel):
    id: str
    name: str
    unit: str


class OrderItemOut(CamelModel):
    id: str
    product_id: str
    product_name: str
    unit: str
    quantity: int
    unit_price: MoneyOut
    line_total: MoneyOut
    prepared: bool
    prepared_at: datetime | None
    product: ProductRef


class OrderOut(CamelModel):
    id: str
    order_number: str
    status: OrderStatus
    fulfillment_type: FulfillmentType
    customer_id: str
    farm_id: str
    total_amount: MoneyOut
    paid_at: datetime | None
    confirmed_at: datetime | None
    preparing_at: datetime | None
    ready_at: datetime | None
    out_for_delivery_at: datetime | None
    completed_at: datetime | None
    cancelled_at: datetime | None
    refunded_at: datetime | None
    estimated_ready_at: datetime | None
    estimated_pickup_at: datetime | None
    pickup_location: str | None
    pickup_instructions: str | None
    delivery_address: dict[str, Any] | None
    delivery_notes: str | None
    tracking_number: str | None
    carrier: str | None
    version: int
    created_at: datetime
    updated_at: datetime
    customer: PartyOut
    farm: PartyOut
    items: list[OrderItemOut]
    allowed_statuses: list[OrderStatus] = Field(
        description="Statuses you could move this order to now."
    )


class ActorOut(CamelModel):
    id: str
    name: str
    role: Role


class HistoryOut(CamelModel):
    id: str
    order_id: str
    from_status: OrderStatus | None
    to_status: OrderStatus
    changed_by: str | None
    actor: ActorOut | None
    reason: str | None
    metadata: dict[str, Any]
    created_at: datetime


class BulkError(CamelModel):
    order_id: str
    error: str


class BulkResult(CamelModel):
    succeeded: int
    failed: int
    errors: list[BulkError]
