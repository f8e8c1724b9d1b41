"""The portal's pages about people: register, confirm, log in and out, passwords, account."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import structlog
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from ticketmail.errors import UsageError
from ticketmail.inputs import parse_email, parse_phone
from ticketmail.outbound.actions import Desk
from ticketmail.outbound.agents import registration_waiting
from ticketmail.storage import accounts, logins
from ticketmail.storage import desk as desk_db
from ticketmail.storage.accounts import Registration
from ticketmail.storage.dialect import Conn
from ticketmail.web import guard
from ticketmail.web.actions import account_mail
from ticketmail.web.base import (
    SESSION_COOKIE,
    SESSION_MAX_AGE,
    Visitor,
    Web,
    page,
    posted_form,
    redirect,
    route,
    visitor,
)
from ticketmail.web.i18n import LANGUAGES
from ticketmail.web.security import (
    hash_password,
    hashed,
    new_secret,
    password_problem,
    verify_password,
)

__all__ = ["ROUTES"]

log = structlog.get_logger()

RESET_HOURS = 2  # a password link is valid this long (a confirmation link: web.confirm_hours)
MAX_NAME = 200


def _web(request: Request) -> Web:
    web: Web = request.app.state.web
    return web


def _text(form: FormData | None, name: str, limit: int = 1000) -> str:
    value = form.get(name) if isinstance(form, FormData) else None
    return value.strip()[:limit] if isinstance(value, str) else ""


def _address(text: str) -> str | None:
    try:
        return parse_email(text)
    except UsageError:
        return None


def _phone(text: str) -> str | None:
    """The phone number typed ('' for none), None when it is none."""
    try:
        return parse_phone(text)
    except UsageError:
        return None


def _password(form: FormData, name: str = "password") -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _reset_mail(
    conn: Conn,
    web: Web,
    email: str,
    existing: tuple[str, str | None] | None,
    *,
    desk: Desk,
    lang: str,
    token: tuple[str, str],
    now: datetime,
) -> bool:
    """A password link for `email`, queued when the address has an account (`existing`:
    its name and language). Without one the same work is done (a token stored, the mail
    composed) and nothing is queued, so that the page takes the same time either way."""
    accounts.issue_token(
        conn, token[1], kind="reset", email=email, registration=None, now=now,
        expires=now + timedelta(hours=RESET_HOURS),
    )  # fmt: skip
    name, own = existing if existing is not None else ("", None)
    return account_mail(
        conn, "password_reset", config=web.config, desk=desk, email=email, name=name,
        lang=own or lang, customer="", link=web.link(f"/password/reset/{token[0]}"), now=now,
        send=existing is not None,
    )  # fmt: skip


async def home(request: Request) -> Response:
    who = await visitor(request)
    landing = "/desk" if who.agent else "/tickets" if who.me is not None else "/login"
    return redirect(request, who, landing)


# --- registration ---------------------------------------------------------------------------


async def register(request: Request) -> Response:
    who = await visitor(request)
    if request.method == "GET":
        return page(request, who, "register.html", values={"language": who.lang}, errors={})
    form = await posted_form(request, who)
    values = {
        "email": _text(form, "email", 320),
        "name": _text(form, "name", MAX_NAME),
        "customer_number": _text(form, "customer_number", 40),
        "language": _text(form, "language", 5),
        "phone": _text(form, "phone", 100),
    }
    password = _password(form)
    errors: dict[str, str] = {}
    email = _address(values["email"])
    if email is None:
        errors["email"] = "error.email"
    phone = _phone(values["phone"])
    if phone is None:
        errors["phone"] = "error.phone"
    for name in ("name", "customer_number"):
        if not values[name]:
            errors[name] = "error.required"
    if values["language"] not in LANGUAGES:
        errors["language"] = "error.language"
    problem = password_problem(password, values["email"])
    if problem is not None:
        errors["password"] = problem
    if errors or email is None or phone is None:
        return page(request, who, "register.html", status=400, values=values, errors=errors)
    web = _web(request)
    password_hash = await asyncio.to_thread(hash_password, password)
    now = web.clock()
    token = new_secret()
    desk = web.desk()
    cfg = web.config
    source = guard.source_of(request)
    lang = values["language"]

    def write(conn: Conn) -> str:
        if not logins.mail_request(
            conn, email, source=source, per_source=cfg.web.ip_mail_requests, now=now
        ):
            return "limited"
        existing = accounts.account_exists(conn, email)
        if existing is not None:
            _reset_mail(conn, web, email, existing, desk=desk, lang=lang, token=token, now=now)
            return "existing"
        # The address is not confirmed: its mail carries nothing the visitor typed.
        if accounts.customer_of(conn, values["customer_number"]) is None:
            account_mail(
                conn, "unknown_customer", config=cfg, desk=desk, email=email, name="",
                lang=lang, customer="", link=web.link("/register"), now=now,
            )  # fmt: skip
            return "unknown_customer"
        registration = accounts.add_registration(
            conn, email=email, customer=values["customer_number"], name=values["name"],
            lang=lang, password_hash=password_hash, now=now, phone=phone,
        )  # fmt: skip
        accounts.issue_token(
            conn, token[1], kind="confirm", email=email, registration=registration, now=now,
            expires=now + timedelta(hours=cfg.web.confirm_hours),
        )  # fmt: skip
        account_mail(
            conn, "account_confirm", config=cfg, desk=desk, email=email, name="", lang=lang,
            customer="", link=web.link(f"/register/confirm/{token[0]}"), now=now,
        )  # fmt: skip
        return "registered"

    outcome = await web.store.write(write)
    web.queued()
    log.info("web_registration", outcome=outcome, email=email)
    return page(request, who, "message.html", title="register.check_mail",
                text="register.check_mail_text")  # fmt: skip


def _open_registration(conn: Conn, token_hash: str, *, now: datetime) -> Registration | None:
    """The registration a valid confirmation link is for, while it may still be confirmed."""
    token = accounts.peek_token(conn, token_hash, kind="confirm", now=now)
    if token is None or token.registration is None:
        return None
    return accounts.registration_of(conn, token.registration)


async def confirm(request: Request) -> Response:
    """The link's page asks for the password chosen at registration: only that confirms
    (a stranger who registered someone's address cannot have its owner activate it)."""
    who = await visitor(request)
    web = _web(request)
    token_hash = hashed(request.path_params["token"])
    now = web.clock()
    reg = await web.reader(_open_registration, token_hash, now=now)
    if request.method == "GET":  # a mail scanner may open the link: nothing changes
        if reg is None:
            return _invalid_link(request, who)
        return page(request, who, "confirm.html", error=None)
    form = await posted_form(request, who)
    if reg is None:
        return _invalid_link(request, who)
    attempt, blocked = await guard.gate(request, web, reg.email, now=now, where="confirm")
    if blocked is not None:
        return page(request, who, "confirm.html", status=429, error=guard.locked_text(blocked))
    if not await asyncio.to_thread(verify_password, reg.password_hash, _password(form)):
        await guard.failed(web, attempt, now=now, where="confirm")
        return page(request, who, "confirm.html", status=401, error="confirm.wrong_password")
    registration = reg
    templates = web.mail_templates()

    def write(conn: Conn) -> tuple[str, bytes | None]:
        token = accounts.take_token(conn, token_hash, kind="confirm", now=now)
        if token is None or token.registration != registration.id:
            return "void", None
        outcome = accounts.confirm_registration(conn, registration.id, now=now)
        if outcome == "void":
            return outcome, None
        if outcome == "pending":  # the agents hear of it once, now that it is confirmed
            registration_waiting(conn, registration, config=web.config, templates=templates,
                                 ids=web.ids, now=now)  # fmt: skip
        return outcome, guard.succeeded(conn, registration.email, device=attempt.device)

    outcome, key = await web.store.write(write)
    log.info("web_registration_confirmed", outcome=outcome)
    if outcome == "pending":
        web.queued()  # the agents' notifications
    if key is None:
        return _invalid_link(request, who)
    text = "confirm.active" if outcome == "active" else "confirm.pending"
    response = page(request, who, "message.html", title="confirm.title", text=text,
                    login_link=True)  # fmt: skip
    guard.remember(response, web, registration.email, key, now=now)
    return response


def _invalid_link(request: Request, who: Visitor) -> Response:
    return page(request, who, "message.html", status=404, title="error.not_found_title",
                text="link.invalid")  # fmt: skip


# --- logging in and out ---------------------------------------------------------------------


async def login(request: Request) -> Response:
    who = await visitor(request)
    if request.method == "GET":
        if who.me is not None or who.agent is not None:
            return redirect(request, who, "/desk" if who.agent else "/tickets")
        return page(request, who, "login.html", email="", error=None)
    form = await posted_form(request, who)
    web = _web(request)
    email = _text(form, "email", 320).casefold()
    password = _password(form)
    now = web.clock()
    attempt, blocked = await guard.gate(request, web, email, now=now, where="login")
    if blocked is not None:
        return page(request, who, "login.html", status=429, email=email,
                    error=guard.locked_text(blocked))  # fmt: skip
    record, agent = await web.reader(desk_db.login_record, email)
    ok = await asyncio.to_thread(
        verify_password, record.password_hash if record else None, password
    )
    if record is None or not ok:
        await guard.failed(web, attempt, now=now, where="login")
        return page(request, who, "login.html", status=401, email=email, error="login.failed")
    session, session_hash = new_secret()

    def write(conn: Conn) -> bytes:
        accounts.create_session(conn, session_hash, email, now=now)
        return guard.succeeded(conn, email, device=attempt.device)

    key = await web.store.write(write)
    log.info("web_login", email=email, pending=record.pending)
    response = redirect(request, who, "/desk" if agent else "/tickets")
    response.set_cookie(
        SESSION_COOKIE, session, max_age=int(SESSION_MAX_AGE.total_seconds()), httponly=True,
        samesite="lax", secure=web.secure_cookies,
    )  # fmt: skip
    guard.remember(response, web, email, key, now=now)
    return response


async def logout(request: Request) -> Response:
    who = await visitor(request)
    await posted_form(request, who)
    web = _web(request)
    if who.session_hash is not None:
        session_hash = who.session_hash
        await web.store.write(lambda conn: accounts.end_session(conn, session_hash))
        log.info("web_logout", email=who.me.email if who.me else None)
    response = redirect(request, who, "/login")
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="lax", secure=web.secure_cookies)
    return response  # the device cookie stays (SPEC 8.2)


