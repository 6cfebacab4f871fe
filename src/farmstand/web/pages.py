"""The page edge: templates, who is signed in on a page, CSRF, and errors shown as pages.

Pages are rendered on the server (Jinja2) and call the services and the authorisation
functions directly, like the API routes do; the browser never calls the JSON API. Every page
route is a ``PageRoute`` (``page_router()``): a refusal (``FarmstandError``) becomes an error
page, and a page that needs a signed-in user sends anyone else to sign in.

CSRF: every form carries a token (and every HTMX request sends it in ``X-CSRF-Token``). The
token is the app's secret key signing (itsdangerous) a random value held in an HttpOnly,
SameSite=Lax cookie and the id of the session, so a token works only in the browser it was
given to, and only for the session (or the signed-out visit) it was rendered for.
``check_csrf`` checks it, and the Origin, on every POST from a page.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from itsdangerous import BadSignature, URLSafeTimedSerializer
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from pydantic import ValidationError
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from farmstand import zones
from farmstand.accounts.principal import Principal
from farmstand.config import Settings
from farmstand.deps import SESSION_COOKIE, Runtime, is_same_origin
from farmstand.errors import FarmstandError, Forbidden, TooManyRequests, Unauthenticated
from farmstand.notifications import inbox

WEB_DIR = Path(__file__).parent
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"

CSRF_COOKIE = "farmstand_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
CSRF_REFUSED = (
    "This form has expired or did not come from this site: reload the page and try again."
)

# Our own assets, served with a content hash in the URL (and cached for a year).
ASSETS = {
    "css": "site.css",
    "icon": "favicon.svg",
    "htmx": "vendor/htmx-2.0.11/htmx.min.js",
    "sse": "vendor/htmx-ext-sse-2.2.4/sse.min.js",
    "live": "live.js",
    "push": "push.js",
    "print": "print.js",
    "board": "board.js",
}
IMMUTABLE = "public, max-age=31536000, immutable"
# Pages are never cached (they show one user's orders). Their referrer policy is same-origin,
# not the API's no-referrer: with no-referrer, Chromium sends a form POST with "Origin: null",
# which the cross-site check must refuse. Other sites (the map link) still get no referrer.
PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "same-origin"}


class SignInRequired(Exception):
    """The page needs a signed-in user: answered with a redirect to /login."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class ShowPage(Exception):
    """Answer with ``response`` after rolling the request's transaction back (a refused form,
    shown again with its errors: nothing the attempt wrote is kept)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class CsrfRefused(Forbidden):
    message = CSRF_REFUSED


class CachedStaticFiles(StaticFiles):
    """Static files: a URL with a content hash (``?v=``) is cached for a year; any other is
    revalidated (its ETag makes that cheap)."""

    def file_response(
        self, full_path: Any, stat_result: Any, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        versioned = b"v=" in scope.get("query_string", b"")
        response.headers["Cache-Control"] = IMMUTABLE if versioned else "no-cache"
        return response


def local_time(value: datetime | None, zone: str | None) -> str:
    """A time as the farm's clock shows it: ``Thu 3 Dec 2026, 09:15 CET``."""
    if value is None:
        return ""
    local = value.astimezone(zones.zone(zone))
    return f"{local:%a} {local.day} {local:%b %Y, %H:%M} {local.tzname() or ''}".rstrip()


def money(value: Decimal | int | float | str) -> str:
    return f"${Decimal(value):,.2f}"


# Codes a person reads on a page, where plain capitalising is not right.
_WORDS = {"IN_APP": "In-app", "SMS": "SMS", "READY_FOR_PICKUP": "Ready for pickup"}


def words(code: object) -> str:
    """A code as words: ``ORDER_CONFIRMED`` → "Order confirmed", ``IN_APP`` → "In-app"."""
    text = str(code)
    return _WORDS.get(text) or text.replace("_", " ").capitalize()


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["local_time"] = local_time
    env.filters["money"] = money
    env.filters["words"] = words
    env.filters["urlquote"] = lambda value: quote(str(value), safe="")
    return env


class Pages:
    """One per app: the template environment, the asset URLs and the CSRF signer."""

    def __init__(self, settings: Settings) -> None:
        assert settings.secret_key is not None
        self.env = _environment()
        self.secure_cookies = settings.secure_cookies
        self.csrf_max_age = int(settings.session_ttl_hours * 3600)
        self._csrf = URLSafeTimedSerializer(
            settings.secret_key.get_secret_value(), salt="farmstand.pages.csrf"
        )
        self.assets = {
            name: f"/static/{path}?v={_digest(STATIC_DIR / path)}" for name, path in ASSETS.items()
        }

    def csrf_token(self, nonce: str, user: Principal | None) -> str:
        return str(self._csrf.dumps(_binding(nonce, user)))

    def csrf_valid(self, token: str, nonce: str, user: Principal | None) -> bool:
        try:
            value = self._csrf.loads(token, max_age=self.csrf_max_age)
        except BadSignature:
            return False
        return isinstance(value, str) and hmac.compare_digest(value, _binding(nonce, user))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def _binding(nonce: str, user: Principal | None) -> str:
    return f"{nonce}:{user.session_id if user else ''}"


def pages_of(request: Request) -> Pages:
    return request.app.state.pages  # type: ignore[no-any-return]


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


# -- who is signed in ---------------------------------------------------------------------------


