"""Routes: preferences, the in-app centre, push subscriptions, delivery logs and admin."""

from __future__ import annotations

from html import escape
from typing import Annotated

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import HTMLResponse

from farmstand.accounts.roles import Role
from farmstand.deps import AdminUser, CurrentUser, RuntimeDep, SessionDep
from farmstand.errors import Forbidden, ServiceUnavailable
from farmstand.notifications import service
from farmstand.notifications.channels.push import VapidKeyError, vapid_keys
from farmstand.notifications.models import (
    NotificationChannel,
    NotificationStatus,
    OrderNotification,
)
from farmstand.notifications.schemas import (
    ChannelCounts,
    DeliveryOut,
    DeliveryPage,
    MarkedRead,
    NotificationOut,
    NotificationPage,
    PreferencesIn,
    PreferencesOut,
    PushSubscriptionIn,
    PushSubscriptionOut,
    QuietHours,
    ResendOut,
    UnreadCount,
    VapidKey,
)
from farmstand.orders import service as orders
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


def _preferences_out(view: service.PreferenceView) -> PreferencesOut:
    quiet = (
        QuietHours(start=view.quiet_hours_start, end=view.quiet_hours_end)
        if view.quiet_hours_start and view.quiet_hours_end
        else None
    )
    return PreferencesOut(
        channels=view.channels,
        quiet_hours=quiet,
        timezone=view.timezone,
        email_unsubscribed=view.email_unsubscribed,
    )


def _in_app_out(row: OrderNotification) -> NotificationOut:
    return NotificationOut(
        id=row.id,
        order_id=row.order_id,
        type=row.type,
        title=row.title,
        message=row.message,
        url=row.meta.get("url"),
        created_at=row.created_at,
        read_at=row.read_at,
    )


def delivery_out(row: OrderNotification) -> DeliveryOut:
    meta = {k: v for k, v in (row.meta or {}).items() if k not in ("html",)}
    return DeliveryOut.model_validate(
        {
            **{k: getattr(row, k) for k in DeliveryOut.model_fields if k != "metadata"},
            "metadata": meta,
        }
    )


# -- preferences ----------------------------------------------------------------------------


@router.get("/api/me/notification-preferences", summary="Your notification preferences")
async def get_preferences(user: CurrentUser, session: SessionDep) -> Envelope[PreferencesOut]:
    return ok(_preferences_out(await service.get_preferences(session, user)))


@router.put("/api/me/notification-preferences", summary="Change your notification preferences")
async def put_preferences(
    body: PreferencesIn, user: CurrentUser, session: SessionDep
) -> Envelope[PreferencesOut]:
    quiet: tuple[str, str] | bool | None = False
    if "quiet_hours" in body.model_fields_set:
        quiet = (body.quiet_hours.start, body.quiet_hours.end) if body.quiet_hours else None
    view = await service.set_preferences(
        session,
        user,
        channels=body.channels,
        quiet_hours=quiet,
        email_unsubscribed=body.email_unsubscribed,
    )
    return ok(_preferences_out(view))


# -- email unsubscribe (signed link; no session needed) --------------------------------------

