"""Request bodies bounded by the bytes that arrive (SPEC 8.4), in front of every route.

A pure ASGI layer between uvicorn and Starlette: it counts what `receive()` hands on (chunked
bodies included, whatever Content-Length says), so a body is refused before Starlette parses
anything, spools a file or checks the CSRF token:

- the anonymous forms (`/login`, `/register…`, `/password/…`) take 64 KiB and no file part;
  a desk ticket's presence heartbeat 1 KiB and no file part;
  every other route `smtp.max_message_bytes` plus 1 MiB and at most 20 file parts;
- a body must keep coming: no chunk for `web.body_idle_seconds`, or fewer than
  `web.body_min_rate` bytes a second on average once those seconds have passed, ends it;
- a refused body raises `BodyRefused` (or `BodyTooSlow`) out of `receive()` into the route
  that reads it; Starlette closes the spooled files of a form it was parsing, and the app's
  handler answers 413 (408), re-rendering the form with the text fields that came before
  the first file (kept here, parsed as they pass, at most `TEXT_KEPT` bytes);
- a response given while the request's body is still coming gets `connection: close`;
  before its last byte, up to `DRAIN_BYTES` more of the body are read and dropped (so that a
  browser still sending sees the answer rather than a reset), then uvicorn closes.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

import structlog
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "ANONYMOUS_LIMIT",
    "DRAIN_BYTES",
    "FORM_SLACK",
    "MAX_FILES",
    "PRESENCE_LIMIT",
    "BodyLimits",
    "BodyRefused",
    "BodyRules",
    "BodyTooSlow",
]

log = structlog.get_logger()

ANONYMOUS_LIMIT = 64 * 1024  # SPEC 8.4: the forms open to anonymous visitors
FORM_SLACK = 1024 * 1024  # SPEC 8.4: logged-in forms take smtp.max_message_bytes plus this
MAX_FILES = 20  # SPEC 8.3: at most 20 files per message
DRAIN_BYTES = 4 * 1024 * 1024  # read and dropped after a refusal, then the connection closes
TEXT_KEPT = 1024 * 1024  # text fields kept to re-render a refused form (subject, body)
_ANONYMOUS = re.compile(r"/login|/register(/.*)?|/password/.*")
PRESENCE_LIMIT = 1024  # SPEC 9.1: a desk ticket's heartbeat carries a token and a flag
_PRESENCE = re.compile(r"/desk/tickets/[0-9]+/presence")
_CLOSE = (b"connection", b"close")


@dataclass(frozen=True, slots=True)
class BodyRules:
    """The limits, from the config: bytes per logged-in form, and the minimum body rate."""

    signed_in: int
    idle_seconds: float
    min_rate: float  # bytes a second, on average, once idle_seconds have passed

    def for_path(self, path: str) -> tuple[int, int]:
        """(most bytes, most file parts) of a request's body to `path`."""
        if _ANONYMOUS.fullmatch(path):
            return ANONYMOUS_LIMIT, 0
        if _PRESENCE.fullmatch(path):
            return PRESENCE_LIMIT, 0
        return self.signed_in, MAX_FILES


class BodyRefused(Exception):
    """A body over its route's limit (`reason`: too_big, no_files, too_many_files); `fields`:
    the form's text fields that arrived before the first file."""

    def __init__(self, reason: str, fields: dict[str, str]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fields = fields


class BodyTooSlow(Exception):
    """A body that stopped coming, or came slower than the minimum rate."""


class _Fields:
    """The text fields of a multipart body, parsed as its bytes pass, up to the first file
    part (then it stops keeping text) or TEXT_KEPT bytes; counts the file parts."""

    def __init__(self, boundary: bytes) -> None:
        self.fields: dict[str, str] = {}
        self.files = 0
        self.kept = 0
        self._name: str | None = None
        self._value = bytearray()
        self._header = b""
        self._headers: dict[bytes, bytes] = {}
        self._keeping = True
        self._broken = False
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._data,
                "on_part_end": self._end,
            },
        )

    def feed(self, chunk: bytes) -> None:
        if self._broken or not chunk:
            return
        try:
            self._parser.write(chunk)
        except Exception:  # malformed: Starlette's own parser answers it; nothing kept here
            self._broken = True

    def _begin(self) -> None:
        self._headers = {}
        self._header = b""
        self._name = None
        self._value.clear()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        name = self._header.lower()
        self._headers[name] = self._headers.get(name, b"") + data[start:end]

    def _header_end(self) -> None:
        self._header = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if b"filename" in options:
            self.files += 1
            self._keeping = False
        elif self._keeping and b"name" in options:
            self._name = options[b"name"].decode("utf-8", "replace")

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._name is None:
            return
        self.kept += end - start
        if self.kept > TEXT_KEPT:
            self._keeping = False
            self._name = None
            return
        self._value += data[start:end]

    def _end(self) -> None:
        if self._name is not None and self._keeping:
            self.fields.setdefault(self._name, self._value.decode("utf-8", "replace"))
        self._name = None
        self._value.clear()