async def page_user(request: Request) -> Principal | None:
    """The user of the session cookie, or None (signed out, session ended, account disabled)."""
    if "page_user" in request.state._state:
        return request.state.page_user  # type: ignore[no-any-return]
    user: Principal | None = None
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        try:
            user = await runtime_of(request).auth.principal(token)
        except (Unauthenticated, Forbidden):
            user = None
    request.state.page_user = user
    return user


MaybeUser = Annotated[Principal | None, Depends(page_user)]


async def signed_in(request: Request, user: MaybeUser) -> Principal:
    if user is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target)
    if request.method == "GET" and request.headers.get("hx-request") != "true":
        # A whole page shows the bell with its count: one indexed count, in a short read
        # transaction of its own (the page's own may be a writer's; fragments skip it).
        async with runtime_of(request).db.transaction(write=False) as session:
            request.state.unread_count = await inbox.unread_count(session, user)
    return user


PageUser = Annotated[Principal, Depends(signed_in)]


def safe_next(value: str | None, default: str = "/") -> str:
    """A path of this site to go to after signing in (never another site's)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    return value


# -- CSRF ------------------------------------------------------------------------------------


async def check_csrf(request: Request, user: MaybeUser) -> None:
    """Refuse a POST whose token is missing, forged, expired or bound to another browser or
    session, or whose Origin is another site's."""
    pages = pages_of(request)
    if not is_same_origin(request, runtime_of(request)):
        raise CsrfRefused()
    nonce = request.cookies.get(CSRF_COOKIE)
    token = request.headers.get(CSRF_HEADER)
    if token is None:
        form = await request.form()
        field = form.get(CSRF_FIELD)
        token = field if isinstance(field, str) else None
    if not nonce or not token or not pages.csrf_valid(token, nonce, user):
        raise CsrfRefused()


CsrfChecked = Depends(check_csrf)


# -- rendering -------------------------------------------------------------------------------


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """A page (or fragment), never cached; sets the CSRF cookie on a browser's first page."""
    pages = pages_of(request)
    user: Principal | None = request.state._state.get("page_user")
    nonce = request.cookies.get(CSRF_COOKIE)
    new_nonce = None
    if not nonce:
        nonce = new_nonce = secrets.token_urlsafe(24)
    html = pages.env.get_template(template).render(
        {
            "request": request,
            "user": user,
            "csrf_token": pages.csrf_token(nonce, user),
            "csrf_field": CSRF_FIELD,
            "assets": pages.assets,
            "unread_count": request.state._state.get("unread_count"),
            **(context or {}),
        }
    )
    response = HTMLResponse(html, status_code, headers={**PAGE_HEADERS, **(headers or {})})
    if new_nonce is not None:
        response.set_cookie(
            CSRF_COOKIE,
            new_nonce,
            httponly=True,
            samesite="lax",
            secure=pages.secure_cookies,
            path="/",
        )
    return response


def redirect(url: str) -> RedirectResponse:
    """After a form POST: see the result with a GET (303)."""
    return RedirectResponse(url, status_code=303, headers=PAGE_HEADERS)


def error_page(request: Request, error: FarmstandError) -> HTMLResponse:
    headers = {}
    if isinstance(error, TooManyRequests) and error.retry_after:
        headers["Retry-After"] = str(error.retry_after)
    titles = {403: "Not allowed", 404: "Not found", 409: "Not possible now", 429: "Slow down"}
    return render(
        request,
        "error.html",
        {"title": titles.get(error.status_code, "Something is wrong"), "message": error.message},
        status_code=error.status_code,
        headers=headers,
    )


class PageRoute(APIRoute):
    """A page: a refusal becomes an error page, and signed-out visitors are sent to sign in."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except ShowPage as exc:
                return exc.response
            except SignInRequired as exc:
                target = f"/login?next={quote(exc.next_path, safe='/')}"
                if request.headers.get("hx-request") == "true":
                    # An HTMX fragment (the live timeline) of a session that ended: the whole
                    # page goes to sign in, rather than the sign-in page into the fragment.
                    referer = request.headers.get("hx-current-url") or ""
                    path = urlsplit(referer).path if referer else ""
                    target = f"/login?next={quote(path, safe='/')}" if path else "/login"
                    return Response(status_code=204, headers={"HX-Redirect": target})
                return redirect(target)
            except FarmstandError as exc:
                await page_user(request)  # for the page's header, if a dependency failed first
                return error_page(request, exc)

        return page_handler

    def unexpected_error(self, request: Request, request_id: str) -> Response:
        """The page for a bug (``http_errors.UnexpectedErrors`` logged it): no details, the id
        to quote to support."""
        return render(
            request,
            "error.html",
            {
                "title": "Something went wrong",
                "message": "Something went wrong on our side. Try again in a moment; if it "
                f"keeps happening, tell the market's team this reference: {request_id}.",
            },
            status_code=500,
        )


def page_router() -> APIRouter:
    return APIRouter(
        route_class=PageRoute, include_in_schema=False, default_response_class=HTMLResponse
    )


def field_errors(exc: ValidationError) -> dict[str, str]:
    """A form's validation errors by field (the camelCase path, ``deliveryAddress.city``; the
    form as a whole under ``""``), each the first message for that field."""
    errors: dict[str, str] = {}
    for error in exc.errors():
        field = ".".join(str(part) for part in error.get("loc", ()))
        message = str(error.get("msg", "Invalid value")).removeprefix("Value error, ")
        errors.setdefault(field, message[:1].upper() + message[1:])
    return errors


async def form_of(request: Request) -> dict[str, str]:
    """The submitted form's text fields (files and repeated names ignored)."""
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}
