"""Web Push subscriptions: the browsers a user registered, and which push services they may
name (the server POSTs to the endpoint)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from farmstand.accounts.principal import Person
from farmstand.config import Settings
from farmstand.errors import Unprocessable
from farmstand.notifications.errors import PushEndpointTaken, PushSubscriptionNotFound
from farmstand.notifications.models import PushSubscription
from farmstand.notifications.outbox import notifier_of

# What a push service's URL is made of (RFC 3986, ASCII only): no spaces, no backslashes, no
# Unicode look-alikes (a fullwidth solidus normalises to "/" and moves the host).
_URL_CHARACTERS = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+$")
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def check_push_endpoint(settings: Settings, endpoint: str) -> None:
    """Only a known push service may be the target: the server POSTs to this URL. https on
    port 443, a plain DNS host name under one of ``push_service_hosts``; anything odd is
    refused (FARMSTAND_PUSH_ALLOW_HTTP also admits http and other ports, for a local test
    push service)."""
    if not _push_endpoint_ok(settings, endpoint):
        raise Unprocessable(
            "The endpoint is not a known Web Push service.",
            details=[{"field": "endpoint", "message": "must be an https URL of a push service"}],
        )


def _push_endpoint_ok(settings: Settings, endpoint: str) -> bool:
    if not _URL_CHARACTERS.match(endpoint):
        return False
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError:  # "https://[::1/x", a port out of range, ...
        return False
    if parts.username is not None or parts.password is not None or parts.fragment:
        return False
    host = (parts.hostname or "").lower()
    if parts.scheme == "https" and port in (None, 443):
        pass
    elif not (settings.push_allow_http and parts.scheme in ("http", "https")):
        return False
    labels = host.split(".")
    if not all(_HOST_LABEL.match(label) for label in labels):
        return False  # empty, an IPv6 literal, a trailing dot, percent-encoding, ...
    if any(label.startswith("xn--") for label in labels):
        return False  # an internationalised name: no push service has one
    return any(host == h or host.endswith("." + h) for h in settings.push_hosts)


async def add_push_subscription(
    session: AsyncSession,
    user: Person,
    *,
    endpoint: str,
    p256dh: str,
    auth: str,
    user_agent: str | None,
) -> PushSubscription:
    """Save the browser's subscription (again: new keys). An endpoint another account holds
    is refused with 409 and left as it is: it would otherwise move their notifications here."""
    check_push_endpoint(notifier_of(session).settings, endpoint)
    row = await session.scalar(
        select(PushSubscription).where(PushSubscription.endpoint == endpoint).with_for_update()
    )
    if row is None:
        row = PushSubscription(
            endpoint=endpoint,
            user_id=user.id,
            p256dh=p256dh,
            auth=auth,
            user_agent=(user_agent or "")[:300] or None,
        )
        try:
            async with session.begin_nested():
                session.add(row)
        except IntegrityError:  # the same browser subscribed twice at once
            row = await session.scalar(
                select(PushSubscription).where(PushSubscription.endpoint == endpoint)
            )
            assert row is not None
    if row.user_id != user.id:
        raise PushEndpointTaken()
    row.p256dh, row.auth = p256dh, auth
    await session.flush()
    return row


async def remove_push_subscription(session: AsyncSession, user: Person, sub_id: str) -> None:
    row = await session.get(PushSubscription, sub_id)
    if row is None or row.user_id != user.id:
        raise PushSubscriptionNotFound()
    await session.delete(row)
    await session.flush()


async def remove_push_endpoint(session: AsyncSession, user: Person, endpoint: str) -> bool:
    """Forget the user's subscription of one browser, known by its endpoint (what the browser
    itself knows; another user's endpoint is left alone). Whether there was one."""
    row = await session.scalar(
        select(PushSubscription).where(
            PushSubscription.endpoint == endpoint, PushSubscription.user_id == user.id
        )
    )
    if row is None:
        return False
    await session.delete(row)
    await session.flush()
    return True
