"""Pages: sign in, sign up (by emailed link, and sending it again), sign out, the front door
``/``, and the signed-in user's account (profile and password)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Query, Request, Response
from pydantic import ValidationError

from farmstand.accounts import password_policy, service
from farmstand.accounts.api import (
    REGISTERED,
    RESENT,
    request_registration,
    request_resend,
    set_session_cookie,
)
from farmstand.accounts.principal import Principal
from farmstand.accounts.roles import Role
from farmstand.accounts.schemas import LoginIn, PasswordChangeIn, ProfilePatch, RegisterIn, ResendIn
from farmstand.deps import SESSION_COOKIE, ClientAddress, RuntimeDep, SessionDep
from farmstand.errors import FarmstandError
from farmstand.web.pages import (
    CsrfChecked,
    MaybeUser,
    PageUser,
    ShowPage,
    field_errors,
    form_of,
    page_router,
    redirect,
    render,
    safe_next,
)

router = page_router()

NextPath = Annotated[str | None, Query(alias="next", max_length=2000)]
Notice = Annotated[str | None, Query(max_length=20)]


@router.get("/")
async def home(user: MaybeUser) -> Response:
    """A customer to their orders, the farm side to the orders they look after, anyone else to
    sign in."""
    if user is None:
        return redirect("/login")
    return redirect("/orders")


@router.get("/login")
async def login_page(
    request: Request, user: MaybeUser, next_path: NextPath = None, signed_out: bool = False
) -> Response:
    if user is not None:
        return redirect(safe_next(next_path))
    notice = "You are signed out." if signed_out else None
    return render(
        request,
        "login.html",
        {"next": safe_next(next_path, ""), "values": {}, "errors": {}, "notice": notice},
    )


@router.post("/login", dependencies=[CsrfChecked])
async def login(request: Request, runtime: RuntimeDep, address: ClientAddress) -> Response:
    form = await form_of(request)
    next_path = safe_next(form.get("next"))
    values = {"email": form.get("email", "")}

    def again(errors: dict[str, str], status_code: int) -> Response:
        return render(
            request,
            "login.html",
            {"next": next_path, "values": values, "errors": errors, "notice": None},
            status_code=status_code,
        )

    try:
        body = LoginIn(email=form.get("email", ""), password=form.get("password", ""))
    except ValidationError as exc:
        return again(field_errors(exc), 422)
    try:
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
    except FarmstandError as exc:
        return again({"": exc.message}, exc.status_code)
    response = redirect(next_path)
    set_session_cookie(response, runtime, signed_in.token)
    return response


@router.get("/register")
async def register_page(request: Request, user: MaybeUser) -> Response:
    if user is not None:
        return redirect("/")
    return render(request, "register.html", {"values": {"role": "CUSTOMER"}, "errors": {}})


@router.post("/register", dependencies=[CsrfChecked])
async def register(
    request: Request, session: SessionDep, runtime: RuntimeDep, address: ClientAddress
) -> Response:
    form = await form_of(request)
    values = {key: form.get(key, "") for key in ("email", "name", "phone", "role")}
    role: Literal[Role.CUSTOMER, Role.FARMER] = (
        Role.FARMER if values["role"] == Role.FARMER else Role.CUSTOMER
    )
    try:
        body = RegisterIn(
            email=values["email"],
            name=values["name"],
            role=role,
            phone=values["phone"] or None,
            password=form.get("password", ""),
        )
        await request_registration(session, runtime, body, address)
    except ValidationError as exc:
        errors = field_errors(exc)
        raise ShowPage(
            render(request, "register.html", {"values": values, "errors": errors}, status_code=422)
        ) from None
    except FarmstandError as exc:
        raise ShowPage(
            render(
                request,
                "register.html",
                {"values": values, "errors": {"": exc.message}},
                status_code=exc.status_code,
            )
        ) from None
    return redirect("/register/sent")


@router.get("/register/sent")
async def register_sent(request: Request, user: MaybeUser) -> Response:
    return render(request, "register_sent.html", {"message": REGISTERED})


@router.post("/logout", dependencies=[CsrfChecked])
async def logout(user: MaybeUser, session: SessionDep, runtime: RuntimeDep) -> Response:
    if user is not None:
        await service.logout(session, user)
    response = redirect("/login?signed_out=1")
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        httponly=True,
        samesite="lax",
        secure=runtime.settings.secure_cookies,
    )
    return response


@router.get("/register/resend")
async def resend_page(request: Request, user: MaybeUser, sent: bool = False) -> Response:
    if user is not None:
        return redirect("/")
    notice = RESENT if sent else None
    return render(request, "register_resend.html", {"values": {}, "errors": {}, "notice": notice})


@router.post("/register/resend", dependencies=[CsrfChecked])
async def resend(
    request: Request, session: SessionDep, runtime: RuntimeDep, address: ClientAddress
) -> Response:
    """The link again, if a registration waits; the same answer whether or not it does (and
    whether or not the email has an account)."""
    form = await form_of(request)
    values = {"email": form.get("email", "")}
    try:
        body = ResendIn(email=values["email"])
        await request_resend(session, runtime, body.email, address)
    except ValidationError:
        errors = {"email": "Enter the email address you signed up with."}
        raise ShowPage(
            render(
                request,
                "register_resend.html",
                {"values": values, "errors": errors, "notice": None},
                status_code=422,
            )
        ) from None
    except FarmstandError as exc:
        raise ShowPage(
            render(
                request,
                "register_resend.html",
                {"values": values, "errors": {"": exc.message}, "notice": None},
                status_code=exc.status_code,
            )
        ) from None
    return redirect("/register/resend?sent=1")


@router.get("/session")
async def session_state(user: MaybeUser) -> Response:
    """Whether this browser is still signed in (204) or not (401): what live.js asks when the
    server refuses a page's event stream without saying why."""
    return Response(status_code=204 if user else 401, headers={"Cache-Control": "no-store"})


