"""Real peers for the notification channels, started by tests: an SMTP server, a Twilio-like
HTTP API and a Web Push service that checks VAPID and decrypts what it receives.

    with SmtpPeer() as smtp:                        # aiosmtpd in a thread
        ... smtp.port, smtp.messages, smtp.connections

    async with TwilioPeer().running() as twilio:    # uvicorn in this event loop
        ... twilio.url, twilio.requests

    async with PushPeer().running() as push:
        target = push.subscribe()                   # a browser's subscription (PushTarget)
        ... push.received, push.errors
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime as dt
import ipaddress
import json
import logging
import ssl
import tempfile
import threading
import time
import uuid
import warnings
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from functools import cached_property
from pathlib import Path
from typing import Any

import http_ece
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.x509.oid import NameOID
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from farmstand.config import Settings, load_settings
from farmstand.notifications.channels.base import (
    Delivery,
    DeliveryError,
    PushTarget,
    Recipient,
    Sender,
    SendResult,
)
from farmstand.notifications.models import NotificationChannel, NotificationType
from tests.conftest import TEST_SECRET
from tests.live import free_port, serve_in_process

logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd's chatter


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def notification_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for sender tests: files under ``data_dir``, no database needed."""
    values: dict[str, Any] = {
        "environment": "test",
        "data_dir": data_dir,
        "secret_key": TEST_SECRET,
        **overrides,
    }
    return load_settings(**values)


async def send_once(sender: Sender, deliveries: list[Delivery]) -> list[SendResult | DeliveryError]:
    """One batch through a freshly built sender, closed afterwards."""
    try:
        return await sender.send_many(deliveries)
    finally:
        await sender.close()


def failed(result: object) -> DeliveryError:
    assert isinstance(result, DeliveryError), result
    return result


def make_delivery(
    *,
    channel: NotificationChannel = NotificationChannel.EMAIL,
    type: NotificationType = NotificationType.ORDER_READY,
    notification_id: str | None = None,
    name: str = "Jane Doe",
    email: str = "jane@example.com",
    phone: str | None = "+15551230001",
    title: str = "Your order is ready",
    message: str = "Your order FS-1001 is ready for pickup: https://farm.example/orders/o-1",
    html: str | None = None,
    url: str = "https://farm.example/orders/o-1",
    unsubscribe_url: str | None = None,
    push_targets: tuple[PushTarget, ...] = (),
    order_id: str = "o-1",
) -> Delivery:
    return Delivery(
        notification_id=notification_id or str(uuid.uuid4()),
        type=type,
        channel=channel,
        recipient=Recipient(
            user_id="u-1", name=name, email=email, phone=phone, timezone="Europe/Paris"
        ),
        title=title,
        message=message,
        html=html,
        url=url,
        unsubscribe_url=unsubscribe_url,
        push_targets=push_targets,
        context={"attempt": 1, "orderId": order_id},
    )


# ---------------------------------------------------------------------------------------------
# TLS


@dataclass(frozen=True)
class TlsPair:
    server: ssl.SSLContext
    client: ssl.SSLContext  # trusts only the server's self-signed certificate


