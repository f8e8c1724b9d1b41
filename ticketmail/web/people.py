"""The portal's pages about people: register, confirm, log in and out, passwords, account."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta

import structlog
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from ticketmail.errors import UsageError
from ticketmail.inputs import parse_email
from ticketmail.storage import accounts
from ticketmail.storage import desk as desk_db
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


def _client_ip(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


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
    }
    password = form.get("password")
    password = password if isinstance(password, str) else ""
    errors: dict[str, str] = {}
    email = _address(values["email"])
    if email is None:
        errors["email"] = "error.email"
    for name in ("name", "customer_number"):
        if not values[name]:
            errors[name] = "error.required"
    if values["language"] not in LANGUAGES:
        errors["language"] = "error.language"
    problem = password_problem(password, values["email"])
    if problem is not None:
        errors["password"] = problem
    if errors or email is None:
        return page(request, who, "register.html", status=400, values=values, errors=errors)
    web = _web(request)
    password_hash = await asyncio.to_thread(hash_password, password)
    now = web.clock()
    token, token_hash = new_secret()
    desk = web.desk()
    cfg = web.config

    def write(conn: sqlite3.Connection) -> str:
        existing = accounts.account_exists(conn, email)
        if existing is not None:
            accounts.issue_token(
                conn, token_hash, kind="reset", email=email, registration=None, now=now,
                expires=now + timedelta(hours=RESET_HOURS),
            )  # fmt: skip
            account_mail(
                conn, "password_reset", config=cfg, desk=desk, email=email,
                name=existing[0], lang=existing[1] or values["language"], customer="",
                link=web.link(f"/password/reset/{token}"), now=now,
            )  # fmt: skip
            return "existing"
        if accounts.customer_of(conn, values["customer_number"]) is None:
            account_mail(
                conn, "unknown_customer", config=cfg, desk=desk, email=email,
                name=values["name"], lang=values["language"],
                customer=values["customer_number"], link=web.link("/register"), now=now,
            )  # fmt: skip
            return "unknown_customer"
        registration = accounts.add_registration(
            conn, email=email, customer=values["customer_number"], name=values["name"],
            lang=values["language"], password_hash=password_hash, now=now,
        )  # fmt: skip
        accounts.issue_token(
            conn, token_hash, kind="confirm", email=email, registration=registration, now=now,
            expires=now + timedelta(hours=cfg.web.confirm_hours),
        )  # fmt: skip
        account_mail(
            conn, "account_confirm", config=cfg, desk=desk, email=email, name=values["name"],
            lang=values["language"], customer=values["customer_number"],
            link=web.link(f"/register/confirm/{token}"), now=now,
        )  # fmt: skip
        return "registered"

    outcome = await web.store.write(write)
    web.queued()
    log.info("web_registration", outcome=outcome, email=email)
    return page(request, who, "message.html", title="register.check_mail",
                text="register.check_mail_text")  # fmt: skip


async def confirm(request: Request) -> Response:
    who = await visitor(request)
    web = _web(request)
    token_hash = hashed(request.path_params["token"])
    if request.method == "GET":  # a mail scanner may open the link: nothing changes
        token = await web.reader(accounts.peek_token, token_hash, kind="confirm", now=web.clock())
        if token is None:
            return _invalid_link(request, who)
        return page(request, who, "confirm.html")
    await posted_form(request, who)
    now = web.clock()

    def write(conn: sqlite3.Connection) -> str:
        token = accounts.take_token(conn, token_hash, kind="confirm", now=now)
        if token is None or token.registration is None:
            return "void"
        return accounts.confirm_registration(conn, token.registration, now=now)

    outcome = await web.store.write(write)
    log.info("web_registration_confirmed", outcome=outcome)
    if outcome == "void":
        return _invalid_link(request, who)
    text = "confirm.active" if outcome == "active" else "confirm.pending"
    return page(request, who, "message.html", title="confirm.title", text=text, login_link=True)


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
    password = form.get("password")
    password = password if isinstance(password, str) else ""
    ip = _client_ip(request)
    now = web.clock()
    blocked = await web.reader(
        accounts.login_blocked, email, ip, now=now, ip_limit=web.config.web.ip_login_failures
    )
    if blocked is not None:
        log.info("web_login_refused", reason=f"{blocked}_locked", email=email, ip=ip)
        return page(request, who, "login.html", status=429, email=email, error="login.locked")
    record, agent = await web.reader(desk_db.login_record, email)
    ok = await asyncio.to_thread(
        verify_password, record.password_hash if record else None, password
    )
    if record is None or not ok:
        locked = await web.store.write(
            lambda conn: accounts.record_login_failure(conn, email, ip, now=now)
        )
        log.info("web_login_failed", email=email, ip=ip, locked=locked)
        return page(request, who, "login.html", status=401, email=email, error="login.failed")
    session, session_hash = new_secret()

    def write(conn: sqlite3.Connection) -> None:
        accounts.create_session(conn, session_hash, email, now=now)
        accounts.clear_login_failures(conn, email)

    await web.store.write(write)
    log.info("web_login", email=email, pending=record.pending)
    response = redirect(request, who, "/desk" if agent else "/tickets")
    response.set_cookie(
        SESSION_COOKIE, session, max_age=int(SESSION_MAX_AGE.total_seconds()), httponly=True,
        samesite="lax", secure=web.secure_cookies,
    )  # fmt: skip
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
    return response


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
        token, token_hash = new_secret()
        desk = web.desk()

        def write(conn: sqlite3.Connection) -> bool:
            existing = accounts.account_exists(conn, email)
            if existing is None:
                return False
            accounts.issue_token(
                conn, token_hash, kind="reset", email=email, registration=None, now=now,
                expires=now + timedelta(hours=RESET_HOURS),
            )  # fmt: skip
            return account_mail(
                conn, "password_reset", config=web.config, desk=desk, email=email,
                name=existing[0], lang=existing[1] or who.lang, customer="",
                link=web.link(f"/password/reset/{token}"), now=now,
            )  # fmt: skip

        sent = await web.store.write(write)
        web.queued()
        log.info("web_password_link", email=email, sent=sent)
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
    password = form.get("password")
    password = password if isinstance(password, str) else ""
    problem = password_problem(password, token.email)
    if problem is not None:
        return page(request, who, "reset.html", status=400, error=problem)
    password_hash = await asyncio.to_thread(hash_password, password)
    now = web.clock()

    def write(conn: sqlite3.Connection) -> bool:
        taken = accounts.take_token(conn, token_hash, kind="reset", now=now)
        if taken is None or not accounts.set_password(conn, taken.email, password_hash, now=now):
            return False
        accounts.end_sessions(conn, taken.email)
        return True

    if not await web.store.write(write):
        return _invalid_link(request, who)
    log.info("web_password_reset", email=token.email)
    response = page(request, who, "message.html", title="reset.title", text="reset.done",
                    login_link=True)  # fmt: skip
    return response


# --- the account page -----------------------------------------------------------------------


async def account(request: Request) -> Response:
    who = await visitor(request)
    if who.me is None:
        return redirect(request, who, "/login")
    if who.me.pending:
        return page(request, who, "pending.html", status=403)
    if request.method == "GET":
        saved = "account.saved" if request.query_params.get("saved") else None
        return page(request, who, "account.html", notice=saved, error=None)
    form = await posted_form(request, who)
    web = _web(request)
    me = who.me
    now = web.clock()
    if "password" in form:
        current = form.get("current_password")
        new = form.get("password")
        current = current if isinstance(current, str) else ""
        new = new if isinstance(new, str) else ""
        record = await web.reader(accounts.login_record, me.email)
        ok = await asyncio.to_thread(
            verify_password, record.password_hash if record else None, current
        )
        if not ok:
            return page(request, who, "account.html", status=400, notice=None,
                        error="account.wrong_password")  # fmt: skip
        problem = password_problem(new, me.email)
        if problem is not None:
            return page(request, who, "account.html", status=400, notice=None, error=problem)
        password_hash = await asyncio.to_thread(hash_password, new)
        keep = who.session_hash

        def change(conn: sqlite3.Connection) -> None:
            accounts.set_password(conn, me.email, password_hash, now=now)
            accounts.end_sessions(conn, me.email, keep=keep)

        await web.store.write(change)
        log.info("web_password_changed", email=me.email)
        return page(request, who, "account.html", notice="account.password_saved", error=None)
    name = _text(form, "name", MAX_NAME)
    lang = _text(form, "language", 5)
    if lang not in LANGUAGES:
        return page(request, who, "account.html", status=400, notice=None, error="error.language")
    await web.store.write(
        lambda conn: accounts.update_account(conn, me.email, name=name, lang=lang)
    )
    log.info("web_account_saved", email=me.email, lang=lang)
    return redirect(request, who, "/account?saved=1")


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
