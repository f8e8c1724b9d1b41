"""No single SMTP client takes intake away from others (SPEC 4.1): caps, clocks, memory."""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    SUPPORT,
    Env,
    accepts_connections,
    eventually,
    free_port,
    make_mail,
    read_rows,
    stored_blob,
    write_config,
)
from service_support import own_environ, spawn_serve
from structlog.testing import capture_logs

from ticketmail.smtp.limits import source_of
from ticketmail.smtp.replies import (
    REPLY_DATA_TOO_LONG,
    REPLY_DATA_TOO_SLOW,
    REPLY_IDLE_BEFORE_MAIL,
    REPLY_NO_MEMORY,
    REPLY_SESSION_TOO_LONG,
    REPLY_TOO_MANY_FROM_SOURCE,
)
from ticketmail.smtp.server import ProtocolFactory

ANNA = "anna@schule.example"


class Client:
    """A raw SMTP client over a real socket, from a chosen 127.0.0.0/8 source address."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, source: str = "127.0.0.1") -> Client:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, local_addr=(source, 0), limit=1 << 20
        )
        return cls(reader, writer)

    async def reply(self, seconds: float = 10.0) -> str:
        """The next reply, its lines joined by newlines ("" when the server closed)."""
        lines: list[str] = []
        while True:
            line = (await asyncio.wait_for(self.reader.readline(), seconds)).decode()
            if not line:
                return "\n".join(lines)
            lines.append(line.rstrip("\r\n"))
            if line[3:4] != "-":
                return "\n".join(lines)

    async def command(self, line: str) -> str:
        self.writer.write(line.encode() + b"\r\n")
        await self.writer.drain()
        return await self.reply()

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def greeted(self, helo: str = "EHLO mta.test") -> None:
        """The greeting, then EHLO: both answered."""
        assert (await self.reply()).startswith("220")
        assert (await self.command(helo)).startswith("250")

    async def until_refused(self, line: str, *, times: int) -> str:
        """`line` sent every 0.1 s (at most `times` times) until the reply is not a 250."""
        reply = ""
        for _ in range(times):
            reply = await self.command(line)
            if not reply.startswith("250"):
                break
            await asyncio.sleep(0.1)
        return reply

    async def start_mail(self, *rcpts: str, helo: str = "EHLO mta.test") -> None:
        """Greeting, EHLO, MAIL, RCPT(s), DATA: each answered as expected."""
        await self.greeted(helo)
        assert (await self.command(f"MAIL FROM:<{ANNA}>")).startswith("250")
        for rcpt in rcpts or (SUPPORT,):
            assert (await self.command(f"RCPT TO:<{rcpt}>")).startswith("250")
        assert (await self.command("DATA")).startswith("354")

    async def closed(self, seconds: float = 10.0) -> bool:
        """The server closed the connection (EOF or reset) within `seconds`."""
        try:
            return await asyncio.wait_for(self.reader.read(1 << 16), seconds) == b""
        except ConnectionError:
            return True

    def close(self) -> None:
        self.writer.close()


def wire(message: EmailMessage) -> bytes:
    """The message as DATA carries it: CRLF lines, dot-stuffed (without the end)."""
    raw = message.as_bytes(policy=email.policy.SMTP)
    return b"." + raw[1:] if raw.startswith(b".") else raw.replace(b"\r\n.", b"\r\n..")


def big_mail(size: int, subject: str = "big") -> EmailMessage:
    """Anna's mail with an attachment of about `size` bytes (base64 on the wire)."""
    message = make_mail(ANNA, subject)
    message.add_attachment(os.urandom(size * 3 // 4), maintype="application", subtype="zip",
                           filename="logs.zip")  # fmt: skip
    return message


def envelope_tos(data_dir: Path) -> list[list[str]]:
    """messages.envelope_to of every stored mail, read on a read-only connection."""
    return [json.loads(r[0]) for r in read_rows(data_dir, "SELECT envelope_to FROM messages")]


async def with_anna(factory: Callable[..., Any], **smtp: Any) -> Env:
    """A daemon with these smtp keys (its mail to files), Anna registered with a contract."""
    e: Env = await factory(None, smtp=smtp)
    await e.customer("10042", "Gymnasium Musterstadt")
    await e.user(ANNA, "10042")
    return e


def factory_of(env: Env) -> ProtocolFactory:
    factory = env.daemon.protocol_factory
    assert factory is not None
    return factory


# --- sessions per source ------------------------------------------------------------------------


async def test_idle_sessions_of_one_source_do_not_lock_out_another(env: Env) -> None:
    """100 idle sessions from 127.0.0.1 (defaults: 10 a source): 127.0.0.2's mail gets 250."""
    held = [await Client.connect(env.port) for _ in range(100)]
    try:
        greetings = [await c.reply() for c in held]
        assert sum(g.startswith("220") for g in greetings) == 10
        assert greetings.count(REPLY_TOO_MANY_FROM_SOURCE) == 90
        other = await Client.connect(env.port, "127.0.0.2")
        try:
            await other.start_mail()
            await other.send(wire(make_mail(ANNA, "from elsewhere")) + b".\r\n")
            assert (await other.reply()).startswith("250 2.0.0 Ok: ticket")
        finally:
            other.close()
    finally:
        for c in held:
            c.close()


async def test_per_source_cap_answers_421_logs_the_peer_and_serves_others(
    env_factory: Callable[..., Any],
) -> None:
    """Over smtp.max_sessions_per_ip: 421 4.7.0 with the peer logged; another source is served."""
    e: Env = await env_factory(None, smtp={"max_sessions_per_ip": 3})
    held = [await Client.connect(e.port) for _ in range(3)]
    try:
        assert all(g.startswith("220") for g in [await c.reply() for c in held])
        with capture_logs() as events:
            extra = await Client.connect(e.port)
            assert await extra.reply() == REPLY_TOO_MANY_FROM_SOURCE
            assert await extra.closed()
        port = extra.writer.get_extra_info("sockname")[1]
        extra.close()
        refused = [x for x in events if x["event"] == "session_refused"]
        assert refused == [
            {"event": "session_refused", "reason": "too_many_from_source", "limit": 3,
             "source": "127.0.0.1", "peer": f"127.0.0.1:{port}", "log_level": "warning"}
        ]  # fmt: skip
        other = await Client.connect(e.port, "127.0.0.3")
        assert (await other.reply()).startswith("220")
        other.close()
        held.pop().close()  # a place of 127.0.0.1's is free again

        async def greeted() -> bool:
            again = await Client.connect(e.port)
            try:
                return (await again.reply()).startswith("220")
            finally:
                again.close()

        await eventually(greeted, what="127.0.0.1 greeted again after one of its sessions ended")
    finally:
        for c in held:
            c.close()


@pytest.mark.parametrize(
    ("host", "source"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:1:2:3", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("fe80::1%eth0", "fe80::/64"),
    ],
)
def test_a_source_is_an_ipv4_address_or_an_ipv6_64(host: str, source: str) -> None:
    """Sessions count per IPv4 address and per IPv6 /64 (one host has a whole /64)."""
    assert source_of(host) == source


# --- the session's clocks ---------------------------------------------------------------------


@pytest.mark.parametrize("verb", ["NOOP", "RSET", "EHLO again.test", "HELO again.test"])
async def test_idle_limit_before_mail_is_not_extended(
    env_factory: Callable[..., Any], verb: str
) -> None:
    """Before MAIL, smtp.idle_seconds counts from the start: NOOP, RSET, EHLO do not extend it."""
    e: Env = await env_factory(None, smtp={"idle_seconds": 1.0})
    client = await Client.connect(e.port)
    try:
        started = time.monotonic()
        await client.greeted()
        reply = await client.until_refused(verb, times=40)  # far more often than the limit
        waited = time.monotonic() - started
        assert reply == REPLY_IDLE_BEFORE_MAIL
        assert await client.closed()
        assert 0.9 <= waited <= 2.5
    finally:
        client.close()


async def test_each_mail_delivered_starts_the_idle_limit_anew(
    env_factory: Callable[..., Any],
) -> None:
    """A session that delivers mail is not idle: four mails 0.5 s apart under a 1 s limit."""
    e = await with_anna(env_factory, idle_seconds=1.0)
    client = await Client.connect(e.port)
    try:
        await client.greeted()
        for number in range(4):
            await asyncio.sleep(0.5)
            assert (await client.command(f"MAIL FROM:<{ANNA}>")).startswith("250")
            assert (await client.command(f"RCPT TO:<{SUPPORT}>")).startswith("250")
            assert (await client.command("DATA")).startswith("354")
            await client.send(wire(make_mail(ANNA, f"mail {number}")) + b".\r\n")
            assert (await client.reply()).startswith("250 2.0.0 Ok: ticket")
    finally:
        client.close()


async def test_session_lifetime_ends_a_session(env_factory: Callable[..., Any]) -> None:
    """A session lives at most smtp.session_max_seconds, however busy: then 421 4.4.2."""
    e: Env = await env_factory(None, smtp={"session_max_seconds": 1.5})
    client = await Client.connect(e.port)
    try:
        started = time.monotonic()
        await client.greeted()
        assert (await client.command(f"MAIL FROM:<{ANNA}>")).startswith("250")
        reply = await client.until_refused(f"RCPT TO:<{SUPPORT}>", times=60)
        waited = time.monotonic() - started
        assert reply == REPLY_SESSION_TOO_LONG
        assert await client.closed()
        assert 1.4 <= waited <= 3.5
    finally:
        client.close()


async def test_mail_in_data_at_the_lifetime_finishes_then_the_session_ends(
    env_factory: Callable[..., Any],
) -> None:
    """DATA under way when the lifetime ends may finish: its 250, then 421 and closed."""
    e = await with_anna(env_factory, session_max_seconds=1.0)
    client = await Client.connect(e.port)
    try:
        await client.start_mail()
        data = wire(big_mail(40_000, "over the lifetime"))
        pieces = [data[i : i + 2000] for i in range(0, len(data), 2000)]
        started = time.monotonic()
        for piece in pieces:  # spread over about 2 s, past the 1 s lifetime
            await client.send(piece)
            await asyncio.sleep(2.0 / len(pieces))
        assert time.monotonic() - started > 1.5
        await client.send(b".\r\n")
        assert (await client.reply()).startswith("250 2.0.0 Ok: ticket")
        assert await client.reply() == REPLY_SESSION_TOO_LONG
        assert await client.closed()
    finally:
        client.close()


# --- DATA's pace (RFC 5321 4.5.3.2) -------------------------------------------------------------


async def test_slow_steady_upload_past_the_old_fixed_timeout_gets_250(
    env_factory: Callable[..., Any],
) -> None:
    """2 MB sent steadily over longer than smtp.timeout_seconds (once a fixed cut) gets 250."""
    e = await with_anna(
        env_factory,
        timeout_seconds=4.0,
        data_block_seconds=2.0,
        data_max_seconds=20.0,
        data_min_bytes_per_second=1000,
    )
    data = wire(big_mail(2_000_000, "slow but honest"))
    client = await Client.connect(e.port)
    try:
        await client.start_mail()
        started = time.monotonic()
        step = len(data) // 24 + 1
        for at in range(0, len(data), step):  # 24 pieces, 0.25 s apart: about 6 s
            await client.send(data[at : at + step])
            await asyncio.sleep(0.25)
        await client.send(b".\r\n")
        reply = await client.reply(20)
        assert time.monotonic() - started > 5.0
        assert reply.startswith("250 2.0.0 Ok: ticket"), reply
        assert await client.command("NOOP") == "250 OK"  # and the session goes on
    finally:
        client.close()


async def test_a_drip_during_data_is_ended(env_factory: Callable[..., Any]) -> None:
    """DATA slower than smtp.data_min_bytes_per_second (a byte every 0.2 s) gets 421 4.4.2."""
    e: Env = await env_factory(None, smtp={
        "data_block_seconds": 1.0, "data_min_bytes_per_second": 100,
    })  # fmt: skip
    client = await Client.connect(e.port)
    try:
        await client.start_mail()
        started = time.monotonic()
        with capture_logs() as events:
            answer = asyncio.create_task(client.reply())
            for _ in range(50):  # a byte every 0.2 s: one in every block, far too few
                if answer.done():
                    break
                with contextlib.suppress(ConnectionError):
                    await client.send(b"x")
                await asyncio.sleep(0.2)
            reply = await answer
        waited = time.monotonic() - started
        assert reply == REPLY_DATA_TOO_SLOW
        assert await client.closed()
        assert 0.9 <= waited <= 3.0
        closed = [x for x in events if x["event"] == "session_closed"]
        assert [x["reason"] for x in closed] == ["data_too_slow"]
        assert closed[0]["peer"].startswith("127.0.0.1:")
    finally:
        client.close()


async def test_data_ends_within_its_total_time(env_factory: Callable[..., Any]) -> None:
    """DATA at a fair pace still ends at smtp.data_max_seconds with 421 4.4.2."""
    e: Env = await env_factory(None, smtp={
        "data_block_seconds": 0.5, "data_max_seconds": 1.5, "data_min_bytes_per_second": 100,
    })  # fmt: skip
    client = await Client.connect(e.port)
    try:
        await client.start_mail()
        started = time.monotonic()
        answer = asyncio.create_task(client.reply())
        for _ in range(100):  # 2 KB every 0.1 s: 20 KB/s, well above the minimum
            if answer.done():
                break
            with contextlib.suppress(ConnectionError):
                await client.send(b"y" * 998 + b"\r\n" + b"z" * 998 + b"\r\n")
            await asyncio.sleep(0.1)
        reply = await answer
        waited = time.monotonic() - started
        assert reply == REPLY_DATA_TOO_LONG
        assert await client.closed()
        assert 1.4 <= waited <= 3.0
    finally:
        client.close()


# --- memory -------------------------------------------------------------------------------------


async def test_past_the_memory_budget_mail_and_data_get_452(
    env_factory: Callable[..., Any],
) -> None:
    """Mail held in memory past smtp.memory_budget_bytes: new MAIL and DATA get 452 4.3.1."""
    e: Env = await env_factory(None, smtp={
        "memory_budget_bytes": 1_000_000, "spool_threshold_bytes": 4_000_000,
    })  # fmt: skip
    budget = factory_of(e).budget
    waiting = await Client.connect(e.port, "127.0.0.5")  # has its envelope, then DATA
    hog = await Client.connect(e.port, "127.0.0.6")
    late = await Client.connect(e.port, "127.0.0.7")
    try:
        assert (await waiting.reply()).startswith("220")
        assert (await waiting.command("EHLO a.test")).startswith("250")
        assert (await waiting.command(f"MAIL FROM:<{ANNA}>")).startswith("250")
        assert (await waiting.command(f"RCPT TO:<{SUPPORT}>")).startswith("250")
        await hog.start_mail()
        await hog.send((b"h" * 998 + b"\r\n") * 1200)  # 1.2 MB, in memory, not ended
        await eventually(lambda: budget.exhausted, what="the budget exhausted by 1.2 MB")
        assert (await late.reply()).startswith("220")
        assert (await late.command("EHLO b.test")).startswith("250")
        with capture_logs() as events:
            assert await late.command(f"MAIL FROM:<{ANNA}>") == REPLY_NO_MEMORY
            assert await waiting.command("DATA") == REPLY_NO_MEMORY
        assert [x["verb"] for x in events if x["event"] == "command_refused"] == ["MAIL", "DATA"]
        assert all(x["peer"].startswith("127.0.0.") for x in events)
        hog.close()  # its mail is dropped, its memory given back
        await eventually(lambda: budget.held == 0, what="the hog's memory given back")
        assert (await late.command(f"MAIL FROM:<{ANNA}>")).startswith("250")
    finally:
        for c in (waiting, hog, late):
            c.close()


async def test_received_mails_wait_for_room_in_the_budget(env_factory: Callable[..., Any]) -> None:
    """Mails whose processing does not fit the budget together are processed one by one."""
    e = await with_anna(env_factory, memory_budget_bytes=1_000_000, spool_threshold_bytes=50_000)
    budget = factory_of(e).budget
    data = [wire(big_mail(300_000, f"in turn {i}")) for i in range(3)]
    clients = [await Client.connect(e.port, f"127.0.0.{20 + i}") for i in range(3)]
    try:
        for client, body in zip(clients, data, strict=True):
            await client.start_mail()
            await client.send(body)  # all of it but the end: spooled, nothing held in memory
        answers = [asyncio.create_task(c.reply(30)) for c in clients]
        for client in clients:
            client.writer.write(b".\r\n")
        peak = 0
        while not all(a.done() for a in answers):  # bounded by the replies' timeout
            peak = max(peak, budget.held)
            await asyncio.sleep(0.001)
        assert all(a.result().startswith("250 2.0.0 Ok: ticket") for a in answers)
    finally:
        for client in clients:
            client.close()
    costs = [len(body) * budget.PROCESSING_FACTOR for body in data]
    assert min(costs) <= peak <= max(costs)  # one mail's processing at a time, never two


def _spool_files(spool: Path) -> list[str]:
    """This process's open files under `spool` (unnamed temporary files show as deleted)."""
    found = []
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith(str(spool)):
                found.append(target)
    return found


async def test_a_mail_past_the_threshold_is_spooled_to_disk_and_arrives_whole(
    env_factory: Callable[..., Any],
) -> None:
    """Past smtp.spool_threshold_bytes a mail lies in a file under spool/, not in memory."""
    e = await with_anna(env_factory, spool_threshold_bytes=100_000)
    spool = e.data_dir / "spool"
    message = big_mail(2_000_000, "spooled")
    data = wire(message)
    budget = factory_of(e).budget
    client = await Client.connect(e.port)
    try:
        await client.start_mail()
        await client.send(data[:1_500_000])  # past the reader's 1 MiB buffer
        await eventually(lambda: len(_spool_files(spool)) == 1, what="a file under spool/")
        assert budget.held == 0  # nothing of it held in memory
        await client.send(data[1_500_000:] + b".\r\n")
        assert (await client.reply()).startswith("250 2.0.0 Ok: ticket")
        assert _spool_files(spool) == []
        assert list(spool.iterdir()) == []
    finally:
        client.close()
    raw = message.as_bytes(policy=email.policy.SMTP)
    assert stored_blob(e.data_dir, hashlib.sha256(raw).hexdigest()) == raw


# --- recipients ---------------------------------------------------------------------------------


async def test_duplicate_recipients_are_kept_once(env: Env) -> None:
    """RCPT TO the same address twice (any case): both 250, the envelope names it once."""
    client = await Client.connect(env.port)
    try:
        await client.start_mail(SUPPORT, SUPPORT.upper(), SUPPORT)
        await client.send(wire(make_mail(ANNA, "twice")) + b".\r\n")
        assert (await client.reply()).startswith("250 2.0.0 Ok: ticket")
    finally:
        client.close()
    assert envelope_tos(env.data_dir) == [[SUPPORT]]


async def test_lmtp_answers_each_accepted_rcpt_but_keeps_the_recipient_once(
    env_factory: Callable[..., Any],
) -> None:
    """LMTP: one DATA reply per accepted RCPT (RFC 2033), the envelope names a recipient once."""
    e = await with_anna(env_factory, lmtp=True)
    client = await Client.connect(e.port)
    try:
        await client.start_mail(SUPPORT, SUPPORT.upper(), helo="LHLO mta.test")
        await client.send(wire(make_mail(ANNA, "twice by lmtp")) + b".\r\n")
        first, second = await client.reply(), await client.reply()
        assert first.startswith("250 2.0.0 Ok: ticket")
        assert second == first
    finally:
        client.close()
    assert envelope_tos(e.data_dir) == [[SUPPORT]]


# --- memory of the whole daemon, measured from outside -----------------------------------------

MB = 1_000_000


def rss_bytes(pid: int) -> int:
    """VmRSS of `pid` and of its children (the admission workers), from /proc."""
    pids = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:  # the parent's pid follows the state
                pids.append(int(stat.parent.name))
    total = 0
    for each in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


async def _hold_open(client: Client, size: int) -> None:
    """Start a mail and send `size` bytes of its DATA in 1 MB writes, without the end."""
    await client.start_mail()
    line = b"D" * 998 + b"\r\n"
    piece = line * (MB // len(line))
    for _ in range(size // len(piece)):
        await client.send(piece)


@dataclass
class Served:
    """`ticketmail serve` as a process of its own (with its two admission workers)."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def rss(self) -> int:
        return rss_bytes(self.process.pid)

    async def rss_back_to(self, start: int) -> int:
        """The RSS, once it is back near `start` (within 60 MB; bounded wait)."""
        await eventually(
            lambda: self.rss < start + 60 * MB,
            what=lambda: f"RSS {self.rss / MB:.0f} MB, {start / MB:.0f} MB at the start",
        )
        return self.rss


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    """The daemon as shipped (smtp.workers = 2, every limit at its default), its workers up."""
    port = free_port()
    config = write_config(
        tmp_path / "config.toml", tmp_path / "var", None, smtp={"port": port, "workers": 2}
    )
    environ = own_environ()
    environ.pop("NOTIFY_SOCKET", None)
    daemon = Served(port, spawn_serve(config, tmp_path / "daemon.log", environ=environ))
    try:
        await eventually(lambda: accepts_connections(port), what="the daemon listening")
        await eventually(lambda: daemon.rss > 3 * 20 * MB, what="its workers started")
        yield daemon
    finally:
        daemon.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(daemon.process.wait, 20)
        except subprocess.TimeoutExpired:
            daemon.process.kill()
            await asyncio.to_thread(daemon.process.wait, 10)


async def test_forty_sources_of_24_mb_each_stay_under_500_mb_and_it_is_given_back(
    served: Served,
) -> None:
    """40 sessions holding 24 MB of DATA each: daemon and workers under 500 MB RSS, and after."""
    start = served.rss
    clients = [await Client.connect(served.port, f"127.0.0.{10 + i}") for i in range(40)]
    try:
        peak = start
        sending = asyncio.gather(*(_hold_open(c, 24 * MB) for c in clients))
        while not sending.done():
            peak = max(peak, served.rss)
            await asyncio.wait([sending], timeout=0.1)
        await sending
        await asyncio.sleep(0.5)  # not waiting for an event: the last writes still under way
        peak = max(peak, served.rss)
    finally:
        for c in clients:
            c.close()
    after = await served.rss_back_to(start)
    print(f"RSS MB: start {start / MB:.0f}, peak {peak / MB:.0f}, after {after / MB:.0f}")
    assert peak < 500 * MB


async def test_after_a_large_mail_memory_is_given_back(served: Served) -> None:
    """A 24 MB mail read, parsed (in a worker) and answered: RSS back near the start after."""
    start = served.rss
    client = await Client.connect(served.port)
    try:
        await client.start_mail()
        await client.send(wire(big_mail(24 * MB, "whole")) + b".\r\n")
        peak = start
        answer = asyncio.create_task(client.reply(60))
        while not answer.done():
            peak = max(peak, served.rss)
            await asyncio.wait([answer], timeout=0.05)
        assert (await answer).startswith("550 5.7.1")  # Anna is not registered here
    finally:
        client.close()
    after = await served.rss_back_to(start)
    print(f"RSS MB: start {start / MB:.0f}, peak {peak / MB:.0f}, after {after / MB:.0f}")
    assert peak < 500 * MB


async def test_refusals_log_the_peer(env_factory: Callable[..., Any]) -> None:
    """An unknown recipient, an over-size mail and a too-slow DATA are logged with the peer."""
    e: Env = await env_factory(None, smtp={
        "max_message_bytes": 1000, "data_block_seconds": 0.5, "data_min_bytes_per_second": 10,
    })  # fmt: skip
    client = await Client.connect(e.port, "127.0.0.9")
    try:
        with capture_logs() as events:
            await client.greeted()
            assert (await client.command(f"MAIL FROM:<{ANNA}>")).startswith("250")
            assert (await client.command("RCPT TO:<nobody@stueber.de>")).startswith("550 5.1.1")
            assert (await client.command(f"RCPT TO:<{SUPPORT}>")).startswith("250")
            assert (await client.command("DATA")).startswith("354")
            await client.send(b"x" * 500 + b"\r\n" + b"y" * 998 + b"\r\n.\r\n")
            assert (await client.reply()).startswith("552 5.3.4")
            assert (await client.command(f"MAIL FROM:<{ANNA}>")).startswith("250")
            assert (await client.command(f"RCPT TO:<{SUPPORT}>")).startswith("250")
            assert (await client.command("DATA")).startswith("354")
            assert await client.reply() == REPLY_DATA_TOO_SLOW
    finally:
        client.close()
    said = [(x["event"], x.get("reason"), x["peer"].split(":")[0]) for x in events
            if x["event"] in ("recipient_refused", "mail_refused", "session_closed")]  # fmt: skip
    assert said == [
        ("recipient_refused", None, "127.0.0.9"),
        ("mail_refused", "too_big", "127.0.0.9"),
        ("session_closed", "data_too_slow", "127.0.0.9"),
    ]
