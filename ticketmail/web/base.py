"""What every page needs: the parts of the daemon, who is visiting, the language, the CSRF
check of every POST, rendering a page and the cookies."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import jinja2
import structlog
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from ticketmail.config import Config
from ticketmail.mail.msgid import MessageIds
from ticketmail.outbound.actions import Desk
from ticketmail.outbound.compose import Templates
from ticketmail.storage import accounts
from ticketmail.storage import desk as desk_db
from ticketmail.storage.accounts import Identity
from ticketmail.storage.blobs import Blobs
from ticketmail.storage.desk import DeskAgent
from ticketmail.storage.dialect import ALONGSIDE
from ticketmail.storage.store import Store
from ticketmail.web.flash import FLASH_COOKIE, FLASH_SECONDS, flash_cookie, flash_line
from ticketmail.web.i18n import LANGUAGES, Translate, negotiate, translator
from ticketmail.web.presence import Board, Presence
from ticketmail.web.reader import Reader
from ticketmail.web.security import csrf_token, csrf_valid, hashed, new_secret

__all__ = [
    "ANON_COOKIE",
    "LANG_COOKIE",
    "SESSION_COOKIE",
    "CsrfFailed",
    "Refusal",
    "Visitor",
    "Web",
    "asked_head",
    "local_path",
    "page",
    "posted_form",
    "redirect",
    "route",
    "search_deadline",
    "visitor",
    "visitor_reading",
]

log = structlog.get_logger()
T = TypeVar("T")

SESSION_COOKIE = "tm_session"
ANON_COOKIE = "tm_anon"  # before login: what the forms' CSRF tokens are bound to
LANG_COOKIE = "tm_lang"
SESSION_MAX_AGE = timedelta(days=30)  # SPEC 8.2: a session ends after 30 days in any case
MAX_NUMBER = 2**63 - 1  # SPEC 8.4: a number in a path past SQLite's integers is 404
# Never kept to show a refused form again: the token, and passwords.
_UNKEPT = frozenset({"csrf_token", "password", "current_password"})
TOUCH_AFTER = timedelta(minutes=5)  # a session's last use is written at most this often
_HEAD = "ticketmail.head"  # in a HEAD request's scope, which `route` hands on as a GET


@dataclass
class Web:
    """The daemon's parts the portal works with."""

    config: Config
    store: Store
    blobs: Blobs
    mail_templates: Callable[[], Templates]  # the current ones (SIGHUP reloads them)
    clock: Callable[[], datetime]
    reader: Reader
    ids: MessageIds
    csrf_key: bytes = field(repr=False)
    pages: jinja2.Environment
    on_queued: Callable[[], None] | None = None
    presence: Board = field(default_factory=Presence)  # who has which ticket open (9.1)

    @property
    def secure_cookies(self) -> bool:
        return self.config.web.base_url.startswith("https://")

    def link(self, path: str) -> str:
        return self.config.web.base_url.rstrip("/") + path

    def desk(self) -> Desk:
        return Desk(self.config, self.mail_templates(), self.ids)

    def queued(self) -> None:
        if self.on_queued is not None:
            self.on_queued()


@dataclass(frozen=True, slots=True)
class Visitor:
    """One request's visitor: logged in (`me`) or not, the language, the CSRF basis."""

    me: Identity | None
    session_hash: str | None
    lang: str
    basis: str  # the cookie value CSRF tokens are bound to
    new_anon: bool  # the basis is new: set it as a cookie with the response
    csrf: str
    agent: DeskAgent | None = None  # an agent of the support desk (then `me` is None)
    registrations: int = 0  # for an agent: confirmed registrations awaiting approval (nav)

    @property
    def t(self) -> Translate:
        return translator(self.lang)


class CsrfFailed(Exception):
    """A POST without a valid csrf_token: answered 403, nothing changed; `fields`: the text
    fields it carried (a form page shows them again)."""

    def __init__(self, fields: Mapping[str, str] | None = None) -> None:
        super().__init__("csrf")
        self.fields: Mapping[str, str] = fields or {}


@dataclass(frozen=True, slots=True)
class Refusal:
    """A form refused before its handler ran to the end (SPEC 8.4): the status, the
    catalogue key of the one line saying why, and the text fields typed into it."""

    status: int
    error: str
    fields: Mapping[str, str]

    def text(self, name: str) -> str:
        return str(self.fields.get(name) or "")


