"""Routes under /api/auth, /api/me and /api/admin/users."""

from __future__ import annotations

from datetime import timedelta
from html import escape
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status
from fastapi.responses import HTMLResponse
from sqlalchemy.ext.asyncio import AsyncSession

from farmstand.accounts import registration, service, throttle
from farmstand.accounts.schemas import (
    AdminUserOut,
    LoginIn,
    LoginOut,
    MessageOut,
    PasswordChangeIn,
    ProfilePatch,
    RegisterIn,
    ResendIn,
    UserOut,
)
from farmstand.db import utcnow
from farmstand.deps import (
    SESSION_COOKIE,
    AdminUser,
    ClientAddress,
    CurrentUser,
    Runtime,
    RuntimeDep,
    SessionDep,
)
from farmstand.schemas import ERROR_RESPONSES, Envelope, ok, ok_json

router = APIRouter(prefix="/api/auth", tags=["auth"], responses=ERROR_RESPONSES)

REGISTERED = (
    "Check your email: we sent a link to finish creating your account. (If this email already "
    "has an account, we emailed its owner instead.)"
)
RESENT = "If a registration for this email is waiting to be confirmed, we sent its link again."
VERIFIED = "Your email is confirmed and your account is ready: sign in to continue."
ALREADY_VERIFIED = "This email already has an account: sign in to continue."
TOO_MANY_REGISTRATIONS = "Too many registrations; try again later."
TOO_MANY_RESENDS = "Too many verification emails asked for; try again later."

Token = Annotated[str, Path(min_length=1, max_length=200, description="From the emailed link.")]


@router.post(
    "/register",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Ask for a customer or farmer account: emails a link that creates it",
    description="The reply is the same whether or not the email was already registered, and "
    "no account can sign in until its email link is used, so neither the reply nor signing in "
    "afterwards tells who has an account. Rate limited per email and per address.",
)
async def register(
    body: RegisterIn, session: SessionDep, runtime: RuntimeDep, address: ClientAddress
) -> Envelope[MessageOut]:
    await request_registration(session, runtime, body, address)
    return ok(MessageOut(message=REGISTERED))


async def request_registration(
    session: AsyncSession, runtime: Runtime, body: RegisterIn, address: str | None
) -> None:
    """Rate limits (per email and address), then the emailed link: for this route and the
    sign-up page alike."""
    limits, now = runtime.limits, utcnow()
    keys = [(f"register:email:{body.email}", limits.register_per_email)]
    if address:
        keys.append((f"register:address:{address}", limits.register_per_address))
    await throttle.count(session, keys, limits.window, now, TOO_MANY_REGISTRATIONS)
    await throttle.forget_old_counts(session, limits.window, now)
    await registration.register(
        session,
        runtime.passwords,
        secret=_secret(runtime),
        ttl=_ttl(runtime),
        email=body.email,
        password=body.password,
        name=body.name,
        role=body.role,
        phone=body.phone,
        now=now,
    )


@router.post(
    "/verify/resend",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Email the verification link of a waiting registration again",
    description="The same reply whatever the email; rate limited per email and per address.",
)
async def resend_verification(
    body: ResendIn, session: SessionDep, runtime: RuntimeDep, address: ClientAddress
) -> Envelope[MessageOut]:
    await request_resend(session, runtime, body.email, address)
    return ok(MessageOut(message=RESENT))


async def request_resend(
    session: AsyncSession, runtime: Runtime, email: str, address: str | None
) -> None:
    """Rate limits (per email and address), then the link again if a registration waits: for
    this route and the resend page alike. The same outcome whoever owns the email."""
    limits, now = runtime.limits, utcnow()
    keys = [(f"resend:email:{email}", limits.resend_per_email)]
    if address:
        keys.append((f"resend:address:{address}", limits.resend_per_address))
    await throttle.count(session, keys, limits.window, now, TOO_MANY_RESENDS)
    await registration.resend(session, email=email, now=now)


@router.get(
    "/verify/{token}",
    summary="The page the emailed link opens: a button that confirms the email",
    description="Opening the link changes nothing (mail scanners open links); the button "
    "POSTs to the same address.",
    response_class=HTMLResponse,
)
async def verification_page(token: str) -> HTMLResponse:  # the page does not read it
    return HTMLResponse(
        _page(
            "Confirm your email",
            '<form method="post"><p>Confirm your email address to create your Farmstand '
            'account.</p><button type="submit">Confirm my email</button></form>',
        ),
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


@router.post(
    "/verify/{token}",
    summary="Use an email verification link: creates the account",
    description="Single use; the link expires after FARMSTAND_EMAIL_VERIFICATION_TTL_HOURS. "
    "Answers HTML to the form of the verification page, JSON otherwise.",
    response_model=Envelope[MessageOut],
)
async def verify(token: Token, request: Request, session: SessionDep) -> Response:
    from_form = request.headers.get("content-type", "").startswith(
        "application/x-www-form-urlencoded"
    )
    try:
        verified = await registration.verify(session, token)
    except registration.InvalidVerificationLink as exc:
        if not from_form:
            raise
        return HTMLResponse(_page("Link not valid", f"<p>{escape(exc.message)}</p>"), 400)
    message = VERIFIED if verified.created else ALREADY_VERIFIED
    if from_form:
        return HTMLResponse(
            _page(
                "Email confirmed",
                f'<p>{escape(message)}</p><p><a href="/login">Sign in</a></p>',
            )
        )
    return ok_json(MessageOut(message=message))


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title} - '
        'Farmstand</title><meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="stylesheet" href="/static/pages.css">'
        f"</head><body><h1>{title}</h1>{body}</body></html>"
    )