def self_signed_tls() -> TlsPair:
    """A certificate for 127.0.0.1 and localhost, and a client context that trusts it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "cert.pem").write_bytes(cert_pem)
        (Path(tmp) / "key.pem").write_bytes(key_pem)
        server.load_cert_chain(Path(tmp) / "cert.pem", Path(tmp) / "key.pem")
    client = ssl.create_default_context(cadata=cert_pem.decode())
    return TlsPair(server=server, client=client)


# ---------------------------------------------------------------------------------------------
# SMTP


@dataclass
class ReceivedMail:
    session: int  # which connection (1, 2, ...) it came over
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @cached_property
    def message(self) -> EmailMessage:
        return BytesParser(policy=policy.default).parsebytes(self.data)

    @property
    def text(self) -> str:
        part = self.message.get_body(("plain",))
        assert part is not None
        return str(part.get_content())

    @property
    def html(self) -> str | None:
        part = self.message.get_body(("html",))
        return None if part is None else str(part.get_content())


class _PeerSMTP(SMTP):
    """aiosmtpd's server, counting connections and playing scripted replies."""

    def __init__(self, peer: SmtpPeer, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.peer = peer
        self.peer_session = 0

    def connection_made(self, transport: Any) -> None:
        first = self.transport is None  # STARTTLS calls this again on the same session
        super().connection_made(transport)
        if first:
            self.peer_session = self.peer._connected()

    async def _scripted(self, command: str) -> bool:
        script = self.peer._next_script(command)
        if script is None:
            return False
        reply, close = script
        await self.push(reply)
        if close:  # what a server does after a 421: hang up
            self.transport.close()  # type: ignore[union-attr]
        return True

    async def smtp_MAIL(self, arg: str) -> None:
        if not await self._scripted("MAIL"):
            await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str) -> None:
        if not await self._scripted("RCPT"):
            await super().smtp_RCPT(arg)

    async def smtp_DATA(self, arg: str) -> None:
        if not await self._scripted("DATA"):
            await super().smtp_DATA(arg)


class _Handler:
    def __init__(self, peer: SmtpPeer) -> None:
        self.peer = peer

    async def handle_RCPT(
        self, server: _PeerSMTP, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        refusal = self.peer.refuse.get(address.lower())
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: _PeerSMTP, session: Any, envelope: Any) -> str:
        if self.peer.delay:  # a slow server, so a worker can be caught mid-batch
            await asyncio.sleep(self.peer.delay)
        data = envelope.original_content or envelope.content
        with self.peer._lock:
            self.peer.messages.append(
                ReceivedMail(
                    server.peer_session, envelope.mail_from, list(envelope.rcpt_tos), bytes(data)
                )
            )
        return "250 2.0.0 Message accepted for delivery"


