"""Bad input to the portal and the desk (SPEC 8.4), over real HTTP against the real daemon:
numbers out of range in paths, paths and headers naming another host, HEAD requests."""

from __future__ import annotations

import asyncio
import html
import re
import urllib.parse

import pytest
from conftest import Env, make_mail
from desk_support import MAX, add_agent, cli_stdin
from web_support import ANNA, PASSWORD, Client, logged_in

pytestmark = pytest.mark.web

HUGE = str(2**63)  # one past SQLite's largest integer
HUGER = "9" * 40
NEGATIVE = "-1"
_LINKS = re.compile(r'(?:href|src|action)="([^"]*)"')


async def raw(port: int, request: bytes) -> tuple[int, str, str]:
    """One request over a raw socket (paths as sent, any Host): status, head, body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        async with asyncio.timeout(20):
            answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.decode("utf-8", "replace").partition("\r\n\r\n")
    return int(head.split(" ", 2)[1]), head, body


def get(path: str, *, host: str = "127.0.0.1", extra: str = "", method: str = "GET") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-Host: evil.example\r\n"
        f"X-Forwarded-Proto: https\r\nAccept-Language: en\r\nConnection: close\r\n{extra}\r\n"
    ).encode()


async def agent(env: Env) -> Client:
    await add_agent(env)
    result = await cli_stdin(env, PASSWORD + "\n", "agent", "passwd", MAX)
    assert result.returncode == 0, result.stderr
    client = Client(env, lang="en")
    assert (await client.login(MAX)).status_code == 303
    await client.get("/desk")
    return client


async def test_numbers_out_of_range_in_every_numbered_path_are_404(env: Env) -> None:
    """Past 2^63-1 or negative, a ticket, file, article or registration number in any path
    of the portal or the desk is 404 like a missing one, never a server error."""
    mail = make_mail(f"Anna Müller <{ANNA}>", "Drucker", "Text\n", message_id="<t1@x>")
    assert await env.send(mail) == (250, "2.0.0 Ok: ticket 100001")
    anna = await logged_in(env, ANNA, lang="en")
    desk = await agent(env)
    portal_paths = [
        ("GET", "/tickets/{n}"), ("POST", "/tickets/{n}/reply"), ("POST", "/tickets/{n}/close"),
        ("POST", "/tickets/{n}/reopen"), ("GET", "/tickets/{n}/files/1"),
        ("GET", "/tickets/100001/files/{n}"),
    ]  # fmt: skip
    desk_paths = [
        ("GET", "/desk/tickets/{n}"), ("POST", "/desk/tickets/{n}/reply"),
        ("POST", "/desk/tickets/{n}/note"), ("POST", "/desk/tickets/{n}/status"),
        ("POST", "/desk/tickets/{n}/assign"), ("GET", "/desk/tickets/{n}/raw/1"),
        ("GET", "/desk/tickets/100001/raw/{n}"), ("GET", "/desk/tickets/{n}/files/1"),
        ("GET", "/desk/tickets/100001/files/{n}"), ("POST", "/desk/registrations/{n}/approve"),
        ("POST", "/desk/registrations/{n}/reject"),
    ]  # fmt: skip
    for client, paths in ((anna, portal_paths), (desk, desk_paths)):
        for method, template in paths:
            for n in (HUGE, HUGER, NEGATIVE):
                path = template.format(n=n)
                if method == "GET":
                    response = await client.get(path)
                else:
                    response = await client.post(path, {"body": "x", "status": "open"})
                assert response.status_code == 404, (path, response.status_code)
                assert re.search(r"<h1>(Not found|Nicht gefunden)</h1>", response.text), path
    shown = await env.cli_json("ticket", "show", "100001")
    assert (shown["status"], len(shown["articles"])) == ("new", 1)


async def test_no_link_or_location_names_another_host(env: Env) -> None:
    """A path such as //other.example/ and the Host and X-Forwarded-* headers never become a
    link or a redirect to another host."""
    port = env.daemon.web_port
    for path in ("//other.example/", "//other.example/login", "/\\other.example/", "/tickets/",
                 "/login/", "//other.example/%2e%2e/login"):  # fmt: skip
        status, head, body = await raw(port, get(path, host="evil.example"))
        assert status in (404, 303), (path, status)
        links = _LINKS.findall(body) + re.findall(r"(?im)^location:\s*(\S+)", head)
        for link in links:  # browsers read a backslash as a slash
            parts = urllib.parse.urlsplit(html.unescape(link).replace("\\", "/"))
            assert parts.netloc == "", (path, link)
            assert parts.scheme in ("", "data"), (path, link)
        assert "evil.example" not in head + body, path
    # Redirects: to the login page, after a login; neither takes the Host.
    status, head, _ = await raw(port, get("/", host="evil.example"))
    assert status == 303
    assert re.search(r"(?im)^location: /login\r?$", head), head
    anna = await logged_in(env, ANNA)
    cookie = "; ".join(f"{k}={v}" for k, v in anna.http.cookies.items())
    status, head, _ = await raw(port, get("/", host="evil.example", extra=f"Cookie: {cookie}\r\n"))
    assert status == 303
    assert re.search(r"(?im)^location: /tickets\r?$", head), head


async def test_head_is_get_and_never_runs_a_post_handler(env: Env) -> None:
    """HEAD is answered as GET (headers, no body); a route that takes only POST answers HEAD
    405; nothing changes (no logout, no ticket, no mail)."""
    anna = await logged_in(env, ANNA, lang="en")
    cookie = "; ".join(f"{k}={v}" for k, v in anna.http.cookies.items())
    port = env.daemon.web_port
    for path in ("/tickets/new", "/account", "/login", "/register", "/password/forgot"):
        status, head, body = await raw(port, get(path, method="HEAD",
                                                 extra=f"Cookie: {cookie}\r\n"))  # fmt: skip
        assert status in (200, 303), (path, status, head)
        assert body == "", path
    for path in ("/logout", "/tickets/100001/close", "/tickets/100001/reply"):
        status, head, _ = await raw(port, get(path, method="HEAD", extra=f"Cookie: {cookie}\r\n"))
        assert status == 405, (path, status)
    assert (await anna.get("/tickets")).status_code == 200  # still logged in
    assert await env.cli_json("ticket", "list") == []
    assert await env.cli_json("outbox", "list") == []
