"""Reading the development mailbox back: the reader lives with the mailbox itself
(``farmstand.notifications.channels.mailbox``); the tests check emails with it."""

from __future__ import annotations

from farmstand.notifications.channels.mailbox import MailboxEntry, open_mail, read_mailbox

__all__ = ["MailboxEntry", "open_mail", "read_mailbox"]
