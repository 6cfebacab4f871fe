"""Routes: preferences and unsubscribe links, the in-app centre, push subscriptions, an
order's delivery log. (Admin routes: ``admin_api``.)"""

from __future__ import annotations

from typing import Annotated, Literal, cast

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import HTMLResponse
from opentelemetry import trace

from farmstand.accounts.principal import Person
from farmstand.accounts.roles import Role
from farmstand.deps import CurrentUser, RuntimeDep, SessionDep
from farmstand.errors import ServiceUnavailable
from farmstand.notifications import delivery_log, inbox, preferences, push_subscriptions
from farmstand.notifications.admin_api import admin_view
from farmstand.notifications.channels.vapid import VapidKeyError, vapid_keys
from farmstand.notifications.errors import UnsubscribeLinkInvalid
from farmstand.notifications.models import (
    OrderNotification,
    PushSubscription,
)
from farmstand.notifications.schemas import (
    AdminDeliveryOut,
    DeliveryOut,
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
from farmstand.orders.records import OrderRecord
from farmstand.schemas import (
    ERROR_RESPONSES,
    Envelope,
    decode_cursor,
    ok,
    split_page,
)

router = APIRouter(tags=["notifications"], responses=ERROR_RESPONSES)

Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=500)]


def _preferences_out(view: preferences.PreferenceView) -> PreferencesOut:
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
        order_id=cast(str, row.order_id),  # in-app rows are all about an order
        type=row.type,
        title=row.title,
        message=row.message,
        url=row.meta.get("url"),
        created_at=row.created_at,
        read_at=row.read_at,
    )


def delivery_view(row: OrderNotification, reader: Person) -> AdminDeliveryOut | DeliveryOut:
    """A delivery log line with what ``reader`` may see: an admin the admin view, anyone
    else (the farm) the farm's. Fields are named one by one; the row's ``meta`` (links,
    rendering context) is never passed through."""
    if reader.role is Role.ADMIN:
        return admin_view(row)
    assert row.order_id is not None  # an order's delivery log
    return DeliveryOut(
        id=row.id,
        order_id=row.order_id,
        type=row.type,
        channel=row.channel,
        status=row.status,
        attempts=row.attempts,
        resent="resendOf" in (row.meta or {}),
        next_attempt_at=row.next_attempt_at,
        sent_at=row.sent_at,
        delivery_status=row.delivery_status,
        delivery_error_code=row.delivery_error_code,
        delivery_updated_at=row.delivery_updated_at,
        read_at=row.read_at,
        created_at=row.created_at,
    )


# -- preferences ----------------------------------------------------------------------------


@router.get("/api/me/notification-preferences", summary="Your notification preferences")
async def get_preferences(user: CurrentUser, session: SessionDep) -> Envelope[PreferencesOut]:
    return ok(_preferences_out(await preferences.get_preferences(session, user)))


@router.put("/api/me/notification-preferences", summary="Change your notification preferences")
async def put_preferences(
    body: PreferencesIn, user: CurrentUser, session: SessionDep
) -> Envelope[PreferencesOut]:
    quiet: tuple[str, str] | Literal[False] | None = False  # False: leave them as they are
    if "quiet_hours" in body.model_fields_set:
        quiet = (body.quiet_hours.start, body.quiet_hours.end) if body.quiet_hours else None
    view = await preferences.set_preferences(
        session,
        user,
        channels=body.channels,
        quiet_hours=quiet,
        email_unsubscribed=body.email_unsubscribed,
        timezone=body.timezone,
    )
    return ok(_preferences_out(view))


# -- email unsubscribe (signed link; no session needed) --------------------------------------

UNSUBSCRIBE_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
<link rel="stylesheet" href="/static/pages.css"></head><body><h1>{title}</h1>{body}
</body></html>"""
UNSUBSCRIBE_ROUTE = "/api/notifications/unsubscribe/{token}"
# Pages with a token in their address: kept by no cache, and (see docs/security.md) the
# address goes to no log: the request line shows the route template, and so does the span.
PAGE_HEADERS = {"Cache-Control": "no-store"}


def _page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(
        UNSUBSCRIBE_PAGE.format(title=title, body=body),
        status_code=status_code,
        headers=PAGE_HEADERS,
    )


def _link_invalid(status_code: int = 404) -> HTMLResponse:
    return _page(
        "Link expired or not valid",
        "<p>This unsubscribe link has expired or is not valid. To stop order emails, sign in "
        "and turn them off in your notification preferences.</p>",
        status_code,
    )


def _span_shows_the_route() -> None:
    """The request span (when tracing) records this route's template, not the token."""
    trace.get_current_span().set_attribute("url.path", UNSUBSCRIBE_ROUTE)