def _session_identity(
    conn: Any,
    session_hash: str,
    read: Callable[[Any, Identity], T] | None,
    *,
    idle_since: datetime,
    born_since: datetime,
    count: bool,
) -> tuple[Identity | None, DeskAgent | None, datetime | None, T | None, int]:
    found = accounts.session_email(conn, session_hash, idle_since=idle_since, born_since=born_since)
    if found is None:
        return None, None, None, None, 0
    me = accounts.identity_of(conn, found[0])
    if me is None:  # an agent of the desk (with the count a page's navigation shows), or nobody
        agent = desk_db.agent_of(conn, found[0])
        waiting = desk_db.pending_count(conn) if agent is not None and count else 0
        return None, agent, found[1], None, waiting
    if me.pending or read is None:
        return me, None, found[1], None, 0
    return me, None, found[1], read(conn, me), 0


async def visitor(request: Request) -> Visitor:
    """Who is asking: the session cookie's user (its last use noted), the language."""
    who, _ = await _visit(request, None)
    return who


async def visitor_reading(
    request: Request, read: Callable[[Any, Identity], T]
) -> tuple[Visitor, T | None]:
    """`visitor` and the page's read in one trip to a reader thread: `read(conn, me)` runs
    right after the session is found, for an active (not pending) user only; else None."""
    return await _visit(request, read)


async def _visit(
    request: Request, read: Callable[[Any, Identity], T] | None
) -> tuple[Visitor, T | None]:
    web: Web = request.app.state.web
    now = web.clock()
    me: Identity | None = None
    agent: DeskAgent | None = None
    session_hash: str | None = None
    result: T | None = None
    waiting = 0
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        idle = timedelta(hours=web.config.web.session_idle_hours)
        candidate = hashed(cookie)
        me, agent, seen, result, waiting = await web.reader(
            _session_identity, candidate, read, idle_since=now - idle,
            born_since=now - SESSION_MAX_AGE,
            # Not for the desk ticket page's heartbeat (every few seconds): it shows no page.
            count=not request.url.path.endswith("/presence"),
        )  # fmt: skip
        if me is not None or agent is not None:
            session_hash = candidate
            if seen is not None and now - seen > TOUCH_AFTER:
                await web.store.write(
                    lambda conn: accounts.touch_session(conn, candidate, now=now),
                    alongside=ALONGSIDE,
                )
    basis = cookie or request.cookies.get(ANON_COOKIE) or ""
    new_anon = not basis
    if new_anon:
        basis, _ = new_secret()
    who = Visitor(
        me=me,
        session_hash=session_hash,
        lang=_language(request, web, me.lang if me else agent.lang if agent else None),
        basis=basis,
        new_anon=new_anon,
        csrf=csrf_token(web.csrf_key, basis),
        agent=agent,
        registrations=waiting,
    )
    return who, result


def visitor_offline(request: Request) -> Visitor:
    """The visitor as far as the request says without the database (its language from the
    request alone; nobody logged in): for the page saying the database is away."""
    web: Web = request.app.state.web
    lang = _language(request, web, None)
    return Visitor(me=None, session_hash=None, lang=lang, basis="", new_anon=False, csrf="")


async def search_deadline(web: Web) -> tuple[float, bool]:
    """(the deadline of a search asked for now: web.search_ms from now, in time.monotonic;
    whether every article is in the index). The articles still waiting for the index are
    indexed first, batches starting within the first half of that time (SPEC 8.4)."""
    budget = web.config.web.search_ms / 1000
    start = time.monotonic()
    left = await web.store.catch_up_search(until=start + budget / 2)
    return start + budget, not left


def _language(request: Request, web: Web, own: str | None) -> str:
    asked = request.query_params.get("lang")
    if asked in LANGUAGES:
        return str(asked)
    if own in LANGUAGES:
        return str(own)
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen in LANGUAGES:
        return str(chosen)
    return negotiate(
        request.headers.get("accept-language", ""),
        default=web.config.templates.default_language,
    )