UNSUBSCRIBE_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}}
button{{font-size:1rem;padding:.6rem 1.2rem}}</style></head><body><h1>{title}</h1>{body}
</body></html>"""


@router.get(
    "/api/notifications/unsubscribe",
    response_class=HTMLResponse,
    summary="The unsubscribe page an email links to",
    include_in_schema=False,
)
async def unsubscribe_page(
    runtime: RuntimeDep, token: Annotated[str, Query(max_length=500)]
) -> HTMLResponse:
    if runtime.notifier.unsubscribe_user_id(token) is None:
        return HTMLResponse(
            UNSUBSCRIBE_PAGE.format(
                title="Link not valid", body="<p>This unsubscribe link is not valid.</p>"
            ),
            status_code=404,
        )
    body = (
        f'<form method="post"><input type="hidden" name="token" '
        f'value="{escape(token)}"><p>Stop order emails from Farmstand? You will still see '
        f"updates in the app and by SMS or push if you chose them.</p>"
        f'<button type="submit">Unsubscribe</button></form>'
    )
    return HTMLResponse(UNSUBSCRIBE_PAGE.format(title="Unsubscribe", body=body))


@router.post(
    "/api/notifications/unsubscribe",
    summary="One-click email unsubscribe (RFC 8058)",
    response_class=HTMLResponse,
    include_in_schema=False,
)
async def unsubscribe(request: Request, session: SessionDep, runtime: RuntimeDep) -> HTMLResponse:
    token = request.query_params.get("token")
    if not token:
        form = await request.form()
        value = form.get("token")
        token = value if isinstance(value, str) else None
    if not token or len(token) > 500:
        return HTMLResponse(
            UNSUBSCRIBE_PAGE.format(
                title="Link not valid", body="<p>This unsubscribe link is not valid.</p>"
            ),
            status_code=404,
        )
    user = await service.unsubscribe_email(session, runtime.notifier, token)
    return HTMLResponse(
        UNSUBSCRIBE_PAGE.format(
            title="Unsubscribed",
            body=f"<p>{escape(user.email)} will get no more order emails. You can turn them back "
            f"on in your notification preferences.</p>",
        )
    )


# -- in-app centre --------------------------------------------------------------------------


@router.get("/api/notifications", summary="Your in-app notifications, newest first")
async def list_notifications(
    user: CurrentUser,
    session: SessionDep,
    unread: bool = False,
    cursor: Cursor = None,
    limit: Limit = 20,
) -> Envelope[NotificationPage]:
    rows = await service.list_in_app(
        session,
        user,
        unread=unread,
        before=decode_cursor(cursor) if cursor else None,
        limit=limit + 1,
    )
    page, next_cursor = split_page(rows, limit)
    return ok(
        NotificationPage(
            items=[_in_app_out(row) for row in page],
            next_cursor=next_cursor,
            unread_count=await service.unread_count(session, user),
        )
    )


@router.get("/api/notifications/unread-count", summary="How many unread notifications you have")
async def unread_count(user: CurrentUser, session: SessionDep) -> Envelope[UnreadCount]:
    return ok(UnreadCount(unread_count=await service.unread_count(session, user)))


@router.post("/api/notifications/read-all", summary="Mark all your notifications read")
async def read_all(user: CurrentUser, session: SessionDep) -> Envelope[MarkedRead]:
    marked = await service.mark_all_read(session, user)
    return ok(MarkedRead(marked=marked, unread_count=0))


@router.post("/api/notifications/{notification_id}/read", summary="Mark one notification read")
async def read_one(
    notification_id: str, user: CurrentUser, session: SessionDep
) -> Envelope[NotificationOut]:
    row = await service.mark_read(session, user, notification_id)
    return ok(_in_app_out(row))


# -- web push -------------------------------------------------------------------------------


@router.get("/api/push/vapid-public-key", summary="The key browsers subscribe with")
async def vapid_public_key(runtime: RuntimeDep) -> Envelope[VapidKey]:
    try:
        keys = vapid_keys(runtime.settings)
    except VapidKeyError:
        raise ServiceUnavailable(
            "Push notifications are not configured on this server (no VAPID keys)."
        ) from None
    return ok(VapidKey(public_key=keys.public_key))


@router.post(
    "/api/push/subscriptions",
    status_code=status.HTTP_201_CREATED,
    summary="Register this browser for push notifications",
)
async def add_push_subscription(
    body: PushSubscriptionIn, request: Request, user: CurrentUser, session: SessionDep
) -> Envelope[PushSubscriptionOut]:
    row = await service.add_push_subscription(
        session,
        user,
        endpoint=body.endpoint,
        p256dh=body.keys.p256dh,
        auth=body.keys.auth,
        user_agent=request.headers.get("user-agent"),
    )
    return ok(PushSubscriptionOut.model_validate(row))


@router.delete("/api/push/subscriptions/{subscription_id}", summary="Stop push to a browser")
async def remove_push_subscription(
    subscription_id: str, user: CurrentUser, session: SessionDep
) -> Envelope[PushSubscriptionOut]:
    row = await session.get(service.PushSubscription, subscription_id)
    out = PushSubscriptionOut.model_validate(row) if row and row.user_id == user.id else None
    await service.remove_push_subscription(session, user, subscription_id)
    assert out is not None
    return ok(out)


# -- an order's deliveries (the farm) -------------------------------------------------------


async def _farm_order(session: SessionDep, user: CurrentUser, order_id: str):  # type: ignore[no-untyped-def]
    order = await orders.get_visible_order(session, user, order_id)
    if user.role is Role.CUSTOMER:
        raise Forbidden("Only the farm can see an order's delivery log.")
    return order


@router.get(
    "/api/orders/{order_id}/notifications",
    summary="The order's delivery log: every notification, channel and outcome",
)
async def order_deliveries(
    order_id: str, user: CurrentUser, session: SessionDep
) -> Envelope[list[DeliveryOut]]:
    order = await _farm_order(session, user, order_id)
    return ok([delivery_out(row) for row in await service.delivery_log(session, order.id)])


@router.post(
    "/api/orders/{order_id}/notifications/resend",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Send the order's latest customer notification again (rate-limited)",
)
async def resend(order_id: str, user: CurrentUser, session: SessionDep) -> Envelope[ResendOut]:
    order = await _farm_order(session, user, order_id)
    type, rows = await service.resend_latest(session, order, user)
    return ok(ResendOut(type=type, notifications=[delivery_out(row) for row in rows]))


# -- admin ----------------------------------------------------------------------------------


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
    rows = await service.admin_list(
        session,
        statuses=statuses,
        channel=channels[0] if channels else None,
        before=decode_cursor(cursor) if cursor else None,
        limit=limit + 1,
    )
    page, next_cursor = split_page(rows, limit)
    return ok(DeliveryPage(items=[delivery_out(row) for row in page], next_cursor=next_cursor))


@router.get("/api/admin/notifications/stats", summary="Notifications per channel and status")
async def admin_stats(_admin: AdminUser, session: SessionDep) -> Envelope[ChannelCounts]:
    return ok(ChannelCounts(counts=await service.counts_by_channel(session)))


@router.post(
    "/api/admin/notifications/{notification_id}/retry",
    summary="Send a FAILED or SKIPPED notification again (admin)",
)
async def admin_retry(
    notification_id: str, admin: AdminUser, session: SessionDep
) -> Envelope[DeliveryOut]:
    return ok(delivery_out(await service.admin_retry(session, admin, notification_id)))