@router.get(
    UNSUBSCRIBE_ROUTE,
    response_class=HTMLResponse,
    summary="The unsubscribe page an email links to",
    include_in_schema=False,
)
async def unsubscribe_page(token: str, session: SessionDep, runtime: RuntimeDep) -> HTMLResponse:
    _span_shows_the_route()
    if len(token) > 500:
        return _link_invalid()
    try:
        await preferences.unsubscribe_link_user(session, runtime.notifier, token)
    except UnsubscribeLinkInvalid:
        return _link_invalid()
    # Opening the page changes nothing (mail scanners open links): the button posts.
    return _page(
        "Unsubscribe",
        '<form method="post"><p>Stop order emails from Farmstand? You will still see updates '
        "in the app and by SMS or push if you chose them.</p>"
        '<button type="submit">Unsubscribe</button></form>',
    )


@router.post(
    UNSUBSCRIBE_ROUTE,
    summary="One-click email unsubscribe (RFC 8058)",
    response_class=HTMLResponse,
    include_in_schema=False,
)
async def unsubscribe(token: str, session: SessionDep, runtime: RuntimeDep) -> HTMLResponse:
    # The body (List-Unsubscribe=One-Click, or the page's empty form) says nothing more.
    _span_shows_the_route()
    if len(token) > 500:
        return _link_invalid()
    try:
        await preferences.unsubscribe_email(session, runtime.notifier, token)
    except UnsubscribeLinkInvalid:
        return _link_invalid()
    return _page(
        "Unsubscribed",
        "<p>You will get no more order emails. You can turn them back on in your "
        "notification preferences.</p>",
    )


@router.api_route(
    "/api/notifications/unsubscribe",
    methods=["GET", "POST"],
    response_class=HTMLResponse,
    include_in_schema=False,
)
async def old_unsubscribe_link() -> HTMLResponse:
    """Links from before they expired (a query-string token, valid forever): no longer
    honoured, and their token is not even read."""
    return _link_invalid(410)


# -- in-app centre --------------------------------------------------------------------------


@router.get("/api/notifications", summary="Your in-app notifications, newest first")
async def list_notifications(
    user: CurrentUser,
    session: SessionDep,
    unread: bool = False,
    cursor: Cursor = None,
    limit: Limit = 20,
) -> Envelope[NotificationPage]:
    rows = await inbox.list_in_app(
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
            unread_count=await inbox.unread_count(session, user),
        )
    )


@router.get("/api/notifications/unread-count", summary="How many unread notifications you have")
async def unread_count(user: CurrentUser, session: SessionDep) -> Envelope[UnreadCount]:
    return ok(UnreadCount(unread_count=await inbox.unread_count(session, user)))


@router.post("/api/notifications/read-all", summary="Mark all your notifications read")
async def read_all(user: CurrentUser, session: SessionDep) -> Envelope[MarkedRead]:
    marked = await inbox.mark_all_read(session, user)
    return ok(MarkedRead(marked=marked, unread_count=0))


@router.post("/api/notifications/{notification_id}/read", summary="Mark one notification read")
async def read_one(
    notification_id: str, user: CurrentUser, session: SessionDep
) -> Envelope[NotificationOut]:
    row = await inbox.mark_read(session, user, notification_id)
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
    row = await push_subscriptions.add_push_subscription(
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
    row = await session.get(PushSubscription, subscription_id)
    out = PushSubscriptionOut.model_validate(row) if row and row.user_id == user.id else None
    await push_subscriptions.remove_push_subscription(session, user, subscription_id)
    assert out is not None
    return ok(out)


# -- an order's deliveries (the farm) -------------------------------------------------------


async def _farm_order(session: SessionDep, user: CurrentUser, order_id: str) -> OrderRecord:
    refusal = "Only the farm can see an order's delivery log."
    return await orders.get_managed_order(session, user, order_id, refusal=refusal)


@router.get(
    "/api/orders/{order_id}/notifications",
    summary="The order's delivery log: every notification, channel and outcome",
)
async def order_deliveries(
    order_id: str, user: CurrentUser, session: SessionDep
) -> Envelope[list[AdminDeliveryOut | DeliveryOut]]:
    order = await _farm_order(session, user, order_id)
    rows = await delivery_log.delivery_log(session, order.id)
    return ok([delivery_view(row, user) for row in rows])


@router.post(
    "/api/orders/{order_id}/notifications/resend",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Send the order's latest customer notification again (rate-limited)",
)
async def resend(order_id: str, user: CurrentUser, session: SessionDep) -> Envelope[ResendOut]:
    order = await _farm_order(session, user, order_id)
    type, rows = await delivery_log.resend_latest(session, order, user)
    return ok(ResendOut(type=type, notifications=[delivery_view(row, user) for row in rows]))
