"""Hardening over real sockets: stable ids for MTA retries, the SMTP command budget, idle cut."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from conftest import SUPPORT, Env

ANNA = "anna@schule.example"


def no_id_mail(body: str = "Der Drucker im Raum 12 druckt nicht.") -> bytes:
    """A mail without Message-ID (some scanners and scripts send them), CRLF as over SMTP."""
    return (
        f"From: Anna Müller <{ANNA}>\r\nTo: {SUPPORT}\r\nSubject: Drucker ohne ID\r\n"
        "Date: Sun, 22 Nov 2026 10:00:00 +0100\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        f"{body}\r\n"
    ).encode()


async def test_retry_of_mail_without_message_id_with_more_trace_fields_is_stored_once(
    env: Env,
) -> None:
    """A Message-ID-less mail retried with a Received (and other trace fields) is stored once."""
    raw = no_id_mail()
    first = await env.send(raw, mail_from=ANNA)
    retry = (
        b"Received: from mx2.schule.example (mx2.schule.example [192.0.2.7])\r\n"
        b"\tby mx.stueber.de (Postfix) with ESMTPS id 4Xy; Sun, 22 Nov 2026 10:20:00 +0100\r\n"
        b"X-Original-To: support@stueber.de\r\n"
        b"Authentication-Results: mx.stueber.de; spf=pass smtp.mailfrom=schule.example\r\n"
    ) + raw
    second = await env.send(retry, mail_from=ANNA)
    assert first == (250, "2.0.0 Ok: ticket 100001")
    assert second == first
    shown = await env.cli_json("ticket", "show", "100001")
    assert len(shown["articles"]) == 1
    assert len(await env.cli_json("outbox", "list")) == 1
    # Another text is another mail, with or without trace fields.
    other = await env.send(retry.replace(b"Raum 12", b"Raum 13"), mail_from=ANNA)
    assert other == (250, "2.0.0 Ok: ticket 100002")


async def _dialogue(port: int, lines: list[bytes]) -> tuple[list[str], bool]:
    """Send command lines one by one, each answered before the next; the reply lines and
    whether the server closed the connection (bounded: 10 s for every read)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    replies: list[str] = []
    try:
        greeting = await asyncio.wait_for(reader.readline(), 10)
        assert greeting.startswith(b"220")
        for line in lines:
            writer.write(line + b"\r\n")
            await writer.drain()
            while True:  # a multi-line reply ends with "NNN " (a space after the code)
                got = await asyncio.wait_for(reader.readline(), 10)
                if not got:
                    return replies, True
                replies.append(got.decode().rstrip())
                if got[3:4] != b"-":
                    break
        try:
            rest = await asyncio.wait_for(reader.readline(), 10)
        except TimeoutError:
            return replies, False
        if rest:
            replies.append(rest.decode().rstrip())
        return replies, not rest
    finally:
        writer.close()


async def test_command_budget_counts_every_command_of_a_session(
    env_factory: Callable[..., Any],
) -> None:
    """smtp.max_commands bounds all commands of a session together: NOOP, RSET, HELO mixed."""
    e: Env = await env_factory(None, smtp={"max_commands": 4})
    replies, closed = await _dialogue(
        e.port, [b"NOOP", b"RSET", b"HELO mta.test", b"HELP", b"NOOP", b"RSET", b"NOOP"]
    )
    assert replies[:3] == ["250 OK", "250 OK", "250 ticketmail.test"]
    # HELP still knows the commands' help texts (the counting keeps them).
    assert replies[3].startswith("250 Supported commands:")
    assert {"DATA", "EHLO", "MAIL", "NOOP", "RCPT"} <= set(replies[3].split(": ", 1)[1].split())
    assert replies[4].startswith("421 4.7.0 ticketmail.test ")
    assert len(replies) == 5
    assert closed


async def test_command_budget_leaves_room_for_a_mail(env_factory: Callable[..., Any]) -> None:
    """A whole mail fits a small budget; commands beyond it get 421 4.7.0 and the session ends."""
    e: Env = await env_factory(None, smtp={"max_commands": 5})
    await e.customer("10042", "Gymnasium Musterstadt")
    await e.user(ANNA, "10042")
    body = no_id_mail().replace(b"\r\n.", b"\r\n..")
    replies, closed = await _dialogue(
        e.port,
        [b"HELO mta.test", f"MAIL FROM:<{ANNA}>".encode(), f"RCPT TO:<{SUPPORT}>".encode(),
         b"DATA", body + b".", b"NOOP", b"NOOP", b"NOOP"],
    )  # fmt: skip
    # HELO, MAIL, RCPT, DATA and one NOOP are the five; the lines of the mail are no commands.
    assert replies[:6] == [
        "250 ticketmail.test",
        "250 OK",
        "250 2.1.5 Ok",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 2.0.0 Ok: ticket 100001",
        "250 OK",
    ]
    assert replies[6].startswith("421 4.7.0")
    assert len(replies) == 7
    assert closed


async def test_idle_session_is_told_421_and_closed(env_factory: Callable[..., Any]) -> None:
    """A session idle for smtp.timeout_seconds gets 421 4.4.2 and is closed within bounds."""
    e: Env = await env_factory(None, smtp={"timeout_seconds": 1.0})
    reader, writer = await asyncio.open_connection("127.0.0.1", e.port)
    try:
        assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"220")
        writer.write(b"EHLO mta.test\r\n")
        await writer.drain()
        while (await asyncio.wait_for(reader.readline(), 10))[3:4] == b"-":
            pass
        started = time.monotonic()
        reply = await asyncio.wait_for(reader.readline(), 10)
        waited = time.monotonic() - started
        end = await asyncio.wait_for(reader.read(100), 10)
    finally:
        writer.close()
    assert reply.decode().startswith("421 4.4.2 ticketmail.test ")
    assert end == b""
    assert 0.8 <= waited <= 5.0


async def test_idle_time_counts_from_the_last_command(env_factory: Callable[..., Any]) -> None:
    """Every command starts smtp.timeout_seconds anew: the 421 comes that long after the last."""
    e: Env = await env_factory(None, smtp={"timeout_seconds": 1.0})
    reader, writer = await asyncio.open_connection("127.0.0.1", e.port)
    try:
        assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"220")
        # Quiet for 0.6 s of the 1 s (the idle time itself, nothing is awaited), then NOOP.
        with contextlib.suppress(TimeoutError):
            early = await asyncio.wait_for(reader.readline(), 0.6)
            raise AssertionError(f"the server spoke while the client was quiet: {early!r}")
        writer.write(b"NOOP\r\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.readline(), 10) == b"250 OK\r\n"
        started = time.monotonic()
        reply = await asyncio.wait_for(reader.readline(), 10)
        waited = time.monotonic() - started
    finally:
        writer.close()
    assert reply.decode().startswith("421 4.4.2 ticketmail.test ")
    assert 0.8 <= waited <= 5.0
