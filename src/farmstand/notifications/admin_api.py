"""Admin routes: notifications across all farms, retries, requeues and channel health."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from farmstand.db import utcnow
from farmstand.deps import AdminUser, SessionDep
from farmstand.notifications import admin as admin_service
from farmstand.notifications.models import (
    NotificationChannel,
    NotificationStatus,
    OrderNotification,
)
from farmstand.notifications.schemas import (
    AdminDeliveryOut,
    ChannelCounts,
    ChannelHealthOut,
    DeliveryDetails,
    DeliveryPage,
    RequeueIn,
    RequeueOut,
)
from farmstand.schemas import (
    ERROR_RESPONSES,
    Envelope,
    decode_cursor,
    ok,
    parse_enum_list,
    split_page,
)

router = APIRouter(tags=["notifications"], responses=ERROR_RESPONSES)

Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=500)]


def admin_view(row: OrderNotification) -> AdminDeliveryOut:
    meta = row.meta or {}

    def text(key: str) -> str | None:
        value = meta.get(key)
        return value if isinstance(value, str) else None

    return AdminDeliveryOut(
        id=row.id,
        order_id=row.order_id,
        user_id=row.user_id,
        type=row.type,
        channel=row.channel,
        status=row.status,
        title=row.title,
        attempts=row.attempts,
        resent="resendOf" in meta,
        last_error=row.last_error,
        next_attempt_at=row.next_attempt_at,
        provider_message_id=row.provider_message_id,
        sent_at=row.sent_at,
        delivery_status=row.delivery_status,
        delivery_error_code=row.delivery_error_code,
        delivery_updated_at=row.delivery_updated_at,
        read_at=row.read_at,
        created_at=row.created_at,
        details=DeliveryDetails(
            audience=text("audience"),
            reason=text("reason"),
            quiet_hours_until=text("quietHoursUntil"),
            resend_of=text("resendOf"),
            requested_by=text("requestedBy"),
            retried_by=text("retriedBy"),
            retried_at=text("retriedAt"),
            previous_error=text("previousError"),
        ),
    )


@router.get("/api/admin/notifications", summary="Notifications across all farms (admin)")
async def admin_notifications(
    _admin: AdminUser,
    session: SessionDep,
    status_filter: Annotated[str | None, Query(alias="status", max_length=100)] = None,
    channel: Annotated[str | None, Query(max_length=20)] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Envelope[DeliveryPage]:
    statuses = parse_enum_list(status_filter, NotificationStatus, "status")
    channels = parse_enum_list(channel, NotificationChannel, "channel")
    rows = await admin_service.admin_list(
        session,
        statuses=statuses,
        channel=channels[0] if channels else None,
        before=decode_cursor(cursor) if cursor else None,
        limit=limit + 1,
    )
    page, next_cursor = split_page(rows, limit)
    return ok(DeliveryPage(items=[admin_view(row) for row in page], next_cursor=next_cursor))


@router.get(
    "/api/admin/notifications/stats",
    summary="Notifications per channel and status, and channels paused by an outage",
)
async def admin_stats(_admin: AdminUser, session: SessionDep) -> Envelope[ChannelCounts]:
    now = utcnow()
    channels = {
        name: ChannelHealthOut(
            paused=health.paused(now),
            paused_until=health.paused_until,
            paused_since=health.paused_since,
            failures=health.failures,
            last_error=health.last_error,
        )
        for name, health in (await admin_service.channel_health(session)).items()
    }
    return ok(
        ChannelCounts(counts=await admin_service.counts_by_channel(session), channels=channels)
    )


@router.post(
    "/api/admin/notifications/requeue",
    summary="Send every FAILED notification of a channel and/or time range again (admin)",
)
async def admin_requeue(
    body: RequeueIn, _admin: AdminUser, session: SessionDep
) -> Envelope[RequeueOut]:
    count = await admin_service.requeue_failed(
        session, channel=body.channel, since=body.since, until=body.until
    )
    return ok(RequeueOut(requeued=count))


@router.post(
    "/api/admin/notifications/{notification_id}/retry",
    summary="Send a FAILED or SKIPPED notification again (admin)",
)
async def admin_retry(
    notification_id: str, admin: AdminUser, session: SessionDep
) -> Envelope[AdminDeliveryOut]:
    return ok(admin_view(await admin_service.admin_retry(session, admin, notification_id)))
