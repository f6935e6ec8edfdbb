"""The developer portal's pages: sign-up, email confirmation, password reset, invitations,
projects and the account's own settings.

Links from emails land on GET pages that change nothing but the confirmation (which is
what opening that link means); reset and invitation links show a form, and only its
POST uses the link, so that a mail scanner fetching the link spends nothing.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from markupsafe import Markup
from starlette.datastructures import FormData
from starlette.responses import Response

from apiward.adapters.dashboard.sessions import COOKIE, Sessions
from apiward.adapters.dashboard.web import (
    DashboardRoute,
    FieldErrors,
    Flash,
    Me,
    SessionsDep,
    notice,
    public_page,
    render,
    see_other,
    set_session_cookie,
    text,
    url,
    visiting,
)
from apiward.adapters.http.access import PUBLIC, declare
from apiward.adapters.http.deps import PortalDep, SettingsDep, runtime_of
from apiward.adapters.http.errors import status_of
from apiward.adapters.http.security import request_context
from apiward.adapters.settings import Settings
from apiward.core.errors import (
    ApiwardError,
    InvalidInput,
    LinkInvalid,
    PermissionDenied,
    SecondFactorRequired,
    WrongPassword,
)
from apiward.core.models import LinkPurpose
from apiward.core.passwords import weakness
from apiward.services.mfa import Person
from apiward.services.portal import Portal
from apiward.services.tenancy import check_email, check_name

router = APIRouter(route_class=DashboardRoute)

NOTICES = {
    "password_changed": "Your password is changed. Every other session is signed out.",
    "mfa_begun": "Add the key to your authenticator app, then enter the code it shows.",
    "mfa_enabled": "Two-factor sign-in is on. Keep the recovery codes below somewhere safe.",
    "mfa_disabled": "Two-factor sign-in is off.",
}


def _token(request: Request, form: FormData | None = None) -> str:
    """The link's token: the form's field on a POST, else the query's."""
    value = (form.get("token") if form is not None else None) or request.query_params.get(
        "token", ""
    )
    return value[:200] if isinstance(value, str) else ""


def _link_failed(request: Request, exc: ApiwardError) -> Response:
    return public_page(
        request,
        "message.html",
        status=status_of(exc),
        title="This link does not work",
        text=exc.message,
        action=("Go to sign-in", url("/login")),
    )


# sign-up and confirmation ---------------------------------------------------------


@router.get("/signup")
@declare(PUBLIC)
async def signup_form(request: Request, settings: SettingsDep) -> Response:
    if not settings.signup_enabled:
        return _closed(request)
    return public_page(
        request,
        "signup.html",
        values={},
        errors=FieldErrors(),
        domains=settings.signup_email_domains,
    )


def _closed(request: Request) -> Response:
    return public_page(
        request,
        "message.html",
        status=403,
        title="Sign-up is by invitation only",
        text="Ask the owner of a project to invite you: the invitation email lets you "
        "create your account.",
        action=("Go to sign-in", url("/login")),
    )


@router.post("/signup")
@declare(PUBLIC)
async def signup(request: Request, settings: SettingsDep, portal: PortalDep) -> Response:
    form = await request.form()
    values = {"email": text(form, "email", 254), "name": text(form, "name")}
    password = text(form, "password", 1024)
    errors = FieldErrors()
    if values["name"]:
        with errors.on("name"):
            check_name(values["name"], "account")
    with errors.on("email"):
        check_email(values["email"])
    if problem := weakness(password, email=values["email"]):
        errors.fields["password"] = problem
    status = 400
    if not errors:
        try:
            await portal.sign_up(
                values["email"], values["name"], password, request_context(request)
            )
        except ApiwardError as exc:
            errors.add(exc)
            status = status_of(exc)
    if errors:
        return public_page(
            request,
            "signup.html",
            status=status,
            flash=errors.flash(),
            values=values,
            errors=errors,
            domains=settings.signup_email_domains,
        )
    return _check_inbox(request, values["email"])


