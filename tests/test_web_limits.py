"""Request bodies bounded by the bytes that arrive (SPEC 8.4), against the real daemon as a
subprocess (its own memory, its own TMPDIR) and over raw sockets: the size limits, chunked
bodies, a Content-Length that lies, the drain and the close, the minimum body rate."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Env, eventually, free_port, run_cli, write_config
from service_support import own_environ, spawn_serve
from web_support import ANNA, PASSWORD, Client, logged_in, text_of

from ticketmail.web.limits import ANONYMOUS_LIMIT, DRAIN_BYTES

pytestmark = pytest.mark.web

MIB = 1024 * 1024
MAX_MESSAGE = 2 * MIB  # smtp.max_message_bytes of the subprocess daemon: a limit of 3 MiB
SENT = 60 * MIB  # what the client offers
BOUNDARY = "tm-limits-7f3a"
_CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


@dataclass
class Daemon:
    """`ticketmail serve` in a process of its own, with TMPDIR pointed at `tmp`."""

    proc: subprocess.Popen[bytes]
    web_port: int
    tmp: Path
    log: Path

    def status(self, field: str) -> int:
        """A /proc/PID/status figure in KiB (VmRSS, VmHWM)."""
        text = Path(f"/proc/{self.proc.pid}/status").read_text(encoding="ascii")
        found = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
        assert found, text
        return int(found.group(1))

    def reset_peak(self) -> None:
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5", encoding="ascii")

    def open_temp_files(self) -> list[str]:
        """The daemon's descriptors that point into its TMPDIR (unlinked ones included)."""
        found = []
        for fd in Path(f"/proc/{self.proc.pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith(str(self.tmp)):
                    found.append(target)
        return found


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    web_port = free_port()
    config = write_config(
        tmp_path / "config.toml", tmp_path / "var", None,
        smtp={"port": free_port(), "max_message_bytes": MAX_MESSAGE},
        web={"enabled": True, "port": web_port, "body_idle_seconds": 5.0},
    )  # fmt: skip
    for args in (
        ("customer", "add", "10042", "Gymnasium Musterstadt", "--support-until", "2099-12-31"),
        ("user", "add", ANNA, "--customer", "10042", "--lang", "de"),
    ):
        assert run_cli("--config", str(config), *args).returncode == 0
    done = run_cli("--config", str(config), "user", "passwd", ANNA, stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    tmp = tmp_path / "daemon-tmp"
    tmp.mkdir()
    environ = own_environ()
    environ["TMPDIR"] = str(tmp)
    log = tmp_path / "daemon.log"
    proc = spawn_serve(config, log, environ=environ)
    running = Daemon(proc, web_port, tmp, log)

    async def healthy() -> bool:
        assert proc.poll() is None, log.read_text()
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                return (await client.get(f"http://127.0.0.1:{web_port}/healthz")).text == "ok"
        except httpx.HTTPError:
            return False

    try:
        await eventually(healthy, seconds=30, what="the daemon's portal")
        yield running
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait, 10)


async def session(port: int, path: str, *, login: bool) -> tuple[str, str]:
    """(Cookie header, CSRF token of `path`) of a browser, logged in as Anna or not."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
        if login:
            page = await client.get("/login")
            token = _CSRF.search(page.text)
            assert token
            answer = await client.post(
                "/login", data={"email": ANNA, "password": PASSWORD, "csrf_token": token[1]}
            )
            assert answer.status_code == 303, answer.text
        page = await client.get(path)
        token = _CSRF.search(page.text)
        assert token, page.text
        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
        return cookie, token[1]


@dataclass
class Pushed:
    """What a raw client got through: bytes the server's side took, and its answer."""

    written: int
    response: bytes

    @property
    def status(self) -> int:
        return int(self.response.split(b" ", 2)[1]) if self.response else 0

    def header(self, name: str) -> str | None:
        head = self.response.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        found = re.search(rf"^{name}:\s*(.*?)\r?$", head, re.I | re.M)
        return found.group(1) if found else None


async def push(port: int, head: bytes, first: bytes, *, total: int, chunked: bool) -> Pushed:
    """Send `head`, then `first` and filler up to `total` body bytes (as chunks when
    `chunked`), while reading the answer; stops when the server answered and closed, or
    refused more. Bounded: 60 s in all."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)  # little kept client-side
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    response = bytearray()

    async def read() -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                response.extend(chunk)

    reading = asyncio.create_task(read())
    written = 0
    filler = b"x" * (64 * 1024)
    try:
        async with asyncio.timeout(60):
            writer.write(head)
            piece = first
            while written < total and not reading.done():
                piece = piece[: total - written]
                data = b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece
                writer.write(data)
                await writer.drain()
                written += len(piece)
                piece = filler
            if chunked and written >= total:
                writer.write(b"0\r\n\r\n")
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            await reading
    except ConnectionError:
        async with asyncio.timeout(10):
            await reading
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return Pushed(written, bytes(response))


def request_head(path: str, *, cookie: str = "", content_type: str, length: int | None) -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Language: en\r\n"
        f"Cookie: {cookie}\r\nContent-Type: {content_type}\r\n{framing}\r\n\r\n"
    ).encode()


def multipart_start(fields: dict[str, str], filename: str) -> bytes:
    """Text fields, then the start of a file part (its content follows as filler)."""
    parts = b"".join(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    )
    return (
        parts
        + (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="attachments"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
    )


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
# What a refused body may have cost the server: its limit, the drain, what uvicorn and the
# kernel hold in between (the client's send buffer is 64 KiB; loopback windows grow to MiBs).
SLACK = 8 * MIB


async def test_huge_chunked_bodies_are_cut_early_with_nothing_kept(daemon: Daemon) -> None:
    """A 60 MB chunked body to /login and to /tickets/new (logged in) is answered 413 with
    connection: close after its limit and the drain, leaves no temporary file, and does not
    grow the daemon by its size."""
    port = daemon.web_port
    cookie, token = await session(port, "/tickets/new", login=True)
    anon_cookie, anon_token = await session(port, "/login", login=False)
    rss_before = daemon.status("VmRSS")
    daemon.reset_peak()
    cases = [
        ("/login", anon_cookie, "application/x-www-form-urlencoded",
         f"csrf_token={anon_token}&email=anna%40schule.example&password=".encode(),
         ANONYMOUS_LIMIT),
        ("/tickets/new", cookie, MULTIPART,
         multipart_start({"csrf_token": token, "subject": "Riesig", "body": "Getippt"}, "a.bin"),
         MAX_MESSAGE + MIB),
    ]  # fmt: skip
    for path, jar, kind, first, limit in cases:
        pushed = await push(port, request_head(path, cookie=jar, content_type=kind, length=None),
                            first, total=SENT, chunked=True)  # fmt: skip
        assert pushed.status == 413, (path, pushed.response[:300])
        assert pushed.header("connection") == "close", path
        assert pushed.written <= limit + DRAIN_BYTES + SLACK, (path, pushed.written)
        assert pushed.written < SENT // 4, (path, pushed.written)
        text = pushed.response.decode("utf-8", "replace")
        assert "Nothing was saved" in text or "nichts gespeichert" in text, path
    assert 'value="Riesig"' in text  # the fields before the file are in the form again
    assert ">Getippt</textarea>" in text
    assert list(daemon.tmp.iterdir()) == []
    assert daemon.open_temp_files() == []
    peak = daemon.status("VmHWM")
    assert peak - rss_before < 24 * 1024, (rss_before, peak)  # KiB: far below the 60 MB sent
    assert daemon.proc.poll() is None


async def test_a_content_length_that_lies_is_cut(daemon: Daemon) -> None:
    """A body that says it is small and sends far more is read to its stated length; the
    rest is no request (400) and the connection is closed: 60 MB never go in."""
    cookie, token = await session(daemon.web_port, "/login", login=False)
    first = f"csrf_token={token}&email=x%40y.example&password=nope".encode()
    pushed = await push(
        daemon.web_port,
        request_head("/login", cookie=cookie, content_type="application/x-www-form-urlencoded",
                     length=len(first)),
        first, total=SENT, chunked=False,
    )  # fmt: skip
    assert pushed.status in (401, 400), pushed.response[:300]
    assert pushed.written < SENT // 4, pushed.written
    assert b"HTTP/1.1 400" in pushed.response  # the rest was taken for a request, refused


async def test_declared_too_big_is_refused_without_asking_for_the_body(daemon: Daemon) -> None:
    """Content-Length over the limit with Expect: 100-continue: 413 at once, no 100 Continue,
    so the client never sends the body."""
    cookie, _ = await session(daemon.web_port, "/login", login=False)
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.web_port)
    try:
        writer.write(
            b"POST /register HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: " + cookie.encode()
            + b"\r\nContent-Type: application/x-www-form-urlencoded\r\nExpect: 100-continue"
            + b"\r\nContent-Length: 5000000\r\n\r\n"
        )  # fmt: skip
        async with asyncio.timeout(10):
            answer = await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert b"connection: close" in answer.lower()


async def test_big_urlencoded_form_to_register_is_413(env: Env) -> None:
    """A 2 MB urlencoded form to /register is refused 413 (anonymous forms take 64 KiB),
    before its CSRF token is even looked at."""
    client = Client(env, lang="en")
    await client.get("/register")
    response = await client.post("/register", {"email": "a@b.example", "name": "x" * 2_000_000})
    assert response.status_code == 413
    assert response.headers["connection"] == "close"
    assert "The request was too large" in text_of(response)
    refused = await client.post("/register", {"email": "a@b.example"}, csrf="0" * 64)
    assert refused.status_code == 403  # a small one reaches the CSRF check


async def test_anonymous_forms_take_no_file(env: Env) -> None:
    """A multipart file part on /login is refused 413 (anonymous forms take no files)."""
    client = Client(env, lang="en")
    await client.get("/login")
    response = await client.post(
        "/login", {"email": ANNA, "password": "x"}, files=[("f", ("a.txt", b"hi", "text/plain"))]
    )
    assert response.status_code == 413
    assert "This form takes no files" in text_of(response)


async def _stalled(port: int, head: bytes, pieces: list[bytes], pause: float) -> bytes:
    """Send `head` and `pieces` with `pause` between them; the answer (bounded: 20 s)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = b""
    try:
        writer.write(head)
        async with asyncio.timeout(20):
            reading = asyncio.create_task(reader.read())
            for piece in pieces:
                if reading.done():
                    break
                writer.write(piece)
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                await asyncio.wait([reading], timeout=pause)  # paces the slow sender
            answer = await reading
    finally:
        writer.close()
    return answer


async def test_a_body_that_stops_or_trickles_is_ended_408(env_factory: Any) -> None:
    """A body that sends nothing for web.body_idle_seconds, or trickles below
    web.body_min_rate once those have passed, is answered 408 and its connection closed."""
    env: Env = await env_factory(None, web={"body_idle_seconds": 1.0, "body_min_rate": 1024.0})
    port = env.daemon.web_port
    head = (
        b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 4000\r\n\r\n"
    )
    stopped = await _stalled(port, head, [b"email=a"], pause=5.0)
    assert stopped.startswith(b"HTTP/1.1 408"), stopped[:200]
    assert b"connection: close" in stopped.lower()
    trickle = await _stalled(port, head, [b"e"] * 40, pause=0.3)  # 3 bytes a second
    assert trickle.startswith(b"HTTP/1.1 408"), trickle[:200]
    fast = await _stalled(port, head, [b"e" * 4000], pause=0.1)
    assert not fast.startswith(b"HTTP/1.1 408"), fast[:200]


async def test_refused_forms_come_back_with_the_typed_text(env_factory: Any) -> None:
    """A new ticket refused for its size keeps the subject and text typed before the file;
    a reply with an expired token keeps its text; each with one line saying why."""
    env: Env = await env_factory(None, smtp={"max_message_bytes": 100_000})
    await env.customer("10042", "Gymnasium Musterstadt")
    await env.user(ANNA, "10042", name="Anna Müller", lang="en")
    anna = await logged_in(env, ANNA, lang="en")
    big = [("attachments", ("big.bin", b"z" * 1_300_000, "application/octet-stream"))]
    response = await anna.post("/tickets/new", {"subject": "Beamer <defekt>", "body": "Mein Text"},
                               files=big, form_page="/tickets/new")  # fmt: skip
    assert response.status_code == 413
    assert 'value="Beamer &lt;defekt&gt;"' in response.text
    assert ">Mein Text</textarea>" in response.text
    assert "The files are larger than" in text_of(response)
    assert await env.cli_json("ticket", "list") == []
    ok = await anna.post("/tickets/new", {"subject": "Erst", "body": "Da"},
                         form_page="/tickets/new")  # fmt: skip
    number = int(ok.headers["location"].rsplit("/", 1)[1])
    stale = await anna.post(f"/tickets/{number}/reply", {"body": "Meine Antwort"}, csrf="0" * 64)
    assert stale.status_code == 403
    assert ">Meine Antwort</textarea>" in stale.text
    assert "The form had expired" in text_of(stale)
    stale = await anna.post("/tickets/new", {"subject": "Zweiter", "body": "Noch"}, csrf="0" * 64)
    assert stale.status_code == 403
    assert 'value="Zweiter"' in stale.text
    assert len((await env.cli_json("ticket", "show", str(number)))["articles"]) == 1


async def test_a_refused_body_is_drained_so_the_client_sees_the_answer(env: Env) -> None:
    """Past the limit, up to DRAIN_BYTES more are read and dropped before the connection
    closes: a client that sends its whole (3 MiB) form gets it all in, then the full 413."""
    client = Client(env)
    await client.get("/register")
    cookie = "; ".join(f"{k}={v}" for k, v in client.http.cookies.items())
    total = 3 * MIB
    pushed = await push(
        env.daemon.web_port,
        request_head("/register", cookie=cookie, content_type="application/x-www-form-urlencoded",
                     length=total),
        b"email=a%40b.example&name=", total=total, chunked=False,
    )  # fmt: skip
    assert pushed.written == total
    assert pushed.status == 413
    length = pushed.header("content-length")
    assert length is not None
    assert len(pushed.response.split(b"\r\n\r\n", 1)[1]) == int(length)


async def test_a_client_gone_mid_body_is_no_server_error(daemon: Daemon) -> None:
    """A client that leaves while sending its form is logged as gone, not as a failure."""
    cookie, token = await session(daemon.web_port, "/login", login=False)
    _, writer = await asyncio.open_connection("127.0.0.1", daemon.web_port)
    writer.write(request_head("/login", cookie=cookie, length=5000,
                              content_type="application/x-www-form-urlencoded")
                 + f"csrf_token={token}&email=".encode())  # fmt: skip
    await writer.drain()
    writer.close()
    await eventually(lambda: "web_client_gone" in daemon.log.read_text(), what="web_client_gone")
    assert "web_request_failed" not in daemon.log.read_text()
