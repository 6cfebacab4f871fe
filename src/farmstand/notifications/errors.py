"""Notification errors, each carrying its HTTP status and a message safe to show the user."""

from __future__ import annotations

from farmstand.errors import Conflict, NotFound


class NotificationNotFound(NotFound):
    message = "Notification not found."


class UnsubscribeLinkInvalid(NotFound):
    message = "This unsubscribe link has expired or is not valid."


class PushSubscriptionNotFound(NotFound):
    message = "Push subscription not found."


class PushEndpointTaken(Conflict):
    message = (
        "This browser's push subscription belongs to another account: unsubscribe it in "
        "the browser (or sign in as that account and remove it), then subscribe again."
    )