def _check_inbox(request: Request, email: str) -> Response:
    return public_page(
        request,
        "message.html",
        title="Check your inbox",
        text=f"We have sent an email to {email}. Open the link in it to confirm your "
        "address, then sign in. Nothing there? Check the spam folder, or ask for a new link "
        "below.",
        resend=email,
    )


@router.get("/confirm")
@declare(PUBLIC)
async def confirm(request: Request, portal: PortalDep) -> Response:
    try:
        await portal.confirm(_token(request), request_context(request))
    except ApiwardError as exc:
        return _link_failed(request, exc)
    return see_other(url("/login", done="confirmed"))


@router.post("/confirm/resend")
@declare(PUBLIC)
async def resend(request: Request, portal: PortalDep) -> Response:
    form = await request.form()
    email = text(form, "email", 254)
    try:
        await portal.resend_confirmation(email, request_context(request))
    except ApiwardError as exc:
        return public_page(
            request,
            "message.html",
            status=status_of(exc),
            flash=Flash.error(exc),
            title="Confirm your email address",
            text="",
            resend=email,
        )
    return public_page(
        request,
        "message.html",
        title="Check your inbox",
        text=f"If {email} has an account waiting for confirmation, a new link is on its way. "
        "Earlier links no longer work.",
        action=("Go to sign-in", url("/login")),
    )


# password reset -------------------------------------------------------------------


@router.get("/forgot")
@declare(PUBLIC)
async def forgot_form(request: Request) -> Response:
    return public_page(request, "forgot.html", email="")


@router.post("/forgot")
@declare(PUBLIC)
async def forgot(request: Request, settings: SettingsDep, portal: PortalDep) -> Response:
    form = await request.form()
    email = text(form, "email", 254)
    try:
        await portal.request_reset(email, request_context(request))
    except ApiwardError as exc:
        return public_page(
            request, "forgot.html", status=status_of(exc), flash=Flash.error(exc), email=email
        )
    minutes = settings.reset_link_ttl_seconds // 60
    return public_page(
        request,
        "message.html",
        title="Check your inbox",
        text=f"If {email} has an account, we have sent it a link to choose a new password. "
        f"The link works once and for {minutes} minutes.",
        action=("Go to sign-in", url("/login")),
    )


@router.get("/reset")
@declare(PUBLIC)
async def reset_form(request: Request, portal: PortalDep) -> Response:
    token = _token(request)
    try:
        await portal.link(token, LinkPurpose.RESET)
    except ApiwardError as exc:
        return _link_failed(request, exc)
    return public_page(request, "reset.html", token=token, errors=FieldErrors())


@router.post("/reset")
@declare(PUBLIC)
async def reset(request: Request, portal: PortalDep) -> Response:
    form = await request.form()
    token = _token(request, form)
    password = text(form, "password", 1024)
    errors = FieldErrors()
    if password != text(form, "password_again", 1024):
        errors.fields["password_again"] = "The two passwords are not the same."
    status = 400
    if not errors:
        try:
            await portal.reset_password(token, password, request_context(request))
        except LinkInvalid as exc:
            return _link_failed(request, exc)
        except InvalidInput as exc:  # the link is good: what is wrong is the password
            errors.fields["password"] = exc.message
        except ApiwardError as exc:
            errors.add(exc)
            status = status_of(exc)
    if errors:
        return public_page(
            request, "reset.html", status=status, flash=errors.flash(), token=token, errors=errors
        )
    return see_other(url("/login", done="password_reset"))


# invitations ----------------------------------------------------------------------


async def _current(
    request: Request, settings: Settings, sessions: Sessions, portal: Portal
) -> Me | None:
    """The signed-in person on a public page, if any."""
    if not request.cookies.get(COOKIE):
        return None
    try:
        return await visiting(request, settings, sessions, portal)
    except ApiwardError:
        return None


@router.get("/invitations/accept")
@declare(PUBLIC)
async def invitation(
    request: Request, settings: SettingsDep, sessions: SessionsDep, portal: PortalDep
) -> Response:
    token = _token(request)
    try:
        offer = await portal.invitation(token)
    except ApiwardError as exc:
        return _link_failed(request, exc)
    me = await _current(request, settings, sessions, portal)
    return public_page(
        request,
        "accept.html",
        token=token,
        offer=offer,
        account=me.account if me else None,
        here=url("/invitations/accept", token=token),
        values={},
        errors=FieldErrors(),
    )


