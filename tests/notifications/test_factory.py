"""Which senders the settings choose."""

from __future__ import annotations

import asyncio
from pathlib import Path

from farmstand.notifications.channels.base import Sender
from farmstand.notifications.channels.factory import make_senders
from farmstand.notifications.channels.mailbox import FileMailboxSender
from farmstand.notifications.channels.push import WebPushSender
from farmstand.notifications.channels.sms import FileOutboxSender, TwilioSender
from farmstand.notifications.channels.smtp import SmtpSender
from farmstand.notifications.models import NotificationChannel
from tests.notifications.peers import notification_settings


async def close_senders(senders: dict[NotificationChannel, Sender]) -> None:
    """Close every sender (their HTTP clients), even when one of them fails to close."""
    await asyncio.gather(*(s.close() for s in senders.values()), return_exceptions=True)


async def test_local_files_by_default(tmp_path: Path) -> None:
    senders = make_senders(notification_settings(tmp_path))
    try:
        assert set(senders) == {
            NotificationChannel.EMAIL,
            NotificationChannel.SMS,
            NotificationChannel.PUSH,
        }  # IN_APP is the dispatcher's own
        assert isinstance(senders[NotificationChannel.EMAIL], FileMailboxSender)
        assert isinstance(senders[NotificationChannel.SMS], FileOutboxSender)
        assert isinstance(senders[NotificationChannel.PUSH], WebPushSender)
        assert all(sender.channel is channel for channel, sender in senders.items())
    finally:
        await close_senders(senders)


async def test_real_providers_when_configured(tmp_path: Path) -> None:
    settings = notification_settings(
        tmp_path,
        smtp_host="smtp.example.com",
        twilio_account_sid="AC123",
        twilio_auth_token="token",
        twilio_from_number="+15005550006",
    )

    senders = make_senders(settings)
    try:
        assert isinstance(senders[NotificationChannel.EMAIL], SmtpSender)
        assert isinstance(senders[NotificationChannel.SMS], TwilioSender)
    finally:
        await close_senders(senders)
