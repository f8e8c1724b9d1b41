"""The chunked DATA reader keeps aiosmtpd's protections: terminator, smuggling, size, lines."""

from __future__ import annotations

import asyncio
import hashlib

from conftest import SUPPORT, Env, read_rows, stored_blob

HEAD = (
    b"From: anna@schule.example\r\nTo: support@stueber.de\r\nSubject: Punkte\r\n"
    b"Message-ID: <dots-1@schule.example>\r\n\r\n"
)


async def _session(port: int, writes: list[bytes], *, replies: int) -> list[str]:
    """One SMTP session from raw writes (each sent as its own TCP write); read replies."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    got: list[str] = []
    try:
        assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"220")
        for data in writes:
            writer.write(data)
            await writer.drain()
            # Pacing, not a wait for an event: each write goes out as a TCP segment of its
            # own, so the server gets the pieces apart, as from a real client's split writes.
            await asyncio.sleep(0.01)
        for _ in range(replies):
            line = await asyncio.wait_for(reader.readline(), 10)
            if not line:
                break
            got.append(line.decode().rstrip())
    finally:
        writer.close()
    return got


def _envelope() -> list[bytes]:
    return [b"HELO client.test\r\n", b"MAIL FROM:<anna@schule.example>\r\n",
            f"RCPT TO:<{SUPPORT}>\r\n".encode(), b"DATA\r\n"]  # fmt: skip


def _stored_raw(env: Env) -> list[bytes]:
    shas = [r[0] for r in read_rows(env.data_dir, "SELECT raw_sha256 FROM messages ORDER BY id")]
    return [stored_blob(env.data_dir, s) or b"" for s in shas]


async def test_dot_stuffing_is_undone_and_terminator_split_across_writes(env: Env) -> None:
    """Stuffed dots come out single, sentence-final dots stay, a split <CRLF>.<CRLF> ends DATA."""
    body = b"Ende des Satzes.\r\n..Zeile mit Punkt\r\n...\r\nnoch ein Satz.\r\n"
    # The final <CRLF>.<CRLF> arrives in three TCP writes: "\r", "\n.", "\r\n".
    writes = [*_envelope(), HEAD + body[:20], body[20:-2] + b"\r", b"\n.", b"\r\n", b"QUIT\r\n"]
    replies = await _session(env.port, writes, replies=7)
    assert "250 2.0.0 Ok: ticket 100001" in replies
    (raw,) = _stored_raw(env)
    assert raw == HEAD + b"Ende des Satzes.\r\n.Zeile mit Punkt\r\n..\r\nnoch ein Satz.\r\n"


async def test_bare_lf_around_the_dot_does_not_end_data(env: Env) -> None:
    """<LF>.<CRLF>, <CRLF>.<LF> and <LF>.<LF> are data, not the end (no SMTP smuggling)."""
    smuggled = (
        b"Text\n.\r\nMAIL FROM:<evil@example.org>\r\n"
        b"Text\r\n.\nRCPT TO:<support@stueber.de>\r\n"
        b"Text\n.\nDATA\r\n"
    )
    writes = [*_envelope(), HEAD + smuggled + b".\r\n", b"QUIT\r\n"]
    replies = await _session(env.port, writes, replies=7)
    assert replies.count("250 2.0.0 Ok: ticket 100001") == 1
    (raw,) = _stored_raw(env)
    # The line ".<LF>RCPT ..." starts with a dot, so that one dot is unstuffed, as aiosmtpd does.
    assert raw == HEAD + smuggled.replace(b"\r\n.\n", b"\r\n\n")


async def test_over_size_data_is_drained_and_refused(env_factory: object) -> None:
    """Data over smtp.max_message_bytes gets 552 5.3.4 after the terminator; the session goes on."""
    e: Env = await env_factory(None, smtp={"max_message_bytes": 50_000})  # type: ignore[operator]
    await e.customer("10042", "Gymnasium Musterstadt")
    await e.user("anna@schule.example", "10042")
    big = HEAD + b"x" * 70 + b"\r\n"
    big += (b"y" * 76 + b"\r\n") * 2000
    writes = [*_envelope(), big + b".\r\n", b"RSET\r\n", b"NOOP\r\n"]
    replies = await _session(e.port, writes, replies=7)
    assert any(r.startswith("552 5.3.4") for r in replies)
    assert replies[-2:] == ["250 OK", "250 OK"]
    assert _stored_raw(e) == []


async def test_over_long_line_is_refused(env_factory: object) -> None:
    """A line longer than smtp.max_line_bytes gets 500 and nothing is stored."""
    e: Env = await env_factory(None, smtp={"max_line_bytes": 2000})  # type: ignore[operator]
    await e.customer("10042", "Gymnasium Musterstadt")
    await e.user("anna@schule.example", "10042")
    writes = [*_envelope(), HEAD + b"z" * 5000 + b"\r\n.\r\n", b"NOOP\r\n"]
    replies = await _session(e.port, writes, replies=6)
    assert any(r.startswith("500 5.5.2") for r in replies)
    assert replies[-1] == "250 OK"
    assert _stored_raw(e) == []


async def test_body_larger_than_the_read_buffer_arrives_whole(env: Env) -> None:
    """A 3 MB base64 body (no '.<CRLF>' inside) is read in chunks and stored byte for byte."""
    line = b"QUJD" * 19 + b"\r\n"
    body = HEAD + line * 40_000
    writes = [*_envelope(), body + b".\r\n"]
    replies = await _session(env.port, writes, replies=5)
    assert "250 2.0.0 Ok: ticket 100001" in replies
    (raw,) = _stored_raw(env)
    assert hashlib.sha256(raw).hexdigest() == hashlib.sha256(body).hexdigest()


async def test_empty_data_ends_at_a_lone_dot(env: Env) -> None:
    """DATA followed straight by '.' is an empty message: answered, not waited on forever."""
    writes = [*_envelope(), b".\r\n", b"NOOP\r\n"]
    replies = await _session(env.port, writes, replies=6)
    assert replies[-2].startswith("550 5.7.1")  # no From: at all, so no registered sender
    assert replies[-1] == "250 OK"
