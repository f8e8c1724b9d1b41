"""Helpers for the portal's tests: an HTTP client that keeps cookies and carries the CSRF
token of the page a form came from, users with passwords, links read from sent mail."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from conftest import Env, Received, Sink, eventually, make_mail, read_rows
from desk_support import body

from ticketmail.storage import accounts
from ticketmail.web.security import hash_password

ANNA = "anna@schule.example"
BEN = "ben@schule.example"
CARL = "carl@real.example"
PASSWORD = "korrekt-pferd-batterie"
_CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')
_SEEN = re.compile(r'name="seen" value="(\d+)"')
_LINK = re.compile(r"http://127\.0\.0\.1:8080(/[^\s]+)")
TIMEOUT = httpx.Timeout(20.0)


class Client:
    """One browser's worth of cookies against the daemon's portal, over real HTTP."""

    def __init__(self, env: Env, *, lang: str = "de", source: str | None = None) -> None:
        """`source`: the local address to connect from (127.0.0.2, ...), a source of its own."""
        self.env = env
        self.http = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{env.daemon.web_port}",
            follow_redirects=False,
            timeout=TIMEOUT,
            headers={"Accept-Language": lang},
            # No connection outlives its request: a test never has to close a client.
            transport=httpx.AsyncHTTPTransport(
                limits=httpx.Limits(max_keepalive_connections=0), local_address=source
            ),
        )
        self.csrf = ""
        self.seen = ""  # the ticket version the last desk ticket page showed (SPEC 9.1)

    def _keep(self, response: httpx.Response) -> None:
        """The CSRF token and ticket version of the page, as a browser's forms hold them."""
        if "text/html" not in response.headers.get("content-type", ""):
            return
        found = _CSRF.search(response.text)
        if found:
            self.csrf = found.group(1)
        seen = _SEEN.search(response.text)
        if seen:
            self.seen = seen.group(1)

    async def close(self) -> None:
        await self.http.aclose()

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        response = await self.http.get(path, **kwargs)
        self._keep(response)
        return response

    async def post(
        self,
        path: str,
        data: Mapping[str, str] | None = None,
        *,
        files: Sequence[tuple[str, tuple[str, bytes, str]]] | None = None,
        form_page: str | None = None,
        csrf: str | None = None,
    ) -> httpx.Response:
        """POST a form; its token (and, to a desk ticket, the ticket version it showed as
        `seen`) from `form_page` (fetched first) or the last page seen."""
        if form_page is not None:
            await self.get(form_page)
        fields = dict(data or {})
        fields["csrf_token"] = self.csrf if csrf is None else csrf
        if path.startswith("/desk/tickets/") and self.seen:
            fields.setdefault("seen", self.seen)
        response = await self.http.post(path, data=fields, files=files)
        self._keep(response)
        return response

    async def login(self, email: str, password: str = PASSWORD) -> httpx.Response:
        response = await self.post(
            "/login", {"email": email, "password": password}, form_page="/login"
        )
        if response.status_code == 303:
            await self.get("/tickets")  # the token of the session's pages
        return response


async def give_password(env: Env, email: str, password: str = PASSWORD) -> None:
    """A user's password as `user passwd` sets it (through the store, without the CLI)."""
    assert env.daemon.store is not None
    digest = hash_password(password)
    ok = await env.daemon.store.write(
        lambda conn: accounts.set_password(conn, email, digest, now=env.clock())
    )
    assert ok


async def logged_in(env: Env, email: str, *, lang: str = "de") -> Client:
    await give_password(env, email)
    client = Client(env, lang=lang)
    response = await client.login(email)
    assert response.status_code == 303, response.text
    return client


def link_in(received: Received) -> str:
    """The portal path of the link in a mail ticketmail sent."""
    found = _LINK.search(body(received))
    assert found, body(received)
    return found.group(1)


def mails_to(sink: Sink, address: str) -> list[Received]:
    return [r for r in sink.received if address in r.rcpt_tos]


async def next_mail_to(sink: Sink, address: str, *, after: int) -> Received:
    """The first mail to `address` beyond the `after` ones it had (waits, bounded)."""
    got = await eventually(
        lambda: mails_to(sink, address)[after:], what=f"mail {after + 1} to {address}"
    )
    return got[0]


def text_of(response: httpx.Response) -> str:
    """The page's text without tags, entities decoded (what a reader sees)."""
    return html.unescape(re.sub(r"<[^>]+>", " ", response.text))


async def outbox_kinds(env: Env) -> list[tuple[str, str]]:
    entries = await env.cli_json("outbox", "list")
    return [(e["kind"], e["recipient"]) for e in entries]


__all__ = [
    "ANNA",
    "BEN",
    "CARL",
    "PASSWORD",
    "Client",
    "blob_count",
    "give_password",
    "link_in",
    "logged_in",
    "mails_to",
    "make_mail",
    "next_mail_to",
    "outbox_kinds",
    "png",
    "text_of",
]


def png(width: int = 4, height: int = 3, seed: int = 0) -> bytes:
    """A valid PNG image (a screenshot stand-in), different for each seed."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))  # fmt: skip

    rows = b"".join(
        b"\0" + bytes((seed + x * 40 + y * 20) % 256 for x in range(width) for _ in range(3))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))  # fmt: skip


def blob_count(env: Env) -> int:
    """The blobs stored: files on SQLite, rows of `blobs` on PostgreSQL."""
    if env.config.database.postgres:
        return int(read_rows(env.data_dir, "SELECT COUNT(*) FROM blobs")[0][0])
    root = env.data_dir / "blobs"
    return (
        sum(1 for p in root.glob("??/??/*") if not p.name.startswith(".")) if root.is_dir() else 0
    )
