"""The SMTP dialogue: extensions, parameters real servers send, session limit, disconnects."""

from __future__ import annotations

import asyncio
import socket

import aiosmtplib
from aiosmtpd.smtp import SMTP
from conftest import SUPPORT, Env, eventually, make_mail
from hypothesis import given, settings
from hypothesis import strategies as st

from ticketmail.daemon import REPLY_SHUTTING_DOWN
from ticketmail.smtp.replies import REPLY_TOO_MANY_SESSIONS
from ticketmail.smtp.server import TicketSMTP


async def test_ehlo_advertises_size_8bitmime_smtputf8(env: Env) -> None:
    """EHLO names SIZE with the configured limit, 8BITMIME and SMTPUTF8."""
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=env.port, start_tls=False)
    await client.connect()
    try:
        await client.ehlo()
        assert client.esmtp_extensions["size"] == str(env.config.smtp.max_message_bytes)
        assert "8bitmime" in client.esmtp_extensions
        assert "smtputf8" in client.esmtp_extensions
        assert "starttls" not in client.esmtp_extensions
    finally:
        await client.quit()


async def test_mail_and_rcpt_parameters_of_real_mtas_are_accepted(env: Env) -> None:
    """SIZE, BODY=8BITMIME, SMTPUTF8 and DSN's RET, ENVID, NOTIFY, ORCPT get 250, not 555."""
    raw = make_mail("anna@schule.example", "Grüße aus Raum 12").as_bytes()
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=env.port, start_tls=False)
    await client.connect()
    try:
        await client.ehlo()
        mail = await client.mail(
            "anna@schule.example",
            options=[f"SIZE={len(raw)}", "BODY=8BITMIME", "SMTPUTF8", "RET=HDRS", "ENVID=abc123"],
        )
        assert mail.code == 250
        rcpt = await client.rcpt(
            SUPPORT, options=["NOTIFY=FAILURE,DELAY", f"ORCPT=rfc822;{SUPPORT}"]
        )
        assert rcpt.code == 250
        data = await client.data(raw)
        assert (data.code, data.message) == (250, "2.0.0 Ok: ticket 100001")
    finally:
        await client.quit()


async def test_null_envelope_sender_is_accepted_at_mail(env: Env) -> None:
    """MAIL FROM:<> (bounces, auto-replies) is a valid envelope and gets 250."""
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=env.port, start_tls=False)
    await client.connect()
    try:
        await client.ehlo()
        code, _ = await client.execute_command(b"MAIL", b"FROM:<>")
        assert code == 250
    finally:
        await client.quit()


async def test_sessions_over_the_limit_get_421(env_factory: object) -> None:
    """With smtp.max_sessions reached, one more connection is answered 421 4.7.0 and closed."""
    e: Env = await env_factory(None, smtp={"max_sessions": 2})  # type: ignore[operator]
    held = []
    for _ in range(2):
        reader, writer = await asyncio.open_connection("127.0.0.1", e.port)
        assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"220")
        held.append(writer)
    reader, writer = await asyncio.open_connection("127.0.0.1", e.port)
    line = await asyncio.wait_for(reader.readline(), 5)
    assert line.decode().rstrip() == REPLY_TOO_MANY_SESSIONS
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    for w in held:
        w.close()
        await w.wait_closed()
    # Once the others are gone there is room again.

    async def greeted() -> bool:
        reader, writer = await asyncio.open_connection("127.0.0.1", e.port)
        first = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
        return first.startswith(b"220")

    await eventually(greeted, what="a new session greeted with 220 once the others closed")


async def test_a_connection_accepted_as_the_daemon_stops_gets_421(env: Env) -> None:
    """A connection the listener accepted just before it closed, its session made only after
    the stop began, is answered 421 4.3.2 and closed: no mail starts that the stop would not
    wait for (it would meet the worker processes closing)."""
    factory = env.daemon.protocol_factory
    assert factory is not None
    session = factory()  # made as the connection was accepted, before the stop
    ours, theirs = socket.socketpair()
    stopping = asyncio.create_task(env.daemon.stop(grace=5))
    await eventually(lambda: factory.refusing is not None, what="the stop to begin")
    loop = asyncio.get_running_loop()
    await loop.connect_accepted_socket(lambda: session, ours)
    reader, writer = await asyncio.open_connection(sock=theirs)
    line = await asyncio.wait_for(reader.readline(), 5)
    assert line.decode().rstrip() == REPLY_SHUTTING_DOWN
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    await stopping


async def test_client_gone_during_processing_still_stores_the_mail_once(env: Env) -> None:
    """A client that drops the connection right after DATA leaves a whole ticket, not half."""
    raw = make_mail("anna@schule.example", "Verbindung weg").as_bytes().replace(b"\n", b"\r\n")
    raw = raw.replace(b"\r\r\n", b"\r\n")
    reader, writer = await asyncio.open_connection("127.0.0.1", env.port)
    await reader.readline()
    for command in (
        b"EHLO client.test",
        b"MAIL FROM:<anna@schule.example>",
        f"RCPT TO:<{SUPPORT}>".encode(),
    ):
        writer.write(command + b"\r\n")
        for _ in range(20):  # a multi-line reply ends with "250 " (space after the code)
            line = await asyncio.wait_for(reader.readline(), 5)
            if line[3:4] == b" ":
                break
        assert line.startswith(b"250"), line
    writer.write(b"DATA\r\n")
    assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"354")
    writer.write(raw + b".\r\n")
    await writer.drain()
    writer.transport.abort()  # gone before the reply arrives
    tickets = await eventually(
        lambda: env.cli_json("ticket", "list"), what="a ticket for the mail of the gone client"
    )
    assert [t["subject"] for t in tickets] == ["Verbindung weg"]
    assert tickets[0]["articles"] == 1
    # The sender's MTA, never having seen 250, sends again: still one article.
    code, text = await env.send(raw, mail_from="anna@schule.example")
    assert (code, text) == (250, "2.0.0 Ok: ticket 100001")
    shown = await env.cli_json("ticket", "show", "100001")
    assert len(shown["articles"]) == 1