@dataclass
class _Body:
    """One request's body as it arrives."""

    path: str
    limit: int
    max_files: int
    declared: int | None
    started: float
    fields: _Fields | None
    received: int = 0
    ended: bool = False
    responded: bool = False
    slow: bool = False
    refusal: Exception | None = field(default=None)


class BodyLimits:
    """The ASGI layer that bounds every request's body (see the module's docstring)."""

    def __init__(self, app: ASGIApp, rules: BodyRules) -> None:
        self.app = app
        self.rules = rules

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared: int | None = None
        chunked = expect = False
        content_type = b""
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = int(value) if value.isdigit() else None
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"content-type":
                content_type = value
            elif name == b"expect":
                expect = True
        if not chunked and not declared:
            await self.app(scope, receive, send)  # no body: nothing to count
            return
        limit, max_files = self.rules.for_path(str(scope["path"]))
        kind, options = parse_options_header(content_type)
        boundary = options.get(b"boundary") if kind == b"multipart/form-data" else None
        loop = asyncio.get_running_loop()
        body = _Body(str(scope["path"]), limit, max_files, declared, loop.time(),
                     _Fields(boundary) if boundary else None)  # fmt: skip

        async def counted() -> Message:
            if body.refusal is not None:
                raise body.refusal
            if body.declared is not None and body.declared > body.limit:
                # With Expect: 100-continue the body is never asked for; the anonymous forms
                # are not shown again, so nothing of theirs is read.
                if not expect and body.max_files > 0:
                    await self._keep_fields(body, receive)
                raise self._refuse(body, "too_big")
            message = await self._timed(body, receive)
            if message["type"] != "http.request":
                return message
            chunk: bytes = message.get("body", b"")
            body.received += len(chunk)
            body.ended = not message.get("more_body", False)
            if body.fields is not None:
                body.fields.feed(chunk)
                if body.fields.files > body.max_files:
                    raise self._refuse(body, "no_files" if body.max_files == 0 else
                                       "too_many_files")  # fmt: skip
            if body.received > body.limit:
                raise self._refuse(body, "too_big")
            return message

        async def answering(message: Message) -> None:
            if message["type"] == "http.response.start" and not body.ended:
                body.responded = True
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"connection"]
                message["headers"] = [*headers, _CLOSE]
            elif (
                message["type"] == "http.response.body"
                and body.responded
                and not message.get("more_body", False)
            ):
                await send({**message, "more_body": True})
                await self._drain(body, receive)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            await send(message)

        await self.app(scope, counted, answering)

    async def _keep_fields(self, body: _Body, receive: Receive) -> None:
        """Before refusing a body that says it is too big: read its start, for the text
        fields typed into the form (until the first file part, at most TEXT_KEPT bytes)."""
        fields = body.fields
        while fields is not None and not body.ended and fields.files == 0:
            if body.received > TEXT_KEPT:
                break
            message = await self._timed(body, receive)
            if message["type"] != "http.request":
                body.ended = True
                break
            chunk: bytes = message.get("body", b"")
            body.received += len(chunk)
            body.ended = not message.get("more_body", False)
            fields.feed(chunk)

    def _refuse(self, body: _Body, reason: str) -> BodyRefused:
        fields = body.fields.fields if body.fields is not None else {}
        refusal = BodyRefused(reason, dict(fields))
        body.refusal = refusal
        log.info("web_body_refused", path=body.path, reason=reason, received=body.received,
                 declared=body.declared, limit=body.limit)  # fmt: skip
        return refusal

    async def _timed(self, body: _Body, receive: Receive) -> Message:
        """`receive()`, bounded: the next chunk within idle_seconds, and on average at least
        min_rate bytes a second once idle_seconds have passed."""
        loop = asyncio.get_running_loop()
        rules = self.rules
        by_rate = body.started + rules.idle_seconds + body.received / rules.min_rate
        deadline = min(loop.time() + rules.idle_seconds, by_rate)
        try:
            async with asyncio.timeout_at(deadline):
                return await receive()
        except TimeoutError:
            body.slow = True
            body.refusal = BodyTooSlow()
            log.info("web_body_too_slow", path=body.path, received=body.received,
                     seconds=round(loop.time() - body.started, 1))  # fmt: skip
            raise body.refusal from None

    async def _drain(self, body: _Body, receive: Receive) -> None:
        """Read and drop up to DRAIN_BYTES more of the body (not of a slow one)."""
        dropped = 0
        while not body.ended and not body.slow and dropped <= DRAIN_BYTES:
            try:
                message = await self._timed(body, receive)
            except BodyTooSlow:
                break
            if message["type"] != "http.request":
                break
            chunk: bytes = message.get("body", b"")
            dropped += len(chunk)
            body.received += len(chunk)
            body.ended = not message.get("more_body", False)
        log.info("web_body_drained", path=body.path, dropped=dropped, ended=body.ended)