def _secret(runtime: Runtime) -> str:
    assert runtime.settings.secret_key is not None
    return runtime.settings.secret_key.get_secret_value()


def _ttl(runtime: Runtime) -> timedelta:
    return timedelta(hours=runtime.settings.email_verification_ttl_hours)


def set_session_cookie(response: Response, runtime: Runtime, token: str) -> None:
    """The session cookie, for the API's sign-in and the sign-in page alike."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=runtime.signer.max_age_seconds,
        httponly=True,
        samesite="lax",
        secure=runtime.settings.secure_cookies,
        path="/",
    )


@router.post(
    "/login",
    summary="Sign in: returns a bearer token and sets the session cookie",
    description="Attempts are throttled per (email, address) and per address with growing "
    "delays: 429 with Retry-After.",
)
async def login(
    body: LoginIn, request: Request, response: Response, runtime: RuntimeDep, address: ClientAddress
) -> Envelope[LoginOut]:
    signed_in = await service.login(
        runtime.db,
        runtime.passwords,
        runtime.signer,
        runtime.throttle,
        email=body.email,
        password=body.password,
        address=address,
        user_agent=request.headers.get("user-agent"),
    )
    return _signed_in(response, runtime, signed_in)


def _signed_in(
    response: Response, runtime: Runtime, signed_in: service.SignedIn
) -> Envelope[LoginOut]:
    """A new session's reply: its cookie set, its token and the user in the body."""
    set_session_cookie(response, runtime, signed_in.token)
    return ok(
        LoginOut(
            token=signed_in.token,
            expires_at=signed_in.session.expires_at,
            user=UserOut.model_validate(signed_in.user),
        )
    )


@router.post(
    "/password",
    summary="Change your password: ends every session, and signs this one in afresh",
    description="Every session of yours (on every device) is revoked; the reply carries a new "
    "token for this one and sets its cookie.",
)
async def change_password(
    body: PasswordChangeIn,
    user: CurrentUser,
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    address: ClientAddress,
) -> Envelope[LoginOut]:
    signed_in = await service.change_password(
        runtime.db,
        runtime.passwords,
        runtime.signer,
        runtime.throttle,
        user,
        current_password=body.current_password,
        new_password=body.new_password,
        address=address,
        user_agent=request.headers.get("user-agent"),
    )
    return _signed_in(response, runtime, signed_in)


@router.post("/logout", summary="Sign out: revokes the session")
async def logout(
    user: CurrentUser, session: SessionDep, response: Response, runtime: RuntimeDep
) -> Envelope[MessageOut]:
    await service.logout(session, user)
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        httponly=True,
        samesite="lax",
        secure=runtime.settings.secure_cookies,
    )
    return ok(MessageOut(message="Signed out."))


@router.get("/me", summary="The signed-in user", response_model=Envelope[UserOut])
async def me(user: CurrentUser) -> Response:
    return ok_json(UserOut.model_validate(user))


me_router = APIRouter(prefix="/api/me", tags=["auth"], responses=ERROR_RESPONSES)


@me_router.patch("", summary="Change your name, phone (E.164) or time zone")
async def update_me(
    body: ProfilePatch, user: CurrentUser, session: SessionDep
) -> Envelope[UserOut]:
    row = await service.update_profile(session, user, body.model_dump(exclude_unset=True))
    return ok(UserOut.model_validate(row))


admin_router = APIRouter(prefix="/api/admin/users", tags=["admin"], responses=ERROR_RESPONSES)


@admin_router.post(
    "/{user_id}/disable",
    summary="Disable a user: they cannot sign in, and every session of theirs ends at once",
)
async def disable_user(
    user_id: Annotated[str, Path(max_length=64)], admin: AdminUser, session: SessionDep
) -> Envelope[AdminUserOut]:
    row = await service.set_disabled(session, user_id, True, by=admin)
    return ok(AdminUserOut.model_validate(row))


@admin_router.post("/{user_id}/enable", summary="Enable a disabled user again")
async def enable_user(
    user_id: Annotated[str, Path(max_length=64)], admin: AdminUser, session: SessionDep
) -> Envelope[AdminUserOut]:
    row = await service.set_disabled(session, user_id, False, by=admin)
    return ok(AdminUserOut.model_validate(row))