# -- the account ---------------------------------------------------------------------------

ACCOUNT_NOTICES = {
    "saved": "Your details are saved.",
    "password": "Your password is changed. You are still signed in here; every other device "
    "was signed out.",
}
# The form's fields, by the API's (camelCase) names.
_PASSWORD_FIELDS = {
    "currentPassword": "current_password",
    "newPassword": "new_password",
    "current_password": "current_password",
    "new_password": "new_password",
}


def _account(
    request: Request,
    user: Principal,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> Response:
    shown = values or {"name": user.name, "phone": user.phone or ""}
    return render(
        request,
        "account.html",
        {
            "values": shown,
            "errors": errors or {},
            "notice": notice,
            "min_length": password_policy.MIN_LENGTH,
        },
        status_code=status_code,
    )


@router.get("/account")
async def account_page(request: Request, user: PageUser, notice: Notice = None) -> Response:
    return _account(request, user, notice=ACCOUNT_NOTICES.get(notice or ""))


@router.post("/account/profile", dependencies=[CsrfChecked])
async def save_profile(request: Request, user: PageUser, session: SessionDep) -> Response:
    form = await form_of(request)
    values = {"name": form.get("name", ""), "phone": form.get("phone", "")}
    errors: dict[str, str] = {}
    if not values["name"].strip():
        errors["name"] = "Enter your name."
    try:
        body = ProfilePatch(name=values["name"], phone=values["phone"].strip() or None)
    except ValidationError as exc:
        for field, message in field_errors(exc).items():
            errors.setdefault(field, message)
    if errors:
        raise ShowPage(_account(request, user, values=values, errors=errors, status_code=422))
    await service.update_profile(session, user, body.model_dump(exclude_unset=True))
    return redirect("/account?notice=saved")


@router.post("/account/password", dependencies=[CsrfChecked])
async def change_password(
    request: Request, user: PageUser, runtime: RuntimeDep, address: ClientAddress
) -> Response:
    """Every other session ends, as with the API; this browser gets a new session cookie."""
    form = await form_of(request)
    current, new = form.get("current_password", ""), form.get("new_password", "")
    errors: dict[str, str] = {}
    if not current:
        errors["current_password"] = "Enter your current password."
    try:
        PasswordChangeIn(current_password=current or "-", new_password=new)
    except ValidationError as exc:
        for field, message in field_errors(exc).items():
            if message.startswith("String should have at least"):
                message = f"Use at least {password_policy.MIN_LENGTH} characters."
            errors.setdefault(_PASSWORD_FIELDS.get(field, ""), message)
    if new != form.get("new_password_again", ""):
        errors.setdefault("new_password_again", "The two new passwords are not the same.")
    if not errors:
        try:
            signed_in = await service.change_password(
                runtime.db,
                runtime.passwords,
                runtime.signer,
                runtime.throttle,
                user,
                current_password=current,
                new_password=new,
                address=address,
                user_agent=request.headers.get("user-agent"),
            )
        except FarmstandError as exc:
            fields = [d.get("field") for d in exc.details or [] if isinstance(d, dict)]
            key = _PASSWORD_FIELDS.get(str(fields[0]), "") if fields else ""
            message = (exc.details[0].get("message") if fields and key else None) or exc.message
            raise ShowPage(
                _account(request, user, errors={key: message}, status_code=exc.status_code)
            ) from None
        response = redirect("/account?notice=password")
        set_session_cookie(response, runtime, signed_in.token)
        return response
    raise ShowPage(_account(request, user, errors=errors, status_code=422))
