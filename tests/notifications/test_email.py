"""Email senders against a real SMTP server (aiosmtpd) and the file mailbox."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from email import policy
from email.header import decode_header, make_header
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest

from farmstand.config import Settings
from farmstand.notifications.channels.base import SendResult
from farmstand.notifications.channels.mailbox import FileMailboxSender
from farmstand.notifications.channels.smtp import SmtpSender
from tests.live import free_port
from tests.mailbox import read_mailbox
from tests.notifications.peers import (
    SmtpPeer,
    failed,
    make_delivery,
    notification_settings,
    self_signed_tls,
    send_once,
)

LINK = "https://farm.example/orders/o-1?from=email"
UNSUBSCRIBE = "https://farm.example/unsubscribe?token=" + "A1b2" * 40  # longer than a line


@pytest.fixture
def smtp() -> Iterator[SmtpPeer]:
    with SmtpPeer() as peer:
        yield peer


def smtp_settings(tmp_path: Path, peer: SmtpPeer | None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "smtp_host": "127.0.0.1",
        "smtp_port": peer.port if peer else free_port(),
        "smtp_security": "none",
        "smtp_timeout_seconds": 5,
    }
    return notification_settings(tmp_path, **{**values, **overrides})


async def send(settings: Settings, deliveries: list[Any], **kwargs: Any) -> list[Any]:
    return await send_once(SmtpSender(settings, **kwargs), deliveries)


def ok(result: object) -> SendResult:
    assert isinstance(result, SendResult), result
    return result


async def test_smtp_sends_the_full_message(tmp_path: Path, smtp: SmtpPeer) -> None:
    # Given a delivery with a text and an HTML part, a link and an unsubscribe URL
    settings = smtp_settings(tmp_path, smtp, email_reply_to="Farm Desk <desk@farm.example>")
    delivery = make_delivery(
        title="Your order is ready",
        message=f"Your order is ready.\nSee it: {LINK}\n",
        html=f'<p>Your order is ready. <a href="{LINK}">See it</a></p>',
        unsubscribe_url=UNSUBSCRIBE,
    )

    # When it is sent
    [result] = await send(settings, [delivery])

    # Then the server got one well-formed message for that recipient
    expected_id = f"<{delivery.notification_id}@farmstand>"
    assert ok(result).provider_message_id == expected_id
    [mail] = smtp.messages
    assert mail.rcpt_tos == ["jane@example.com"]
    assert mail.mail_from == "no-reply@farmstand.localhost"
    msg = mail.message
    assert msg["From"] == "Farmstand <no-reply@farmstand.localhost>"
    assert msg["To"] == "Jane Doe <jane@example.com>"
    assert msg["Reply-To"] == "Farm Desk <desk@farm.example>"
    assert msg["Subject"] == "Your order is ready"
    assert msg["Date"].datetime is not None
    assert msg["Message-ID"] == expected_id
    assert msg["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg.get_content_type() == "multipart/alternative"
    assert LINK in mail.text
    assert mail.html is not None and f'href="{LINK}"' in mail.html
    # The long URL stays on one header line, not folded or encoded
    assert f"List-Unsubscribe: <{UNSUBSCRIBE}>".encode() in mail.data


async def test_text_only_message_without_html_or_unsubscribe(
    tmp_path: Path, smtp: SmtpPeer
) -> None:
    [result] = await send(smtp_settings(tmp_path, smtp), [make_delivery(message=f"Hi {LINK}")])

    ok(result)
    msg = smtp.messages[0].message
    assert msg.get_content_type() == "text/plain"
    assert LINK in smtp.messages[0].text
    assert msg["List-Unsubscribe"] is None
    assert msg["Reply-To"] is None


async def test_a_batch_uses_one_session_per_worker(tmp_path: Path, smtp: SmtpPeer) -> None:
    # Given ten messages and a concurrency of one
    deliveries = [make_delivery(email=f"c{i}@example.com") for i in range(10)]

    # When they are sent as one batch
    results = await send(smtp_settings(tmp_path, smtp, email_concurrency=1), deliveries)

    # Then one connection carried them all, and the results are in order
    assert smtp.connections == 1
    assert [ok(r).provider_message_id for r in results] == [
        f"<{d.notification_id}@farmstand>" for d in deliveries
    ]
    assert sorted(m.rcpt_tos[0] for m in smtp.messages) == sorted(
        d.recipient.email for d in deliveries
    )


async def test_a_batch_is_shared_by_at_most_email_concurrency_sessions(
    tmp_path: Path, smtp: SmtpPeer
) -> None:
    deliveries = [make_delivery(email=f"c{i}@example.com") for i in range(12)]

    results = await send(smtp_settings(tmp_path, smtp, email_concurrency=3), deliveries)

    assert all(isinstance(r, SendResult) for r in results)
    assert len(smtp.messages) == 12
    assert 1 <= smtp.connections <= 3
    assert {m.session for m in smtp.messages} <= {1, 2, 3}


async def test_logs_in_when_a_username_is_set(tmp_path: Path) -> None:
    with SmtpPeer(auth=("farm", "s3cret")) as peer:
        settings = smtp_settings(
            tmp_path, peer, smtp_username="farm", smtp_password="s3cret", email_concurrency=1
        )
        results = await send(settings, [make_delivery() for _ in range(3)])

        assert all(isinstance(r, SendResult) for r in results)
        assert peer.logins == ["farm"]  # once for the session, not per message
        assert len(peer.messages) == 3


async def test_a_refused_login_is_the_providers_failure_not_the_messages(
    tmp_path: Path,
) -> None:
    with SmtpPeer(auth=("farm", "s3cret")) as peer:
        settings = smtp_settings(tmp_path, peer, smtp_username="farm", smtp_password="wrong")
        results = await send(settings, [make_delivery(), make_delivery()])

        for result in results:
            error = failed(result)
            # Not FAILED for good: the channel pauses until the login works again.
            assert error.provider and not error.permanent
            assert "SMTP login refused" in str(error)
            assert "FARMSTAND_SMTP_PASSWORD" in str(error)
        assert peer.messages == []


async def test_starttls_with_login(tmp_path: Path) -> None:
    tls = self_signed_tls()
    with SmtpPeer(auth=("farm", "s3cret"), starttls=tls.server) as peer:
        settings = smtp_settings(
            tmp_path, peer, smtp_security="starttls", smtp_username="farm", smtp_password="s3cret"
        )
        [result] = await send(settings, [make_delivery()], tls_context=tls.client)

        ok(result)
        assert peer.logins == ["farm"]
        assert len(peer.messages) == 1


async def test_implicit_tls(tmp_path: Path) -> None:
    tls = self_signed_tls()
    with SmtpPeer(tls=tls.server) as peer:
        settings = smtp_settings(tmp_path, peer, smtp_security="tls")
        [result] = await send(settings, [make_delivery()], tls_context=tls.client)

        ok(result)
        assert len(peer.messages) == 1


async def test_an_untrusted_certificate_is_a_temporary_failure(tmp_path: Path) -> None:
    with SmtpPeer(tls=self_signed_tls().server) as peer:
        settings = smtp_settings(tmp_path, peer, smtp_security="tls")
        [result] = await send(settings, [make_delivery()])  # system CAs: not trusted

        assert not failed(result).permanent and failed(result).provider
        assert peer.messages == []


async def test_a_hostile_display_name_is_safely_encoded(tmp_path: Path, smtp: SmtpPeer) -> None:
    # Given a name with quotes, a comma, a line break with a header after it, and non-ASCII
    name = 'Evil "Boss", Jr.\r\nBcc: victim@example.com Zoë 农场'
    delivery = make_delivery(name=name, title="Ready\r\nBcc: victim@example.com")

    [result] = await send(smtp_settings(tmp_path, smtp), [delivery])

    # Then it went to Jane only, and the headers are plain ASCII lines with no injected header
    ok(result)
    [mail] = smtp.messages
    assert mail.rcpt_tos == ["jane@example.com"]
    head = mail.data.split(b"\r\n\r\n", 1)[0]
    head.decode("ascii")
    assert all(len(line) <= 78 for line in head.split(b"\r\n"))
    assert not re.search(rb"^bcc:", head, re.IGNORECASE | re.MULTILINE)
    msg = mail.message
    assert msg["Bcc"] is None
    [to] = msg["To"].addresses
    assert to.addr_spec == "jane@example.com"
    # RFC 2047 decoding gives back the name (line break folded to a space), then the address
    raw_to = BytesParser(policy=policy.compat32).parsebytes(mail.data)["To"]
    assert str(make_header(decode_header(raw_to))) == (
        'Evil "Boss", Jr. Bcc: victim@example.com Zoë 农场 <jane@example.com>'
    )
    assert msg["Subject"] == "Ready Bcc: victim@example.com"


async def test_an_unsubscribe_url_cannot_break_out_of_its_header(
    tmp_path: Path, smtp: SmtpPeer
) -> None:
    url = "https://f.example/u?t=a b>c\r\nX-Evil: 1"

    [result] = await send(smtp_settings(tmp_path, smtp), [make_delivery(unsubscribe_url=url)])

    ok(result)
    msg = smtp.messages[0].message
    assert msg["List-Unsubscribe"] == "<https://f.example/u?t=a%20b%3Ec%0D%0AX-Evil:%201>"
    assert msg["X-Evil"] is None


async def test_a_refused_recipient_is_permanent_and_the_others_still_go(
    tmp_path: Path, smtp: SmtpPeer
) -> None:
    smtp.refuse["gone@example.com"] = "550 5.1.1 No such user"
    deliveries = [
        make_delivery(email="a@example.com"),
        make_delivery(email="gone@example.com"),
        make_delivery(email="b@example.com"),
    ]

    results = await send(smtp_settings(tmp_path, smtp, email_concurrency=1), deliveries)

    ok(results[0])
    error = failed(results[1])
    assert error.permanent
    assert "550" in str(error) and "No such user" in str(error)
    ok(results[2])
    assert [m.rcpt_tos for m in smtp.messages] == [["a@example.com"], ["b@example.com"]]
    assert smtp.connections == 1


async def test_greylisting_is_temporary_and_the_retry_goes_through(
    tmp_path: Path, smtp: SmtpPeer
) -> None:
    # Given a server that first answers 451 (greylisting)
    smtp.fail_next("RCPT", "451 4.7.1 Greylisted, try again later")
    settings = smtp_settings(tmp_path, smtp)
    delivery = make_delivery()

    # When the dispatcher sends, then retries later
    [first] = await send(settings, [delivery])
    [second] = await send(settings, [delivery])

    # Then the first attempt is a temporary failure and the retry is delivered
    assert not failed(first).permanent
    assert "451" in str(first)
    assert ok(second).provider_message_id == f"<{delivery.notification_id}@farmstand>"
    assert len(smtp.messages) == 1


@pytest.mark.parametrize(
    ("reply", "permanent"),
    [("554 5.6.0 Message content rejected", True), ("452 4.3.1 Insufficient storage", False)],
)
async def test_a_refused_message_is_classified_by_its_code(
    tmp_path: Path, smtp: SmtpPeer, reply: str, permanent: bool
) -> None:
    smtp.fail_next("DATA", reply)

    first, second = await send(
        smtp_settings(tmp_path, smtp, email_concurrency=1), [make_delivery(), make_delivery()]
    )

    assert failed(first).permanent is permanent
    assert reply.split()[0] in str(first)
    ok(second)  # the session carried on


async def test_a_session_dropped_mid_batch_reconnects_once(tmp_path: Path, smtp: SmtpPeer) -> None:
    # Given a server that hangs up (421) when the second message starts
    smtp.fail_next("MAIL", "421 4.7.0 Too many messages, closing", close=True, after=1)
    deliveries = [make_delivery(email=f"c{i}@example.com") for i in range(4)]

    # When one session sends the batch
    results = await send(smtp_settings(tmp_path, smtp, email_concurrency=1), deliveries)

    # Then everything arrived exactly once, the rest over a second connection
    assert all(isinstance(r, SendResult) for r in results), results
    assert [m.rcpt_tos[0] for m in smtp.messages] == [f"c{i}@example.com" for i in range(4)]
    assert [m.session for m in smtp.messages] == [1, 2, 2, 2]
    assert smtp.connections == 2


async def test_a_message_dropped_twice_is_a_temporary_failure(
    tmp_path: Path, smtp: SmtpPeer
) -> None:
    smtp.fail_next("MAIL", "421 4.3.2 Shutting down", close=True, times=2)

    [result] = await send(smtp_settings(tmp_path, smtp), [make_delivery()])

    error = failed(result)
    assert not error.permanent
    assert "421" in str(error)
    assert smtp.connections == 2  # the first try and one reconnection, no more
    assert smtp.messages == []


async def test_an_unreachable_server_is_a_temporary_failure(tmp_path: Path) -> None:
    results = await send(smtp_settings(tmp_path, None), [make_delivery(), make_delivery()])

    for result in results:
        error = failed(result)
        assert not error.permanent
        assert "SMTP connection failed" in str(error)


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """Accepts connections and never says a word."""
    writers: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_silent_server_times_out_as_a_temporary_failure(tmp_path: Path) -> None:
    async with silent_server() as port:
        settings = notification_settings(
            tmp_path,
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_security="none",
            smtp_timeout_seconds=0.2,
        )
        [result] = await send(settings, [make_delivery()])

    error = failed(result)
    assert not error.permanent
    assert "timed out" in str(error).lower()


async def test_an_invalid_address_is_permanent_without_bothering_the_server(
    tmp_path: Path, smtp: SmtpPeer
) -> None:
    results = await send(
        smtp_settings(tmp_path, smtp), [make_delivery(email="not-an-address"), make_delivery()]
    )

    assert failed(results[0]).permanent
    assert "invalid email address" in str(results[0])
    ok(results[1])
    assert len(smtp.messages) == 1


def test_a_bad_from_setting_fails_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="FARMSTAND_EMAIL_FROM"):
        SmtpSender(smtp_settings(tmp_path, None, email_from="not an address"))


# ---------------------------------------------------------------------------------------------
# The file mailbox


async def test_the_file_mailbox_writes_readable_eml_files(tmp_path: Path) -> None:
    # Given the default (no SMTP host) and two deliveries
    settings = notification_settings(tmp_path)
    sender = FileMailboxSender(settings)
    first = make_delivery(
        title="First",
        message=f"One {LINK}",
        html=f'<a href="{LINK}">One</a>',
        unsubscribe_url=UNSUBSCRIBE,
    )
    second = make_delivery(title="Second", name="Zoë Ferme", email="zoe@example.com")

    # When they are sent, one batch after the other
    [r1] = await sender.send_many([first])
    [r2] = await sender.send_many([second])
    await sender.close()

    # Then each is an .eml file, named by time and notification id, with no temp file left
    assert ok(r1).provider_message_id == f"<{first.notification_id}@farmstand>"
    ok(r2)
    files = sorted(p.name for p in settings.mailbox_dir.iterdir())
    assert len(files) == 2 and all(name.endswith(".eml") for name in files)
    assert files[0].endswith(f"-{first.notification_id}.eml")
    # And the mailbox reads newest first, with the parsed headers and the full text
    entries = read_mailbox(settings.mailbox_dir)
    assert [e.subject for e in entries] == ["Second", "First"]
    assert entries[0].to == "Zoë Ferme <zoe@example.com>"
    assert entries[1].message_id == f"<{first.notification_id}@farmstand>"
    assert entries[1].date is not None
    message = entries[1].message()
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and html is not None
    assert LINK in plain.get_content()
    assert LINK in html.get_content()
    assert message["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"
    assert "Subject: First" in entries[1].read_text()


async def test_the_file_mailbox_refuses_an_invalid_address(tmp_path: Path) -> None:
    sender = FileMailboxSender(notification_settings(tmp_path))

    [result] = await sender.send_many([make_delivery(email="nobody")])

    assert failed(result).permanent


def test_an_absent_mailbox_is_empty(tmp_path: Path) -> None:
    assert read_mailbox(tmp_path / "nothing-here") == []
