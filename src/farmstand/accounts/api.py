"""Routes under /api/auth."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from farmstand.accounts import service
from farmstand.accounts.schemas import (
    LoginIn,
    LoginOut,
    MessageOut,
    ProfilePatch,
    RegisterIn,
    UserOut,
)
from farmstand.deps import SESSION_COOKIE, CurrentAuth, CurrentUser, RuntimeDep, SessionDep
from farmstand.schemas import ERROR_RESPONSES, Envelope, ok

router = APIRouter(prefix="/api/auth", tags=["auth"], responses=ERROR_RESPONSES)

REGISTERED = (
    "If this email is not registered yet, the account has been created: sign in to continue."
)


@router.post(
    "/register",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Create a customer or farmer account",
    description="The reply is the same whether or not the email was already registered, so "
    "the endpoint cannot be used to find out who has an account.",
)
async def register(
    body: RegisterIn, session: SessionDep, runtime: RuntimeDep
) -> Envelope[MessageOut]:
    await service.register(
        session,
        runtime.passwords,
        email=body.email,
        password=body.password,
        name=body.name,
        role=body.role,
        phone=body.phone,
    )
    return ok(MessageOut(message=REGISTERED))


@router.post("/login", summary="Sign in: returns a bearer token and sets the session cookie")
async def login(
    body: LoginIn, request: Request, response: Response, runtime: RuntimeDep
) -> Envelope[LoginOut]:
    signed_in = await service.login(
        runtime.db,
        runtime.passwords,
        runtime.signer,
        runtime.throttle,
        email=body.email,
        password=body.password,
        address=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )
    response.set_cookie(
        SESSION_COOKIE,
        signed_in.token,
        max_age=runtime.signer.max_age_seconds,
        httponly=True,
        samesite="lax",
        secure=runtime.settings.secure_cookies,
        path="/",
    )
    return ok(
        LoginOut(
            token=signed_in.token,
            expires_at=signed_in.session.expires_at,
            user=UserOut.model_validate(signed_in.user),
        )
    )


@router.post("/logout", summary="Sign out: revokes the session")
async def logout(
    auth: CurrentAuth, session: SessionDep, response: Response, runtime: RuntimeDep
) -> Envelope[MessageOut]:
    await service.logout(session, auth[1])
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        httponly=True,
        samesite="lax",
        secure=runtime.settings.secure_cookies,
    )
    return ok(MessageOut(message="Signed out."))


@router.get("/me", summary="The signed-in user")
async def me(user: CurrentUser) -> Envelope[UserOut]:
    return ok(UserOut.model_validate(user))


me_router = APIRouter(prefix="/api/me", tags=["auth"], responses=ERROR_RESPONSES)


@me_router.patch("", summary="Change your name, phone (E.164) or time zone")
async def update_me(
    body: ProfilePatch, user: CurrentUser, session: SessionDep
) -> Envelope[UserOut]:
    user = await service.update_profile(session, user, body.model_dump(exclude_unset=True))
    return ok(UserOut.model_validate(user))
