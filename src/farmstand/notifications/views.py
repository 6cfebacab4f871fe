"""Pages: the notification bell and list, notification preferences (quiet hours included), and
Web Push on this device (the service worker at /sw.js, and the page routes push.js posts to)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Annotated
from zoneinfo import available_timezones

from fastapi import Path, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from pydantic import ValidationError

from farmstand.accounts.principal import Principal
from farmstand.accounts.roles import Role
from farmstand.deps import RuntimeDep, SessionDep
from farmstand.errors import FarmstandError
from farmstand.notifications import inbox, preferences, push_subscriptions
from farmstand.notifications.channels.vapid import VapidKeyError, vapid_keys
from farmstand.notifications.models import (
    ORDER_TYPES,
    NotificationChannel,
    NotificationType,
    OrderNotification,
)
from farmstand.notifications.schemas import PreferencesIn, PushSubscriptionIn
from farmstand.schemas import decode_cursor, split_page
from farmstand.web.pages import (
    STATIC_DIR,
    CsrfChecked,
    PageUser,
    ShowPage,
    field_errors,
    page_router,
    redirect,
    render,
)

router = page_router()

PAGE_SIZE = 20
Cursor = Annotated[str | None, Query(max_length=500)]
NotificationId = Annotated[str, Path(max_length=64)]
Notice = Annotated[str | None, Query(max_length=20)]

NOTICES = {"read": "All your notifications are marked read.", "saved": "Saved."}

TYPE_LABELS: dict[NotificationType, str] = {
    NotificationType.ORDER_CONFIRMED: "The farm confirms my order",
    NotificationType.ORDER_PREPARING: "The farm starts preparing it",
    NotificationType.ORDER_READY: "It is ready for pickup",
    NotificationType.ORDER_OUT_FOR_DELIVERY: "It is out for delivery",
    NotificationType.ORDER_COMPLETED: "It is completed",
    NotificationType.ORDER_CANCELLED: "It is cancelled",
    NotificationType.ORDER_REFUNDED: "It is refunded",
    NotificationType.ORDER_DELAYED: "It is delayed",
    NotificationType.ORDER_REMINDER: "A reminder to collect it",
    NotificationType.NEW_ORDER: "A new order comes in for my farm",
}
CHANNEL_LABELS: dict[NotificationChannel, str] = {
    NotificationChannel.IN_APP: "In the app",
    NotificationChannel.EMAIL: "Email",
    NotificationChannel.SMS: "Text message",
    NotificationChannel.PUSH: "Push",
}
CHANNELS = tuple(CHANNEL_LABELS)  # the order of the columns
FARM_TYPES = (NotificationType.NEW_ORDER, NotificationType.ORDER_DELAYED)


REGIONS = (
    "Africa/", "America/", "Antarctica/", "Arctic/", "Asia/", "Atlantic/", "Australia/",
    "Europe/", "Indian/", "Pacific/",
)  # fmt: skip


@cache
def time_zones() -> tuple[str, ...]:
    """The IANA zones a person may choose: the region/city ones (not the old aliases such as
    US/Pacific), and UTC."""
    return (*sorted(zone for zone in available_timezones() if zone.startswith(REGIONS)), "UTC")


def types_for(user: Principal) -> tuple[NotificationType, ...]:
    """The kinds of notification this person can get (a customer's, a farmer's, or all)."""
    if user.role is Role.CUSTOMER:
        return tuple(type for type in ORDER_TYPES if type is not NotificationType.NEW_ORDER)
    if user.role is Role.FARMER:
        return FARM_TYPES
    return ORDER_TYPES


@dataclass(frozen=True)
class Item:
    """A notification in the list, with the page it leads to."""

    row: OrderNotification
    href: str


# -- the bell and the list -------------------------------------------------------------------


@router.get("/notifications")
async def notifications_page(
    request: Request,
    user: PageUser,
    session: SessionDep,
    cursor: Cursor = None,
    notice: Notice = None,
) -> Response:
    before = None
    if cursor:
        try:
            before = decode_cursor(cursor)
        except FarmstandError:
            before = None
    rows = await inbox.list_in_app(session, user, unread=False, before=before, limit=PAGE_SIZE + 1)
    page, next_cursor = split_page(rows, PAGE_SIZE)
    items = [Item(row, f"/orders/{row.order_id}" if row.order_id else "/orders") for row in page]
    return render(
        request,
        "notifications.html",
        {
            "items": items,
            "next_cursor": next_cursor,
            "paged": before is not None,
            "notice": NOTICES.get(notice or ""),
            "any_unread": bool(request.state._state.get("unread_count")),
        },
    )


@router.get("/notifications/bell")
async def bell(request: Request, user: PageUser, session: SessionDep) -> Response:
    """The bell with its count (swapped into the header on each NOTIFICATION)."""
    count = await inbox.unread_count(session, user)
    return render(request, "_bell.html", {"count": count})


@router.post("/notifications/read-all", dependencies=[CsrfChecked])
async def read_all(user: PageUser, session: SessionDep) -> Response:
    await inbox.mark_all_read(session, user)
    return redirect("/notifications?notice=read")


@router.post("/notifications/{notification_id}/read", dependencies=[CsrfChecked])
async def open_one(
    notification_id: NotificationId, user: PageUser, session: SessionDep
) -> Response:
    """Opening an unread notification marks it read and goes to its order (another user's
    notification is not found)."""
    row = await inbox.mark_read(session, user, notification_id)
    return redirect(f"/orders/{row.order_id}" if row.order_id else "/notifications")


# -- preferences -----------------------------------------------------------------------------


def _vapid_public_key(runtime: RuntimeDep) -> str | None:
    try:
        return vapid_keys(runtime.settings).public_key
    except VapidKeyError:
        return None


def _settings_page(
    request: Request,
    user: Principal,
    runtime: RuntimeDep,
    view: preferences.PreferenceView,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> Response:
    shown = values or {
        "quiet_start": view.quiet_hours_start or "",
        "quiet_end": view.quiet_hours_end or "",
        "timezone": view.timezone,
    }
    checked = {
        (type, channel): view.channels[type][channel]
        for type in types_for(user)
        for channel in CHANNELS
    }
    if values is not None:  # a refused form: show the boxes as they were ticked
        checked = {key: f"ch.{key[0]}.{key[1]}" in values for key in checked}
    return render(
        request,
        "notification_settings.html",
        {
            "types": [(type, TYPE_LABELS[type]) for type in types_for(user)],
            "channels": [(channel, CHANNEL_LABELS[channel]) for channel in CHANNELS],
            "checked": checked,
            "email_unsubscribed": (
                "email_unsubscribed" in values if values is not None else view.email_unsubscribed
            ),
            "values": shown,
            "errors": errors or {},
            "zones": time_zones(),
            "notice": notice,
            "vapid_public_key": _vapid_public_key(runtime),
        },
        status_code=status_code,
    )


@router.get("/settings/notifications")
async def settings_page(
    request: Request,
    user: PageUser,
    session: SessionDep,
    runtime: RuntimeDep,
    notice: Notice = None,
) -> Response:
    view = await preferences.get_preferences(session, user)
    return _settings_page(request, user, runtime, view, notice=NOTICES.get(notice or ""))


# Where each of PreferencesIn's fields is on the form.
_FIELD_OF = {"quietHours.start": "quiet_start", "quietHours.end": "quiet_end"}


def _preferences_in(user: Principal, form: dict[str, str]) -> PreferencesIn:
    """The form as the API's request body (both quiet hours blank: quiet hours off)."""
    start, end = form.get("quiet_start", "").strip(), form.get("quiet_end", "").strip()
    errors: dict[str, str] = {}
    if bool(start) != bool(end):
        missing = "quiet_end" if start else "quiet_start"
        errors[missing] = "Give both the start and the end, or neither to turn quiet hours off."
    elif start and start == end:
        errors["quiet_end"] = "Quiet hours must end at another time than they start."
    channels = {
        type: {channel: f"ch.{type}.{channel}" in form for channel in CHANNELS}
        for type in types_for(user)
    }
    try:
        body = PreferencesIn.model_validate(
            {
                "channels": channels,
                "quietHours": {"start": start, "end": end} if start and end else None,
                "emailUnsubscribed": "email_unsubscribed" in form,
                "timezone": form.get("timezone", "").strip() or None,
            }
        )
    except ValidationError as exc:
        for field, message in field_errors(exc).items():
            key = _FIELD_OF.get(field, "quiet_end" if field == "quietHours" else field)
            errors.setdefault(key, message)
    if errors:
        raise _Refused(errors)
    return body


