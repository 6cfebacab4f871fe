"""Admin console pages about notifications: the failed ones with retry (one, or every failed
one of a channel), the channels' health, and the development mailbox. Admins only: anyone
else gets the not-found page (``web.admin``)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Path, Query, Request, Response

from farmstand.db import utcnow
from farmstand.deps import RuntimeDep, SessionDep
from farmstand.errors import NotFound, Unprocessable
from farmstand.notifications import admin as service
from farmstand.notifications.channels.mailbox import open_mail, read_mailbox
from farmstand.notifications.models import NotificationChannel
from farmstand.schemas import decode_cursor, split_page
from farmstand.web.admin import AdminOnly, AdminPageUser
from farmstand.web.pages import CsrfChecked, form_of, page_router, redirect, render

router = page_router()

PAGE_SIZE = 50
MAILBOX_LIMIT = 200
ChannelParam = Annotated[str | None, Query(max_length=20)]
Cursor = Annotated[str | None, Query(max_length=200)]


class MailNotFound(NotFound):
    message = "There is no such email in the mailbox."


def _channel(raw: str | None) -> NotificationChannel | None:
    if not raw:
        return None
    channel = NotificationChannel.__members__.get(raw.strip().upper())
    if channel is None:
        raise Unprocessable(
            f"Unknown channel: choose one of {', '.join(NotificationChannel)}.",
        )
    return channel


def _notice(retried: str | None, requeued: str | None) -> str | None:
    if retried:
        return "The notification is queued again: the dispatcher sends it shortly."
    if requeued is not None and requeued.isdigit():
        count = int(requeued)
        return f"{count} failed notification{'' if count == 1 else 's'} queued again."
    return None


@router.get("/admin/notifications")
async def failed_notifications(
    request: Request,
    user: AdminPageUser,
    session: SessionDep,
    channel: ChannelParam = None,
    cursor: Cursor = None,
    retried: Annotated[str | None, Query(max_length=5)] = None,
    requeued: Annotated[str | None, Query(max_length=10)] = None,
) -> Response:
    """FAILED notifications, newest first, a page at a time, optionally of one channel."""
    chosen = _channel(channel)
    rows = await service.admin_failed(
        session,
        channel=chosen,
        before=decode_cursor(cursor) if cursor else None,
        limit=PAGE_SIZE + 1,
    )
    page, next_cursor = split_page(rows, PAGE_SIZE)
    now = utcnow()
    health = await service.channel_health(session)
    return render(
        request,
        "admin_notifications.html",
        {
            "title": "Failed notifications",
            "section": "notifications",
            "rows": page,
            "next_cursor": next_cursor,
            "paged": bool(cursor),
            "channel": str(chosen) if chosen else "",
            "channels": [str(c) for c in NotificationChannel],
            "health": health,
            "paused": {name for name, state in health.items() if state.paused(now)},
            "notice": _notice(retried, requeued),
        },
    )


@router.post("/admin/notifications/{notification_id}/retry", dependencies=[AdminOnly, CsrfChecked])
async def retry(
    notification_id: Annotated[str, Path(max_length=64)],
    request: Request,
    user: AdminPageUser,
    session: SessionDep,
) -> Response:
    """Queue one FAILED notification again with fresh attempts (a 409 page if it is not
    failed any more, a 404 if it is gone)."""
    form = await form_of(request)
    await service.admin_retry(session, user, notification_id)
    chosen = _channel(form.get("channel"))
    back = f"&channel={chosen}" if chosen else ""
    return redirect(f"/admin/notifications?retried=1{back}")


@router.post("/admin/notifications/requeue", dependencies=[AdminOnly, CsrfChecked])
async def requeue(request: Request, user: AdminPageUser, session: SessionDep) -> Response:
    """Queue every FAILED notification of one channel again (after an outage, say)."""
    form = await form_of(request)
    chosen = _channel(form.get("channel"))
    if chosen is None:
        raise Unprocessable("Choose the channel whose failed notifications to send again.")
    count = await service.requeue_failed(session, channel=chosen, since=None, until=None)
    return redirect(f"/admin/notifications?requeued={count}&channel={chosen}")


# -- the development mailbox ------------------------------------------------------------------


@router.get("/admin/mailbox")
async def mailbox(request: Request, user: AdminPageUser, runtime: RuntimeDep) -> Response:
    """The latest emails the embedded mailbox wrote, newest first; nothing when SMTP is in
    use (the emails went to the SMTP server)."""
    settings = runtime.settings
    smtp = bool(settings.smtp_host)
    entries = (
        []
        if smtp
        else await asyncio.to_thread(read_mailbox, settings.mailbox_dir, limit=MAILBOX_LIMIT)
    )
    return render(
        request,
        "admin_mailbox.html",
        {
            "title": "Mailbox",
            "section": "mailbox",
            "smtp": smtp,
            "entries": entries,
            "limit": MAILBOX_LIMIT,
            "folder": str(settings.mailbox_dir),
        },
    )


@router.get("/admin/mailbox/{name}")
async def mail(
    name: Annotated[str, Path(max_length=300)],
    request: Request,
    user: AdminPageUser,
    runtime: RuntimeDep,
) -> Response:
    """One email: its text part, and its HTML part shown as escaped source (never rendered
    into our page). Only a name from the mailbox's own listing is opened."""
    settings = runtime.settings
    if settings.smtp_host:
        raise MailNotFound()
    entry = await asyncio.to_thread(open_mail, settings.mailbox_dir, name)
    if entry is None:
        raise MailNotFound()
    text, html = await asyncio.to_thread(entry.parts)
    return render(
        request,
        "admin_mail.html",
        {
            "title": entry.subject or "(no subject)",
            "section": "mailbox",
            "entry": entry,
            "text": text,
            "html": html,
        },
    )