async def posted_form(
    request: Request, who: Visitor, *, max_files: int = 1, max_fields: int = 50
) -> FormData:
    """The POST's form, after its CSRF token is checked (raises CsrfFailed)."""
    web: Web = request.app.state.web
    form = await request.form(max_files=max_files, max_fields=max_fields)
    if who.new_anon or not csrf_valid(web.csrf_key, who.basis, form.get("csrf_token")):
        typed = {k: v for k, v in form.multi_items() if isinstance(v, str) and k not in _UNKEPT}
        await form.close()
        log.info("web_csrf_refused", path=request.url.path)
        raise CsrfFailed(typed)
    return form


def _finish(response: Response, request: Request, who: Visitor) -> Response:
    web: Web = request.app.state.web
    if who.new_anon:
        response.set_cookie(
            ANON_COOKIE, who.basis, httponly=True, samesite="lax", secure=web.secure_cookies
        )
    asked = request.query_params.get("lang")
    if asked in LANGUAGES and who.me is None and who.agent is None:
        response.set_cookie(
            LANG_COOKIE, str(asked), max_age=365 * 86400, httponly=True, samesite="lax",
            secure=web.secure_cookies,
        )  # fmt: skip
    return response


def page(
    request: Request, who: Visitor, template: str, /, *, status: int = 200, **values: Any
) -> Response:
    """One page in the visitor's language, with their CSRF token for its forms, and on a
    GET the line confirming the action whose 303 led here (its cookie is then cleared)."""
    web: Web = request.app.state.web
    cookie = request.cookies.get(FLASH_COOKIE)
    shows = cookie is not None and request.method == "GET" and not asked_head(request)
    done = flash_line(web.csrf_key, who.basis, cookie) if shows else None
    html = web.pages.get_template(template).render(
        t=who.t, lang=who.lang, me=who.me, agent=who.agent, csrf=who.csrf,
        path=local_path(request.url.path), config=web.config, flash=done, now=web.clock(),
        registrations=who.registrations, **values,
    )  # fmt: skip
    response = _finish(HTMLResponse(html, status_code=status), request, who)
    if shows:
        response.delete_cookie(FLASH_COOKIE, httponly=True, samesite="lax",
                               secure=web.secure_cookies)  # fmt: skip
    return response


def local_path(path: str) -> str:
    """A request's path as a link on this site: never `//host/…` (or `/\\host/…`, which
    browsers read alike), which a browser would take for another host (SPEC 8.4)."""
    return "/" + path.lstrip("/\\")


def redirect(request: Request, who: Visitor, to: str, *, done: str | None = None) -> Response:
    """After a POST (or to the login page): 303, so that a reload does not post again. The
    Location is a path on this site, never built from the request's Host or X-Forwarded-*
    headers (SPEC 8.4). `done`: what was done (a key of web/flash.py's DONE), confirmed by a
    line on the page it lands on."""
    response = _finish(RedirectResponse(local_path(to), status_code=303), request, who)
    if done is not None:
        web: Web = request.app.state.web
        response.set_cookie(
            FLASH_COOKIE, flash_cookie(web.csrf_key, who.basis, done), max_age=FLASH_SECONDS,
            httponly=True, samesite="lax", secure=web.secure_cookies,
        )  # fmt: skip
    return response


def asked_head(request: Request) -> bool:
    """The request was a HEAD, which `route` hands on as a GET: it must record nothing."""
    return bool(request.scope.get(_HEAD))


def route(path: str, endpoint: Callable[[Request], Awaitable[Response]], *methods: str) -> Route:
    """A route whose request's form (its uploaded files) is closed after the response. HEAD
    (Starlette adds it to every GET route) runs the GET branch of the handler, never the POST
    one; uvicorn drops the body of the answer (SPEC 8.4)."""

    async def closing(request: Request) -> Response:
        if any(isinstance(v, int) and v > MAX_NUMBER for v in request.path_params.values()):
            raise HTTPException(404)  # past what the database holds: missing, not an error
        if request.method == "HEAD":  # the handler sees GET; the scope answered stays HEAD
            request = Request({**request.scope, "method": "GET", _HEAD: True}, request.receive)
        try:
            return await endpoint(request)
        finally:
            await request.close()

    return Route(path, closing, methods=list(methods), name=endpoint.__name__)
