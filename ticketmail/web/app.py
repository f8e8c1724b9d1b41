"""The portal as an ASGI app: its routes, error pages, and the headers of every response."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ticketmail.metrics import Metrics
from ticketmail.storage import accounts
from ticketmail.storage.availability import DatabaseUnavailable, unavailable
from ticketmail.web.base import CsrfFailed, Refusal, Web, page, visitor, visitor_offline
from ticketmail.web.desk import ROUTES as DESK
from ticketmail.web.desk import refused as desk_refused
from ticketmail.web.limits import FORM_SLACK, BodyLimits, BodyRefused, BodyRules, BodyTooSlow
from ticketmail.web.metrics import RequestMetrics, metrics
from ticketmail.web.people import ROUTES as PEOPLE
from ticketmail.web.portal import ROUTES as PORTAL
from ticketmail.web.portal import refused as portal_refused
from ticketmail.web.taken import ROUTES as TAKEN
from ticketmail.web.taken import refused as taken_refused
from ticketmail.web.textmodules import refused as texts_refused

__all__ = ["SECURITY_HEADERS", "SecurityHeaders", "build_app"]

log = structlog.get_logger()

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        b"frame-ancestors 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
)
_NO_STORE = (b"cache-control", b"no-store")


class SecurityHeaders:
    """SPEC 8.3's headers on every response, error pages included; pages are not cached."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {SECURITY_HEADERS[i][0] for i in range(len(SECURITY_HEADERS))}
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                headers.extend(SECURITY_HEADERS)
                if not static:
                    headers.append(_NO_STORE)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


# While the database is away (SPEC 10): how long a client is asked to wait before trying again.
RETRY_AFTER_SECONDS = 10


async def healthz(request: Request) -> Response:
    """200 `ok` once a read went through; 503 while the database is away (SPEC 10)."""
    web: Web = request.app.state.web
    if web.store.db.availability.up:
        try:
            await web.reader(accounts.customer_of, "")
        except DatabaseUnavailable:
            pass
        else:
            return PlainTextResponse("ok")
    return PlainTextResponse("database unavailable", status_code=503, headers=_RETRY_AFTER)


_RETRY_AFTER = {"retry-after": str(RETRY_AFTER_SECONDS)}


def _unavailable(request: Request) -> Response:
    """503, a short page in the visitor's language: the service is briefly unavailable."""
    log.warning("web_database_unavailable", path=request.url.path)
    response = page(request, visitor_offline(request), "message.html", status=503,
                    title="error.unavailable_title", text="error.unavailable")  # fmt: skip
    response.headers.update(_RETRY_AFTER)
    return response


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    return _unavailable(request)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    who = await visitor(request)
    if exc.status_code == 404:
        return page(request, who, "message.html", status=404, title="error.not_found_title",
                    text="error.not_found")  # fmt: skip
    return page(request, who, "message.html", status=exc.status_code,
                title="error.server_title", text="error.bad_request")  # fmt: skip


# The line of a refused form shown again (SPEC 8.4), and of the page when it is no such form.
_FORM_LINE = {"too_big": "error.too_big", "too_many_files": "error.too_many_files",
              "no_files": "error.no_files"}  # fmt: skip
_PAGE_LINE = {"error.too_big": "error.body_too_big", "error.too_many_files": "error.body_too_big",
              "error.csrf_kept": "error.csrf"}  # fmt: skip


async def _refused(request: Request, refusal: Refusal) -> Response:
    """The refused form again with what was typed into it, else a page saying why."""
    who = await visitor(request)
    for form in (portal_refused, desk_refused, texts_refused, taken_refused):
        shown = await form(request, who, refusal)
        if shown is not None:
            return shown
    title = "error.forbidden_title" if refusal.status == 403 else "error.server_title"
    return page(request, who, "message.html", status=refusal.status, title=title,
                text=_PAGE_LINE.get(refusal.error, refusal.error))  # fmt: skip


async def _csrf_failed(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CsrfFailed)
    return await _refused(request, Refusal(403, "error.csrf_kept", exc.fields))


async def _body_refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BodyRefused)
    return await _refused(request, Refusal(413, _FORM_LINE[exc.reason], exc.fields))


async def _body_too_slow(request: Request, exc: Exception) -> Response:
    who = await visitor(request)
    return page(request, who, "message.html", status=408, title="error.server_title",
                text="error.too_slow")  # fmt: skip


async def _client_gone(request: Request, exc: Exception) -> Response:
    """The client went away while sending its body: nobody reads an answer; no error."""
    log.info("web_client_gone", path=request.url.path)
    return PlainTextResponse("", status_code=400)


async def _server_error(request: Request, exc: Exception) -> Response:
    if unavailable(exc):  # a database error not raised through the readers or the writer
        return _unavailable(request)
    log.error("web_request_failed", path=request.url.path,
              error=f"{type(exc).__name__}: {exc}")  # fmt: skip
    try:
        who = await visitor(request)
        return page(request, who, "message.html", status=500, title="error.server_title",
                    text="error.server")  # fmt: skip
    except Exception:
        return PlainTextResponse("Error / Fehler", status_code=500)


def build_app(web: Web, counted: Metrics | None = None) -> Any:
    """The portal's ASGI app on the daemon's parts; `counted`: the daemon's metrics (the
    intake counts its mails there), else the app's own."""
    static = Path(__file__).parent / "static"
    app = Starlette(
        routes=[
            *PEOPLE,
            *PORTAL,
            *TAKEN,
            *DESK,
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Mount("/static", StaticFiles(directory=static), name="static"),
        ],
        exception_handlers={
            HTTPException: _http_error,
            CsrfFailed: _csrf_failed,
            BodyRefused: _body_refused,
            BodyTooSlow: _body_too_slow,
            ClientDisconnect: _client_gone,
            DatabaseUnavailable: _database_unavailable,
            Exception: _server_error,
        },
    )
    # A path with a trailing slash is not redirected: Starlette would build that Location
    # from the request's Host header (SPEC 8.4); it is 404 like any unknown path.
    app.router.redirect_slashes = False
    app.state.web = web
    app.state.metrics = counted = counted or Metrics(node=web.config.node_name)
    rules = BodyRules(
        signed_in=web.config.smtp.max_message_bytes + FORM_SLACK,
        idle_seconds=web.config.web.body_idle_seconds, min_rate=web.config.web.body_min_rate,
    )  # fmt: skip
    return SecurityHeaders(RequestMetrics(BodyLimits(app, rules), counted))
