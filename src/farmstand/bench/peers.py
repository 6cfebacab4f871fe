"""The notification peers of a bench run, in a process of their own: an SMTP server (aiosmtpd),
a Twilio-compatible Messages API and a Web Push service, counting what arrives per
notification id so the report can say that none was lost and none was sent twice.

Each channel carries the notification id: email as its ``Message-ID`` (``<id@farmstand>``),
SMS as the ``I-Twilio-Idempotency-Token`` header, push inside the encrypted payload
(``notificationId``), which this push service decrypts with the subscriptions' keys.

    python -m farmstand.bench.peers '{"push_private": ..., "push_auth": ..., ...}'

prints ``{"smtp_port": ..., "http_port": ...}`` once listening; ``GET /_stats`` on the HTTP
port answers the counts and the ids received.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import re
import signal
import sys
import uuid
from collections import Counter
from typing import Any
from urllib.parse import parse_qs

from farmstand.bench.http import HEAD_END

MESSAGE_ID = re.compile(rb"(?im)^Message-ID:[ \t]*<([^@>\s]+)@")
MAX_REQUEST = 1 << 20
TWILIO_PATH = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages\.json$")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Tally:
    """What one channel received: every id, in arrival order (so repeats show)."""

    def __init__(self) -> None:
        self.ids: Counter[str] = Counter()
        self.total = 0
        self.refused = 0

    def add(self, notification_id: str) -> None:
        self.ids[notification_id] += 1
        self.total += 1

    def stats(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "distinct": len(self.ids),
            "duplicates": self.total - len(self.ids),
            "refused": self.refused,
            "ids": list(self.ids),
        }


class Peers:
    def __init__(self, options: dict[str, Any]) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec

        scalar = int.from_bytes(_b64url_decode(options["push_private"]), "big")
        self.push_key = ec.derive_private_key(scalar, ec.SECP256R1())
        self.push_auth = _b64url_decode(options["push_auth"])
        self.twilio_auth = "Basic " + base64.b64encode(
            f"{options['twilio_sid']}:{options['twilio_token']}".encode()
        ).decode("ascii")
        self.twilio_sid = options["twilio_sid"]
        self.email = Tally()
        self.sms = Tally()
        self.push = Tally()
        self.errors: list[str] = []

    def error(self, text: str) -> None:
        if len(self.errors) < 100:
            self.errors.append(text)

    def stats(self) -> dict[str, Any]:
        return {
            "email": self.email.stats(),
            "sms": self.sms.stats(),
            "push": self.push.stats(),
            "errors": self.errors,
        }

    # -- SMTP ----------------------------------------------------------------------------------

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = envelope.original_content or envelope.content or b""
        if isinstance(data, str):
            data = data.encode()
        match = MESSAGE_ID.search(data[:8192])
        if match is None:
            self.error("email without a farmstand Message-ID")
            self.email.refused += 1
            return "250 2.0.0 Accepted (no Message-ID)"
        self.email.add(match.group(1).decode("ascii", "replace"))
        return "250 2.0.0 Message accepted for delivery"

    # -- HTTP ----------------------------------------------------------------------------------

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
        if method == "GET" and path == "/_stats":
            return _response(200, json.dumps(self.stats()).encode(), "application/json")
        if method == "POST" and path.startswith("/push/"):
            return self._push(headers, body)
        match = TWILIO_PATH.match(path)
        if method == "POST" and match:
            return self._twilio(match.group(1), headers, body)
        return _response(404, b"not found", "text/plain")

    def _twilio(self, sid: str, headers: dict[str, str], body: bytes) -> bytes:
        if headers.get("authorization") != self.twilio_auth or sid != self.twilio_sid:
            self.sms.refused += 1
            return _json(401, {"code": 20003, "message": "Authenticate", "status": 401})
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        if not form.get("To") or "Body" not in form:
            self.sms.refused += 1
            return _json(400, {"code": 21604, "message": "A 'To' and a 'Body' are required."})
        token = headers.get("i-twilio-idempotency-token")
        if not token:
            self.error("SMS without an idempotency token")
            self.sms.refused += 1
            return _json(400, {"code": 21604, "message": "bench peer: no idempotency token"})
        self.sms.add(token)
        reply = {
            "sid": "SM" + uuid.uuid4().hex,
            "account_sid": sid,
            "status": "queued",
            "to": form["To"],
            "from": form.get("From"),
            "body": form["Body"],
        }
        return _json(201, reply)

    def _push(self, headers: dict[str, str], body: bytes) -> bytes:
        import http_ece

        if not headers.get("authorization", "").lower().startswith("vapid "):
            self.push.refused += 1
            return _response(401, b"Unauthorized: no VAPID authorization", "text/plain")
        if headers.get("content-encoding") != "aes128gcm":
            self.push.refused += 1
            return _response(400, b"Content-Encoding must be aes128gcm", "text/plain")
        try:
            plain = http_ece.decrypt(
                body, private_key=self.push_key, auth_secret=self.push_auth, version="aes128gcm"
            )
            notification_id = str(json.loads(plain)["notificationId"])
        except Exception as exc:
            self.error(f"push payload: {type(exc).__name__}: {exc}")
            self.push.refused += 1
            return _response(400, b"cannot decrypt the payload", "text/plain")
        self.push.add(notification_id)
        location = f"/m/{uuid.uuid4().hex}".encode()
        return _response(201, b"", "text/plain", extra=b"Location: " + location + b"\r\n")


def _json(status: int, data: dict[str, Any]) -> bytes:
    return _response(status, json.dumps(data).encode(), "application/json")


REASONS = {
    200: b"OK",
    201: b"Created",
    400: b"Bad Request",
    401: b"Unauthorized",
    404: b"Not Found",
}


def _response(status: int, body: bytes, content_type: str, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n"
        % (status, REASONS.get(status, b"OK"), content_type.encode(), len(body), extra)
        + body
    )


class HttpPeer(asyncio.Protocol):
    """A keep-alive HTTP/1.1 server connection, Content-Length bodies only (what httpx sends)."""

    def __init__(self, peers: Peers) -> None:
        self.peers = peers
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) > MAX_REQUEST:
            self._close()
            return
        while self.transport is not None:
            end = self.buf.find(HEAD_END)
            if end < 0:
                return
            lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            try:
                length = int(headers.get("content-length", "0"))
                method, path, _ = lines[0].split(" ", 2)
            except ValueError:
                self._close()
                return
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4 : end + 4 + length])
            del self.buf[: end + 4 + length]
            try:
                reply = self.peers.answer(method, path.split("?", 1)[0], headers, body)
            except Exception as exc:  # a peer bug must show, not hang the sender
                self.peers.error(f"{method} {path}: {type(exc).__name__}: {exc}")
                reply = _response(500, b"peer failure", "text/plain")
            self.transport.write(reply)
            if headers.get("connection", "").lower() == "close":
                self._close()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None


async def serve(options: dict[str, Any]) -> None:
    import logging

    from aiosmtpd.smtp import SMTP

    logging.getLogger("mail.log").setLevel(logging.ERROR)
    peers = Peers(options)
    loop = asyncio.get_running_loop()
    smtp = await loop.create_server(
        lambda: SMTP(peers, hostname="smtp.bench.local", timeout=300), "127.0.0.1", 0, backlog=1024
    )
    http = await loop.create_server(lambda: HttpPeer(peers), "127.0.0.1", 0, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ports = {
        "smtp_port": smtp.sockets[0].getsockname()[1],
        "http_port": http.sockets[0].getsockname()[1],
    }
    sys.stdout.write(json.dumps(ports) + "\n")
    sys.stdout.flush()
    await stop.wait()
    smtp.close()
    http.close()


def main() -> None:
    options = json.loads(sys.argv[1])
    with contextlib.suppress(KeyboardInterrupt, binascii.Error):
        asyncio.run(serve(options))


if __name__ == "__main__":
    main()
