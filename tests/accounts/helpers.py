"""Reading account emails back in tests: the dispatcher sends what is due into the
development mailbox, and the tests read the links out of it like a person would."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx

from tests.factories import Factory
from tests.mailbox import read_mailbox

VERIFY_LINK = re.compile(r"https?://\S+/api/auth/verify/([A-Za-z0-9_-]+)")


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    text: str

    @property
    def verify_path(self) -> str | None:
        match = VERIFY_LINK.search(self.text)
        return f"/api/auth/verify/{match.group(1)}" if match else None


async def mailbox(factory: Factory) -> list[Mail]:
    """Every email sent so far, oldest first (after sending whatever is due)."""
    while await factory.runtime.dispatcher.run_once():
        pass
    mails = []
    for entry in reversed(read_mailbox(factory.runtime.settings.mailbox_dir)):
        body = entry.message().get_body(("plain",))
        assert body is not None
        mails.append(Mail(entry.to, entry.subject, body.get_content()))
    return mails


async def mails_to(factory: Factory, email: str) -> list[Mail]:
    return [mail for mail in await mailbox(factory) if email in mail.to]


async def register_and_verify(
    client: httpx.AsyncClient, factory: Factory, body: dict[str, Any]
) -> httpx.Response:
    """Register, then use the emailed link; returns the verification's reply."""
    registered = await client.post("/api/auth/register", json=body)
    assert registered.status_code == 202, registered.text
    mails = await mails_to(factory, body["email"].lower())
    links = [mail.verify_path for mail in mails if mail.verify_path]
    assert links, [mail.subject for mail in mails]
    return await client.post(links[-1])