@router.post("/invitations/accept")
@declare(PUBLIC)
async def accept(
    request: Request, settings: SettingsDep, sessions: SessionsDep, portal: PortalDep
) -> Response:
    form = await request.form()
    token = _token(request, form)
    me = await _current(request, settings, sessions, portal)
    context = request_context(request)
    account = me.account if me else None
    name, password = text(form, "name"), text(form, "password", 1024)
    errors = FieldErrors()
    status = 400
    try:
        offer = await portal.invitation(token)
        if account is None:  # a new account: its name and password, each checked here
            if name:
                with errors.on("name"):
                    check_name(name, "account")
            if problem := weakness(password, email=offer.link.email):
                errors.fields["password"] = problem
        if not errors:
            made, project = await portal.accept(
                token, context, account=account, name=name, password=password
            )
    except LinkInvalid as exc:
        return _link_failed(request, exc)
    except ApiwardError as exc:
        errors.add(exc)
        status = status_of(exc)
    if errors:
        return public_page(
            request,
            "accept.html",
            status=status,
            flash=errors.flash(),
            token=token,
            offer=await portal.invitation(token),
            account=account,
            here=url("/invitations/accept", token=token),
            values={"name": name},
            errors=errors,
        )
    response = see_other(url("/overview"))
    if me is not None and me.account is not None:
        await sessions.switch(me.visitor, project.org.id)
    else:
        cookie, _ = await sessions.open(made, project, context)
        set_session_cookie(request, response, cookie, settings)
    return response


# projects and the account ---------------------------------------------------------


def _projects_page(
    request: Request,
    me: Me,
    settings: Settings,
    *,
    status: int = 200,
    flash: Flash | None = None,
    name: str = "",
) -> Response:
    return render(
        request,
        "projects.html",
        status=status,
        flash=flash or notice(request, NOTICES),
        section="projects",
        name=name,
        limit=settings.projects_per_account,
    )


@router.get("/projects")
async def projects(request: Request, settings: SettingsDep, me: Me = Depends(visiting)) -> Response:
    return _projects_page(request, me, settings)


@router.post("/projects")
async def create_project(
    request: Request,
    settings: SettingsDep,
    sessions: SessionsDep,
    portal: PortalDep,
    me: Me = Depends(visiting),
) -> Response:
    form = await request.form()
    name = text(form, "name")
    try:
        if me.account is None:
            raise PermissionDenied("Only a portal account creates projects here; use the CLI.")
        project = await portal.create_project(me.account, name, request_context(request))
        await sessions.switch(me.visitor, project.org.id)
    except ApiwardError as exc:
        return _projects_page(
            request, me, settings, status=status_of(exc), flash=Flash.error(exc), name=name
        )
    return see_other(url("/keys", done="project_created"))


@router.post("/projects/{org_id}/open")
async def open_project(
    org_id: str,
    request: Request,
    settings: SettingsDep,
    sessions: SessionsDep,
    me: Me = Depends(visiting),
) -> Response:
    try:
        await sessions.switch(me.visitor, org_id)
    except ApiwardError as exc:
        return _projects_page(request, me, settings, status=status_of(exc), flash=Flash.error(exc))
    return see_other(url("/overview"))


@router.post("/projects/switch")
async def switch_project(
    request: Request, settings: SettingsDep, sessions: SessionsDep, me: Me = Depends(visiting)
) -> Response:
    """The top bar's switcher: the same as Open, for the project chosen in the form."""
    form = await request.form()
    return await open_project(text(form, "org_id", 64), request, settings, sessions, me)


