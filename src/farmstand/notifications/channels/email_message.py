"""The email a notification becomes, whichever sender sends it (SMTP, or the development
mailbox): From, To, Reply-To, Subject, Date, a ``Message-ID`` derived from the notification id
(so a receiver can drop a retried copy), a plain-text part and an HTML alternative, and
one-click unsubscribe headers.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from email import policy as email_policy
from email.errors import HeaderParseError
from email.headerregistry import Address, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote

from farmstand.config import Settings
from farmstand.notifications.channels.base import Delivery

log = logging.getLogger(__name__)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9._-]")


class _VerbatimHeader(UnstructuredHeader):
    """A header written on one line, as given: folding or RFC 2047-encoding a URL breaks it."""

    def fold(self, *, policy: Any) -> str:
        return f"{self.name}: {self}{policy.linesep}"  # type: ignore[attr-defined]


_headers = HeaderRegistry()
# typeshed wants a BaseHeader, but the registry takes the mixin and adds the base class itself.
_headers.map_to_type("list-unsubscribe", _VerbatimHeader)  # type: ignore[arg-type]
POLICY = email_policy.default.clone(header_factory=_headers)
"""The policy of every message built here (standard folding, except List-Unsubscribe)."""


def one_line(text: str) -> str:
    """``text`` with control characters (CR, LF, TAB, ...) and runs of spaces collapsed."""
    return " ".join(_CONTROL.sub(" ", text).split())


def safe_id(notification_id: str) -> str:
    """The id with anything but letters, digits, ``.``, ``_`` and ``-`` replaced (UUIDs pass)."""
    return _UNSAFE_ID.sub("_", notification_id) or "_"


def message_id_for(notification_id: str) -> str:
    return f"<{safe_id(notification_id)}@farmstand>"


def parse_mailbox(value: str, setting: str) -> Address:
    """One address from a setting such as ``Farmstand <no-reply@example.com>``."""
    try:
        header = POLICY.header_factory("From", value)
        addresses: tuple[Address, ...] = header.addresses
    except (HeaderParseError, ValueError, IndexError):
        addresses = ()
    if len(addresses) != 1 or not addresses[0].domain:
        raise ValueError(f"{setting} must be one address, e.g. 'Farmstand <no-reply@example.com>'")
    return addresses[0]


def _unsubscribe_header(url: str) -> str:
    # Percent-encode anything that could end the <...> or the header line.
    return "<" + quote(url.strip(), safe="!#$%&'()*+,-./:;=?@[]_~") + ">"


def build_message(
    delivery: Delivery,
    *,
    sender: Address,
    reply_to: Address | None = None,
    now: datetime | None = None,
) -> EmailMessage:
    """The email for ``delivery``. Raises ValueError when the recipient address is unusable."""
    recipient = delivery.recipient
    try:
        to = Address(display_name=one_line(recipient.name), addr_spec=recipient.email.strip())
    except (ValueError, HeaderParseError) as exc:  # InvalidHeaderDefect is a ValueError
        raise ValueError(f"invalid email address {recipient.email!r}: {exc}") from None
    if not to.domain:
        raise ValueError(f"invalid email address {recipient.email!r}: no domain")

    msg = EmailMessage(policy=POLICY)
    msg["From"] = sender
    msg["To"] = to
    if reply_to is not None:
        msg["Reply-To"] = reply_to
    msg["Subject"] = one_line(delivery.title)
    msg["Date"] = now or datetime.now(UTC)
    msg["Message-ID"] = message_id_for(delivery.notification_id)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies
    if delivery.unsubscribe_url and delivery.unsubscribe_url.strip():
        unsubscribe = _unsubscribe_header(delivery.unsubscribe_url)
        if len(unsubscribe) <= 900:  # on one line, within SMTP's 998 characters
            msg["List-Unsubscribe"] = unsubscribe
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"  # RFC 8058
        else:
            log.warning("unsubscribe URL too long for a header, left out of %s", msg["Message-ID"])
    # Quoted-printable keeps lines short and 7-bit whatever the server supports.
    msg.set_content(delivery.message, cte="quoted-printable")
    if delivery.html:
        msg.add_alternative(delivery.html, subtype="html", cte="quoted-printable")
    return msg


class MessageBuilder:
    """Settings-bound message building shared by both senders."""

    def __init__(self, settings: Settings) -> None:
        self.sender = parse_mailbox(settings.email_from, "FARMSTAND_EMAIL_FROM")
        self.reply_to = (
            parse_mailbox(settings.email_reply_to, "FARMSTAND_EMAIL_REPLY_TO")
            if settings.email_reply_to
            else None
        )

    def build(self, delivery: Delivery) -> EmailMessage:
        return build_message(delivery, sender=self.sender, reply_to=self.reply_to)