# --- passwords --------------------------------------------------------------------------------


async def forgot(request: Request) -> Response:
    who = await visitor(request)
    if request.method == "GET":
        return page(request, who, "forgot.html", email="")
    form = await posted_form(request, who)
    web = _web(request)
    email = _address(_text(form, "email", 320))
    if email is not None:
        now = web.clock()
        token = new_secret()
        desk = web.desk()
        source = guard.source_of(request)
        per_source = web.config.web.ip_mail_requests

        def write(conn: Conn) -> str:
            if not logins.mail_request(conn, email, source=source, per_source=per_source, now=now):
                return "limited"
            existing = accounts.account_exists(conn, email)
            sent = _reset_mail(
                conn, web, email, existing, desk=desk, lang=who.lang, token=token, now=now
            )
            return "sent" if sent else "no_account" if existing is None else "suppressed"

        outcome = await web.store.write(write)
        web.queued()
        log.info("web_password_link", email=email, outcome=outcome, source=source)
    return page(request, who, "message.html", title="forgot.title", text="forgot.sent")


async def reset(request: Request) -> Response:
    who = await visitor(request)
    web = _web(request)
    token_hash = hashed(request.path_params["token"])
    token = await web.reader(accounts.peek_token, token_hash, kind="reset", now=web.clock())
    if token is None:
        if request.method == "POST":
            await posted_form(request, who)
        return _invalid_link(request, who)
    if request.method == "GET":
        return page(request, who, "reset.html", error=None)
    form = await posted_form(request, who)
    password = _password(form)
    problem = password_problem(password, token.email)
    if problem is not None:
        return page(request, who, "reset.html", status=400, error=problem)
    password_hash = await asyncio.to_thread(hash_password, password)
    now = web.clock()

    def write(conn: Conn) -> bytes | None:
        taken = accounts.take_token(conn, token_hash, kind="reset", now=now)
        if taken is None or not accounts.set_password(conn, taken.email, password_hash, now=now):
            return None
        accounts.end_sessions(conn, taken.email)
        return guard.succeeded(conn, taken.email)

    key = await web.store.write(write)
    if key is None:
        return _invalid_link(request, who)
    log.info("web_password_reset", email=token.email)
    response = page(request, who, "message.html", title="reset.title", text="reset.done",
                    login_link=True)  # fmt: skip
    guard.remember(response, web, token.email, key, now=now)
    return response


