"""The senders chosen from settings: real providers when configured, local files otherwise."""

from __future__ import annotations

from farmstand.config import Settings
from farmstand.notifications.channels.base import Sender
from farmstand.notifications.channels.mailbox import FileMailboxSender
from farmstand.notifications.channels.push import WebPushSender
from farmstand.notifications.channels.sms import FileOutboxSender, TwilioSender
from farmstand.notifications.channels.smtp import SmtpSender
from farmstand.notifications.models import NotificationChannel


def make_senders(settings: Settings) -> dict[NotificationChannel, Sender]:
    """EMAIL: SMTP if ``smtp_host`` else the file mailbox; SMS: Twilio if configured else the
    file outbox; PUSH: Web Push. IN_APP has no sender: the dispatcher marks those rows itself.

    Raises ValueError on an unusable configuration (a bad From address, Twilio without a
    sender number, mismatched VAPID keys), so a misconfigured process stops at start-up.
    """
    email: Sender = SmtpSender(settings) if settings.smtp_host else FileMailboxSender(settings)
    sms: Sender = (
        TwilioSender(settings) if settings.twilio_configured else FileOutboxSender(settings)
    )
    return {
        NotificationChannel.EMAIL: email,
        NotificationChannel.SMS: sms,
        NotificationChannel.PUSH: WebPushSender(settings),
    }
