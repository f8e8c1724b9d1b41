"""`GET /metrics` (SPEC 9) and the middleware that counts every web request.

Who may read it: whoever reaches the web port directly. The daemon binds 127.0.0.1 by
default, so that is the host's own Prometheus (or node); a request that came through a
reverse proxy (it carries `Forwarded`, `X-Forwarded-For` or `X-Real-IP`) gets 404, so a proxy
that forwards every path does not publish it. The figures are counts only: no address, no
subject, no ticket number.
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ticketmail.metrics import Metrics
from ticketmail.storage import desk as desk_db
from ticketmail.web.base import Web

__all__ = ["PROXY_HEADERS", "RequestMetrics", "metrics"]

PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")
UNMATCHED = "(unmatched)"  # no route: one label for every unknown path


async def metrics(request: Request) -> Response:
    if any(name in request.headers for name in PROXY_HEADERS):
        return PlainTextResponse("Not Found", status_code=404)
    web: Web = request.app.state.web
    counted: Metrics = request.app.state.metrics
    figures = await web.reader(desk_db.figures)
    return Response(counted.render(figures, now=web.clock()), media_type=CONTENT_TYPE_LATEST)


class RequestMetrics:
    """Counts each HTTP request by its route's path template (never the raw path, so the
    labels stay few), method and status, and observes its latency."""

    def __init__(self, app: ASGIApp, counted: Metrics) -> None:
        self.app = app
        self.counted = counted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when nothing was sent (the server answers 500)

        async def noting(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, noting)
        finally:
            route = scope.get("route")  # set by Starlette's router on the scope it was given
            template = getattr(route, "path", None) or UNMATCHED
            method = str(scope.get("method", "GET"))
            method = method if method in ("GET", "HEAD", "POST") else "other"
            self.counted.request(template, method, status, time.perf_counter() - started)