class _Refused(Exception):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(errors)
        self.errors = errors


@router.post("/settings/notifications", dependencies=[CsrfChecked])
async def save_settings(
    request: Request, user: PageUser, session: SessionDep, runtime: RuntimeDep
) -> Response:
    form = {key: value for key, value in (await request.form()).items() if isinstance(value, str)}
    try:
        body = _preferences_in(user, form)
    except _Refused as exc:
        view = await preferences.get_preferences(session, user)
        raise ShowPage(
            _settings_page(
                request, user, runtime, view, values=form, errors=exc.errors, status_code=422
            )
        ) from None
    quiet = body.quiet_hours
    quiet_hours = (quiet.start, quiet.end) if quiet else None
    await preferences.set_preferences(
        session,
        user,
        channels=body.channels,
        quiet_hours=quiet_hours,
        email_unsubscribed=body.email_unsubscribed,
        timezone=body.timezone,
    )
    return redirect("/settings/notifications?notice=saved")


# -- Web Push on this device (push.js) -------------------------------------------------------


def _json(status_code: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code, headers={"Cache-Control": "no-store"})


@router.post("/settings/notifications/push", dependencies=[CsrfChecked])
async def add_push(request: Request, user: PageUser, session: SessionDep) -> Response:
    """Keep this browser's push subscription (PushSubscription.toJSON(), posted by push.js)."""
    try:
        body = PushSubscriptionIn.model_validate_json(await request.body())
    except ValidationError:
        return _json(422, "That is not a push subscription this browser could have made.")
    try:
        await push_subscriptions.add_push_subscription(
            session,
            user,
            endpoint=body.endpoint,
            p256dh=body.keys.p256dh,
            auth=body.keys.auth,
            user_agent=request.headers.get("user-agent"),
        )
    except FarmstandError as exc:
        return _json(exc.status_code, exc.message)
    return _json(201, "Notifications are on for this device.")


@router.post("/settings/notifications/push/remove", dependencies=[CsrfChecked])
async def remove_push(request: Request, user: PageUser, session: SessionDep) -> Response:
    """Forget this browser's subscription (push.js has unsubscribed it)."""
    try:
        body = PushSubscriptionIn.model_validate_json(await request.body())
    except ValidationError:
        return _json(422, "That is not a push subscription this browser could have made.")
    await push_subscriptions.remove_push_endpoint(session, user, body.endpoint)
    return _json(200, "Notifications are off for this device.")


SW_HEADERS = {
    "Cache-Control": "no-cache",  # a new worker reaches browsers at once
    "Service-Worker-Allowed": "/",
    # The worker's own policy: it loads nothing, and talks only to this site.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; object-src 'none'",
}


@router.get("/sw.js")
async def service_worker() -> Response:
    """The service worker, from the site's root so that its scope is every page."""
    return FileResponse(
        STATIC_DIR / "sw.js", media_type="text/javascript; charset=utf-8", headers=SW_HEADERS
    )