async def _account_page(
    request: Request,
    me: Me,
    *,
    status: int = 200,
    flash: Flash | None = None,
    recovery_codes: list[str] | None = None,
    errors: FieldErrors | None = None,
) -> Response:
    two_factor = runtime_of(request).two_factor
    person = person_of(me)
    if flash is None and request.query_params.get("done") == "mfa_required":
        flash = Flash.error(SecondFactorRequired())
    factor = await two_factor.factor(person.owner_id)
    enabled = factor is not None and factor.enabled_at is not None
    enrolment = None if enabled else await two_factor.enrolment(person)
    return render(
        request,
        "account.html",
        status=status,
        flash=flash or notice(request, NOTICES),
        section="account",
        mfa=factor if enabled else None,
        enrolment=enrolment,
        qr=qr_code(enrolment.uri) if enrolment else None,
        recovery_left=await two_factor.recovery_codes_left(person.owner_id) if enabled else 0,
        recovery_codes=recovery_codes or [],
        errors=errors or FieldErrors(),
    )


def qr_code(text: str) -> Markup:
    """``text`` as a QR code (ISO/IEC 18004, error correction M), drawn here as inline
    SVG: no image from elsewhere, no script, no style attribute (the page's CSP)."""
    import segno

    svg = segno.make(text, error="m").svg_inline(scale=4, dark="#1a202c", light="#ffffff")
    return Markup(svg)  # noqa: S704 - segno writes numbers and the colours given only


def person_of(me: Me) -> Person:
    """Whose password and second factor the account page is about."""
    return Person.of(me.account if me.account is not None else me.signed.user)


@router.get("/account")
async def account(request: Request, me: Me = Depends(visiting)) -> Response:
    return await _account_page(request, me)


@router.post("/account/mfa/begin")
async def mfa_begin(request: Request, me: Me = Depends(visiting)) -> Response:
    try:
        await runtime_of(request).two_factor.begin(person_of(me))
    except ApiwardError as exc:
        return await _account_page(request, me, status=status_of(exc), flash=Flash.error(exc))
    return see_other(url("/account", done="mfa_begun") + "#mfa-title")


@router.post("/account/mfa/confirm")
async def mfa_confirm(request: Request, me: Me = Depends(visiting)) -> Response:
    form = await request.form()
    try:
        codes = await runtime_of(request).two_factor.confirm(
            person_of(me), text(form, "code", 64), request_context(request)
        )
    except ApiwardError as exc:
        return await _account_page(request, me, status=status_of(exc), flash=Flash.error(exc))
    # Drawn here, never again: the store keeps only their hashes.
    return await _account_page(
        request, me, flash=Flash("success", NOTICES["mfa_enabled"]), recovery_codes=codes
    )


@router.post("/account/mfa/disable")
async def mfa_disable(request: Request, me: Me = Depends(visiting)) -> Response:
    form = await request.form()
    try:
        await runtime_of(request).two_factor.disable(
            person_of(me), request_context(request), text(form, "code", 64)
        )
    except ApiwardError as exc:
        return await _account_page(request, me, status=status_of(exc), flash=Flash.error(exc))
    return see_other(url("/account", done="mfa_disabled"))


@router.post("/account/password")
async def change_password(
    request: Request,
    settings: SettingsDep,
    sessions: SessionsDep,
    portal: PortalDep,
    me: Me = Depends(visiting),
) -> Response:
    form = await request.form()
    current, new = text(form, "current", 1024), text(form, "password", 1024)
    context = request_context(request)
    errors = FieldErrors()
    email = me.account.email if me.account is not None else me.signed.user.email
    if problem := weakness(new, email=email):
        errors.fields["password"] = problem
    if new != text(form, "password_again", 1024):
        errors.fields["password_again"] = "The two new passwords are not the same."
    status = 400
    if not errors:
        try:
            if me.account is not None:
                await portal.change_password(me.account, current, new, context)
            else:
                await portal.change_user_password(me.signed.user, current, new, context)
        except WrongPassword as exc:
            errors.fields["current"] = exc.message
            status = status_of(exc)
        except ApiwardError as exc:
            errors.add(exc)
            status = status_of(exc)
    if errors:
        return await _account_page(request, me, status=status, flash=errors.flash(), errors=errors)
    # Every session ended with the change; this browser gets a new one.
    cookie = await sessions.renew(me.visitor, context)
    response = see_other(url("/account", done="password_changed"))
    set_session_cookie(request, response, cookie, settings)
    return response