async def _raw_exchange(port: int, lines: list[bytes], *, replies: int) -> list[str]:
    """Send raw command lines; collect `replies` reply lines (bounded)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    got: list[str] = []
    try:
        greeting = await asyncio.wait_for(reader.readline(), 5)
        assert greeting.startswith(b"220")
        for line in lines:
            writer.write(line + b"\r\n")
        await writer.drain()
        for _ in range(200):
            if len(got) >= replies:
                break
            got.append((await asyncio.wait_for(reader.readline(), 10)).decode().rstrip())
    finally:
        writer.close()
    return got


async def test_lmtp_mode_answers_each_recipient(env_factory: object) -> None:
    """With smtp.lmtp, LHLO replaces EHLO and DATA gets one reply per accepted recipient."""
    e: Env = await env_factory(  # type: ignore[operator]
        None, smtp={"lmtp": True, "recipients": [SUPPORT, "hilfe@stueber.de"]}
    )
    await e.customer("10042", "Gymnasium Musterstadt")
    await e.user("anna@schule.example", "10042")
    body = make_mail("anna@schule.example", "Per LMTP").as_bytes().replace(b"\n", b"\r\n")
    body = body.replace(b"\r\r\n", b"\r\n")
    replies = await _raw_exchange(
        e.port,
        [
            b"EHLO mta.test",
            b"LHLO mta.test",
            b"MAIL FROM:<anna@schule.example>",
            f"RCPT TO:<{SUPPORT}>".encode(),
            b"RCPT TO:<hilfe@stueber.de>",
            b"DATA",
            body + b".",
            b"QUIT",
        ],
        replies=20,
    )
    assert replies[0].startswith("500")
    assert "250-8BITMIME" in replies  # the LHLO reply lists the extensions
    tickets = [r for r in replies if r == "250 2.0.0 Ok: ticket 100001"]
    assert len(tickets) == 2


async def test_commands_per_session_are_limited(env_factory: object) -> None:
    """A session that repeats a command more than smtp.max_commands times is closed with 421."""
    e: Env = await env_factory(None, smtp={"max_commands": 3})  # type: ignore[operator]
    replies = await _raw_exchange(e.port, [b"NOOP"] * 5, replies=5)
    assert replies[:3] == ["250 OK"] * 3
    assert replies[3].startswith("421 4.7.0")


_ATOM = st.text("abcXYZ019!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=8)
_LOCAL = st.one_of(
    st.lists(_ATOM, min_size=1, max_size=3).map(".".join),
    st.text("ab.", min_size=1, max_size=6),  # odd dots: leading, trailing, doubled
    st.text("ab x\\", max_size=6).map(lambda t: f'"{t}"'),  # quoted local parts
)
_DOMAIN = st.one_of(
    st.lists(st.text("abz09-", min_size=1, max_size=6), min_size=1, max_size=3).map(".".join),
    st.just("[192.0.2.1]"),
    st.text("a.-", min_size=1, max_size=5),
)
_PATH = st.one_of(
    st.builds(lambda lo, do: f"<{lo}@{do}>", _LOCAL, _DOMAIN),
    st.just("<>"),
    st.builds(lambda lo, do: f"{lo}@{do}", _LOCAL, _DOMAIN),  # no angle brackets
    st.text(max_size=12),
)
_PARAMS = st.sampled_from(["", " SIZE=1024", "SIZE=7", "  BODY=8BITMIME SMTPUTF8", "\tX=1"])


@settings(max_examples=500, deadline=None)
@given(path=_PATH, params=_PARAMS, lead=st.sampled_from(["", " "]), limit=st.sampled_from([0, 4]))
def test_fast_path_parsing_equals_aiosmtpds(path: str, params: str, lead: str, limit: int) -> None:
    """MAIL/RCPT paths parse exactly as aiosmtpd parses them, fast path or not."""
    ours = object.__new__(TicketSMTP)
    ours.local_part_limit = limit
    arg = lead + path + params
    try:
        expected = SMTP._getaddr(ours, arg)
    except (IndexError, ValueError):  # CPython's address parser crashes on e.g. "a@"
        expected = (None, None)
    assert ours._getaddr(arg) == expected


async def test_path_the_address_parser_crashes_on_is_a_syntax_error(env: Env) -> None:
    """`MAIL FROM:a@` (CPython's parser raises IndexError on it) gets 553 5.1.3, as bad paths do."""
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=env.port, start_tls=False, timeout=10)
    await client.connect()
    try:
        await client.ehlo()
        code, _ = await client.execute_command(b"MAIL FROM:a@")
        assert code == 553
        code, _ = await client.execute_command(b"MAIL FROM:<anna@schule.example>")
        assert code == 250  # the session goes on
    finally:
        client.close()