class SmtpPeer:
    """An SMTP server on a free port of 127.0.0.1 (aiosmtpd, in its own thread).

    ``auth=(user, password)`` requires AUTH; ``tls``/``starttls`` take a server SSL context
    for implicit TLS or a required STARTTLS. Failures to play: ``refuse[address] = "550 ..."``
    refuses a recipient; ``fail_next("RCPT", "451 ...")`` answers the next RCPT (or MAIL,
    DATA) with a reply instead, ``close=True`` hanging up after it.
    """

    def __init__(
        self,
        *,
        auth: tuple[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
        starttls: ssl.SSLContext | None = None,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.messages: list[ReceivedMail] = []
        self.connections = 0
        self.logins: list[str] = []
        self.refuse: dict[str, str] = {}
        self.delay = 0.0  # seconds each DATA takes
        self._auth = auth
        # Per command, what to do with the next ones: None lets one through as usual.
        self._scripts: defaultdict[str, deque[tuple[str, bool] | None]] = defaultdict(deque)
        self._lock = threading.Lock()
        peer = self
        kwargs: dict[str, Any] = {"server_hostname": "smtp.peer.test", "ready_timeout": 5}
        if auth is not None:
            kwargs.update(
                authenticator=self._authenticate,
                auth_required=True,
                auth_require_tls=starttls is not None,
            )
        if starttls is not None:
            kwargs.update(tls_context=starttls, require_starttls=True)
        if tls is not None:
            kwargs.update(ssl_context=tls)

        class _Controller(Controller):
            def factory(self) -> SMTP:
                with warnings.catch_warnings():  # AUTH over plain text, on purpose
                    warnings.simplefilter("ignore", UserWarning)
                    return _PeerSMTP(peer, self.handler, **self.SMTP_kwargs)

        self._controller = _Controller(_Handler(self), hostname=self.host, port=self.port, **kwargs)

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert self._auth is not None
        if isinstance(auth_data, LoginPassword):
            login, password = auth_data.login.decode(), auth_data.password.decode()
            if (login, password) == self._auth:
                with self._lock:
                    self.logins.append(login)
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    def _connected(self) -> int:
        with self._lock:
            self.connections += 1
            return self.connections

    def _next_script(self, command: str) -> tuple[str, bool] | None:
        with self._lock:
            queue = self._scripts[command]
            return queue.popleft() if queue else None

    def fail_next(
        self, command: str, reply: str, *, times: int = 1, close: bool = False, after: int = 0
    ) -> None:
        """Answer ``command`` (MAIL, RCPT, DATA) with ``reply`` ``times`` times, once ``after``
        of them went through normally; ``close`` hangs up after the reply."""
        with self._lock:
            queue = self._scripts[command.upper()]
            queue.extend([None] * after)
            queue.extend([(reply, close)] * times)

    def start(self) -> SmtpPeer:
        self._controller.start()
        with self._lock:  # start() made a connection to check the server is up
            self.connections = 0
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> SmtpPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------
# Twilio


@dataclass
class TwilioRequest:
    account_sid: str
    auth: tuple[str, str] | None  # HTTP basic credentials, as sent
    form: dict[str, str]
    headers: dict[str, str]  # lower-case names


class TwilioPeer:
    """The part of Twilio's REST API a sender uses: ``POST /2010-04-01/Accounts/{sid}/
    Messages.json``, with basic auth, form fields and the idempotency token.

    ``refuse_number(to, 400, 21211)`` refuses one number; ``fail_next(status, code)`` answers
    the next request(s) with an error. A repeated idempotency token gets the first sid back.
    """

    def __init__(
        self, account_sid: str = "AC" + "1" * 32, auth_token: str = "twilio-token-0123456789"
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.url = ""
        self.requests: list[TwilioRequest] = []
        self.sent: list[dict[str, str | None]] = []  # accepted messages (with their sid)
        self._next: deque[tuple[int, dict[str, Any]]] = deque()
        self._numbers: dict[str, tuple[int, dict[str, Any]]] = {}
        self._by_token: dict[str, dict[str, Any]] = {}
        self.delay = 0.0  # seconds each answer takes, to see concurrency
        self.in_flight = self.max_in_flight = 0
        self.client_ports: set[int] = set()  # one per connection the sender opened
        self.app = self._make_app()

    def reset(self) -> None:
        """Forget requests and scripted answers (to share one server between tests)."""
        self.requests.clear()
        self.sent.clear()
        self._next.clear()
        self._numbers.clear()
        self._by_token.clear()
        self.delay = 0.0
        self.in_flight = self.max_in_flight = 0
        self.client_ports.clear()

    @staticmethod
    def error(status: int, code: int | None, message: str) -> dict[str, Any]:
        return {
            "code": code,
            "message": message,
            "status": status,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
        }

    def fail_next(
        self, status: int, code: int | None = None, message: str = "Failure", *, times: int = 1
    ) -> None:
        self._next.extend([(status, self.error(status, code, message))] * times)

    def refuse_number(
        self, number: str, status: int = 400, code: int = 21211, message: str | None = None
    ) -> None:
        text = message or f"The 'To' number {number} is not a valid phone number."
        self._numbers[number] = (status, self.error(status, code, text))

    def _make_app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/2010-04-01/Accounts/{sid}/Messages.json")
        async def messages(sid: str, request: Request) -> Response:
            if request.client:
                self.client_ports.add(request.client.port)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await asyncio.sleep(self.delay)
                return await self._answer(sid, request)
            finally:
                self.in_flight -= 1

        return app

    async def _answer(self, sid: str, request: Request) -> Response:
        auth = _basic_auth(request.headers.get("authorization", ""))
        form = {k: str(v) for k, v in (await request.form()).items()}
        self.requests.append(
            TwilioRequest(sid, auth, form, {k.lower(): v for k, v in request.headers.items()})
        )
        if auth != (self.account_sid, self.auth_token) or sid != self.account_sid:
            return JSONResponse(self.error(401, 20003, "Authenticate"), status_code=401)
        if self._next:
            status, body = self._next.popleft()
            return JSONResponse(body, status_code=status)
        to = form.get("To", "")
        if to in self._numbers:
            status, body = self._numbers[to]
            return JSONResponse(body, status_code=status)
        if not to or "Body" not in form:
            return JSONResponse(
                self.error(400, 21604, "A 'To' phone number and a 'Body' are required."),
                status_code=400,
            )
        if not (form.get("From") or form.get("MessagingServiceSid")):
            return JSONResponse(
                self.error(400, 21603, "A 'From' phone number is required."), status_code=400
            )
        token = request.headers.get("i-twilio-idempotency-token")
        if token and token in self._by_token:
            return JSONResponse(self._by_token[token], status_code=201)
        reply = {
            "sid": "SM" + uuid.uuid4().hex,
            "account_sid": self.account_sid,
            "status": "accepted" if form.get("MessagingServiceSid") else "queued",
            "to": to,
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "body": form["Body"],
        }
        if token:
            self._by_token[token] = reply
        self.sent.append(reply)
        return JSONResponse(reply, status_code=201)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[TwilioPeer]:
        async with serve_in_process(self.app) as url:
            self.url = url
            yield self


def _basic_auth(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value).decode().partition(":")
    except (ValueError, binascii.Error):
        return None
    return user, password


# ---------------------------------------------------------------------------------------------
# Web Push


@dataclass
class Subscriber:
    """A browser's side of one subscription: the keys it decrypts with."""

    id: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes
    target: PushTarget


@dataclass
class ReceivedPush:
    subscription_id: str
    headers: dict[str, str]  # lower-case names
    claims: dict[str, Any]  # the verified VAPID JWT claims
    payload: Any  # the decrypted JSON


@dataclass
class PushPeer:
    """A push service: ``POST /push/{id}`` checks VAPID (ES256 signature with the key in
    ``k``, ``aud``, ``exp`` <= 24 h, ``sub``), then decrypts the aes128gcm body with the
    subscriber's keys. Answers 201, or ``respond(target, 410)``/``fail_next(500)``.

    Requests that fail a check are answered 401/400 and described in ``errors``.
    """

    expected_public_key: str | None = None  # the VAPID key the subscriptions were made with
    url: str = ""
    subscribers: dict[str, Subscriber] = field(default_factory=dict)
    received: list[ReceivedPush] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: int = 0
    delay: float = 0.0  # seconds each answer takes, to see concurrency
    in_flight: int = 0
    max_in_flight: int = 0
    client_ports: set[int] = field(default_factory=set)
    _status: dict[str, int] = field(default_factory=dict)
    _next: deque[int] = field(default_factory=deque)

    def reset(self) -> None:
        """Forget subscriptions, pushes and scripted answers (to share one server)."""
        self.expected_public_key = None
        self.subscribers.clear()
        self.received.clear()
        self.errors.clear()
        self.requests = 0
        self.delay = 0.0
        self.in_flight = self.max_in_flight = 0
        self.client_ports.clear()
        self._status.clear()
        self._next.clear()

    def subscribe(self, subscription_id: str | None = None) -> PushTarget:
        """A new browser subscription on this service (what PushManager.subscribe returns)."""
        assert self.url, "start the peer first"
        sub_id = subscription_id or uuid.uuid4().hex[:12]
        key = ec.generate_private_key(ec.SECP256R1())
        auth = uuid.uuid4().bytes  # 16 random bytes
        p256dh = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        target = PushTarget(sub_id, f"{self.url}/push/{sub_id}", b64url(p256dh), b64url(auth))
        self.subscribers[sub_id] = Subscriber(sub_id, key, auth, target)
        return target

    def respond(self, target: PushTarget, status: int) -> None:
        """Answer every push to ``target`` with ``status`` (410: the subscription is gone)."""
        self._status[target.id] = status

    def fail_next(self, status: int, *, times: int = 1) -> None:
        self._next.extend([status] * times)

    def payloads_for(self, target: PushTarget) -> list[Any]:
        return [r.payload for r in self.received if r.subscription_id == target.id]

    def _verify_vapid(self, header: str) -> dict[str, Any]:
        scheme, _, params = header.partition(" ")
        if scheme.lower() != "vapid":
            raise ValueError(f"Authorization scheme is {scheme!r}, not vapid")
        values = dict(part.strip().split("=", 1) for part in params.split(",") if "=" in part)
        token, key = values.get("t", ""), values.get("k", "")
        if self.expected_public_key and key != self.expected_public_key:
            raise ValueError("k is not the key the subscription was made with")
        signing_input, _, signature = token.rpartition(".")
        head_b64, _, claims_b64 = signing_input.partition(".")
        head = json.loads(b64url_decode(head_b64))
        if head.get("alg") != "ES256":
            raise ValueError(f"JWT alg is {head.get('alg')!r}")
        raw = b64url_decode(signature)
        if len(raw) != 64:
            raise ValueError("ES256 signature is not 64 bytes")
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(key))
        der = utils.encode_dss_signature(
            int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
        )
        try:
            public.verify(der, signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise ValueError("bad JWT signature") from None
        claims: dict[str, Any] = json.loads(b64url_decode(claims_b64))
        now = time.time()
        if claims.get("aud") != self.url:
            raise ValueError(f"aud is {claims.get('aud')!r}, not {self.url!r}")
        exp = claims.get("exp")
        if not isinstance(exp, int) or not now < exp <= now + 24 * 3600 + 60:
            raise ValueError(f"exp {exp!r} is not within the next 24 hours")
        if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
            raise ValueError(f"sub is {claims.get('sub')!r}")
        return claims

    def _make_app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/push/{sub_id}")
        async def push(sub_id: str, request: Request) -> Response:
            self.requests += 1
            if request.client:
                self.client_ports.add(request.client.port)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await asyncio.sleep(self.delay)
                return await self._answer(sub_id, request)
            finally:
                self.in_flight -= 1

        return app

    async def _answer(self, sub_id: str, request: Request) -> Response:
        subscriber = self.subscribers.get(sub_id)
        if subscriber is None:
            return Response("no such subscription", status_code=404)
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            claims = self._verify_vapid(headers.get("authorization", ""))
        except (ValueError, KeyError, TypeError) as exc:
            self.errors.append(f"{sub_id}: VAPID: {exc}")
            return Response(f"Unauthorized: {exc}", status_code=401)
        body = await request.body()
        try:
            if headers.get("content-encoding") != "aes128gcm":
                raise ValueError(f"Content-Encoding {headers.get('content-encoding')!r}")
            if not headers.get("ttl", "").isdigit():
                raise ValueError(f"TTL {headers.get('ttl')!r}")
            if headers.get("urgency", "normal") not in {"very-low", "low", "normal", "high"}:
                raise ValueError(f"Urgency {headers.get('urgency')!r}")
            plain = http_ece.decrypt(
                body,
                private_key=subscriber.private_key,
                auth_secret=subscriber.auth,
                version="aes128gcm",
            )
            payload = json.loads(plain)
        except Exception as exc:
            self.errors.append(f"{sub_id}: payload: {type(exc).__name__}: {exc}")
            return Response(f"Bad request: {exc}", status_code=400)
        status = self._next.popleft() if self._next else self._status.get(sub_id, 201)
        if status != 201:
            text = {410: "push subscription has unsubscribed or expired", 404: "not found"}.get(
                status, "service failure"
            )
            return Response(text, status_code=status)
        self.received.append(ReceivedPush(sub_id, headers, claims, payload))
        return Response(status_code=201, headers={"Location": f"{self.url}/m/{uuid.uuid4()}"})

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[PushPeer]:
        async with serve_in_process(self._make_app()) as url:
            self.url = url
            yield self