# --- the account page -----------------------------------------------------------------------


async def account(request: Request) -> Response:
    who = await visitor(request)
    if who.me is None:
        return redirect(request, who, "/login")
    if who.me.pending:
        return page(request, who, "pending.html", status=403)
    if request.method == "GET":
        return page(request, who, "account.html", notice=None, error=None)
    form = await posted_form(request, who)
    web = _web(request)
    me = who.me
    if "password" in form:
        return await _change_password(request, who, me, form)
    name = _text(form, "name", MAX_NAME)
    lang = _text(form, "language", 5)
    typed = {"name": name, "language": lang, "phone": _text(form, "phone", 100)}
    phone = _phone(typed["phone"])
    if lang not in LANGUAGES or phone is None:
        error = "error.language" if lang not in LANGUAGES else "error.phone"
        return page(request, who, "account.html", status=400, notice=None, error=error,
                    values=typed)  # fmt: skip
    await web.store.write(
        lambda conn: accounts.update_account(conn, me.email, name=name, lang=lang, phone=phone)
    )
    log.info("web_account_saved", email=me.email, lang=lang, phone=bool(phone))
    return redirect(request, who, "/account", done="account")


async def _change_password(
    request: Request, who: Visitor, me: accounts.Identity, form: FormData
) -> Response:
    """A new password, given the current one; a wrong one counts as a failed login of this
    browser (SPEC 8.2), so guesses here are limited like guesses at /login."""
    web = _web(request)
    now = web.clock()
    attempt, blocked = await guard.gate(request, web, me.email, now=now, where="account")
    if blocked is not None:
        return page(request, who, "account.html", status=429, notice=None,
                    error=guard.locked_text(blocked))  # fmt: skip
    current, new = _password(form, "current_password"), _password(form)
    record = await web.reader(accounts.login_record, me.email)
    ok = await asyncio.to_thread(verify_password, record.password_hash if record else None, current)
    if not ok:
        await guard.failed(web, attempt, now=now, where="account")
        return page(request, who, "account.html", status=400, notice=None,
                    error="account.wrong_password")  # fmt: skip
    problem = password_problem(new, me.email)
    if problem is not None:
        return page(request, who, "account.html", status=400, notice=None, error=problem)
    password_hash = await asyncio.to_thread(hash_password, new)
    keep = who.session_hash

    def change(conn: Conn) -> None:
        accounts.set_password(conn, me.email, password_hash, now=now)
        accounts.end_sessions(conn, me.email, keep=keep)

    await web.store.write(change)
    log.info("web_password_changed", email=me.email)
    return page(request, who, "account.html", notice="account.password_saved", error=None)


ROUTES = [
    route("/", home, "GET"),
    route("/register", register, "GET", "POST"),
    route("/register/confirm/{token}", confirm, "GET", "POST"),
    route("/login", login, "GET", "POST"),
    route("/logout", logout, "POST"),
    route("/password/forgot", forgot, "GET", "POST"),
    route("/password/reset/{token}", reset, "GET", "POST"),
    route("/account", account, "GET", "POST"),
]
