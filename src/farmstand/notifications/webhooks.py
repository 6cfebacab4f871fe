"""Providers calling back: Twilio's SMS delivery reports (``StatusCallback``).

Public routes (Twilio has no session), so every request must prove it comes from Twilio:
``X-Twilio-Signature`` is the base64 HMAC-SHA1, keyed with the account's auth token, of the
full URL Twilio requested followed by each POST parameter's name and value, sorted by name
(Twilio's documented algorithm). Anything unsigned or wrongly signed is refused with 403.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Iterable

from fastapi import APIRouter, Request, Response, status

from farmstand.config import Settings
from farmstand.deps import RuntimeDep, SessionDep
from farmstand.errors import Forbidden
from farmstand.notifications import delivery_log
from farmstand.notifications.channels.sms import STATUS_CALLBACK_PATH

log = logging.getLogger(__name__)

router = APIRouter(tags=["webhooks"])


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """What Twilio puts in ``X-Twilio-Signature`` for a form POST to ``url``."""
    by_name: dict[str, set[str]] = {}
    for name, value in params:
        by_name.setdefault(name, set()).add(value)
    signed = url + "".join(
        name + value for name in sorted(by_name) for value in sorted(by_name[name])
    )
    digest = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def valid_twilio_signature(
    auth_token: str, url: str, params: Iterable[tuple[str, str]], signature: str | None
) -> bool:
    if not auth_token or not signature:
        return False
    expected = twilio_signature(auth_token, url, params)
    return hmac.compare_digest(expected.encode(), signature.strip().encode())


def _requested_url(settings: Settings, request: Request) -> str:
    """The URL Twilio signed: the one we gave it (``public_base_url`` + path + query), since
    behind a proxy the scheme and host this server sees are not what Twilio called."""
    if settings.public_base_url:
        query = request.url.query
        return settings.public_base_url + request.url.path + (f"?{query}" if query else "")
    return str(request.url)


@router.post(
    STATUS_CALLBACK_PATH,
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Twilio's SMS delivery report (signed by Twilio)",
    include_in_schema=False,
)
async def twilio_status(request: Request, runtime: RuntimeDep, session: SessionDep) -> Response:
    settings = runtime.settings
    token = settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token else ""
    form = await request.form()
    params = [(name, value) for name, value in form.multi_items() if isinstance(value, str)]
    if not valid_twilio_signature(
        token, _requested_url(settings, request), params, request.headers.get("x-twilio-signature")
    ):
        raise Forbidden("Invalid or missing X-Twilio-Signature.")
    notification_id = request.query_params.get("n", "")
    fields = dict(params)
    kept = await delivery_log.record_sms_report(
        session,
        notification_id[:36],
        message_sid=fields.get("MessageSid"),
        message_status=fields.get("MessageStatus", ""),
        error_code=fields.get("ErrorCode"),
    )
    if not kept:
        log.debug("Twilio report not recorded: %s %s", notification_id, fields.get("MessageStatus"))
    # Twilio only needs a 2xx; any other answer makes it log an error on its side.
    return Response(status_code=status.HTTP_204_NO_CONTENT)
