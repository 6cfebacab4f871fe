"""``GET /metrics`` on the app's port: for Prometheus with the token, or for a signed-in admin.

Anyone else (no credentials, a wrong token, a signed-in customer or farmer) gets the same 404
as a path that does not exist: the endpoint is not advertised, and a 401 or 403 would tell a
prober that it is there and worth guessing tokens for. The token is compared in constant time.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from farmstand.accounts.roles import Role
from farmstand.deps import SESSION_COOKIE, Runtime, RuntimeDep
from farmstand.errors import FarmstandError, NotFound

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, runtime: RuntimeDep) -> Response:
    if not await may_scrape(request, runtime):
        raise NotFound()
    body = await runtime.metrics.render(runtime.db)
    return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})


async def may_scrape(request: Request, runtime: Runtime) -> bool:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    bearer = credentials.strip() if scheme.lower() == "bearer" else ""
    expected = runtime.settings.metrics_token
    if (
        expected is not None
        and bearer
        and hmac.compare_digest(bearer.encode(), expected.get_secret_value().encode())
    ):
        return True
    session_token = bearer or request.cookies.get(SESSION_COOKIE)
    if not session_token:
        return False
    try:
        user = await runtime.auth.principal(session_token)
    except FarmstandError:
        return False
    return user.role is Role.ADMIN
