"""The database gone and back (SPEC 10, issue 25): PostgreSQL stopped under a running daemon.

These tests run on PostgreSQL whatever backend the suite tests: they stop and start the
session's throwaway cluster (tests/pgcluster.py; the next test's `pg_url` starts it again
should one fail while it is stopped), each on a fresh database of its own.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from conftest import Clock, Env, Received, Sink, eventually, make_mail, smtp_send, write_config
from pgcluster import PgCluster
from structlog.testing import capture_logs
from web_support import Client, logged_in

from ticketmail.config import load_config
from ticketmail.daemon import Daemon
from ticketmail.storage.database import READERS, Database
from ticketmail.storage.paths import DatabaseTarget
from ticketmail.storage.readers import open_reader
from ticketmail.web.reader import READER_THREADS

pytestmark = pytest.mark.web  # the daemon serves the portal

ANNA = "anna@schule.example"
UNAVAILABLE_DE = "Der Dienst ist gerade kurz nicht erreichbar"
UNAVAILABLE_EN = "The service is briefly unavailable"
# How long the database may take to be noticed back (reconnect pauses reach 1 s) plus slack.
BACK_SECONDS = 15.0
# A node that knows the database is away answers at once (a session, EHLO and MAIL, loaded).
FAST_SECONDS = 2.0


@pytest.fixture
def cluster(pg_cluster: PgCluster) -> PgCluster:
    """The cluster whose server the test stops and starts."""
    return pg_cluster


@dataclass
class GatedSink(Sink):
    """The real sink; once `hold` is set, the next mail is taken (250) only when the test
    opens `gate`, and the mails after it are answered `then`."""

    hold: bool = False
    held: asyncio.Event = field(default_factory=asyncio.Event)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    then: str | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if not self.hold:
            return await super().handle_DATA(server, session, envelope)
        if self.held.is_set():
            return self.then or await super().handle_DATA(server, session, envelope)
        self.held.set()
        await self.gate.wait()
        content = envelope.original_content or b""
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), content))
        return "250 2.0.0 Ok: queued"


@pytest.fixture
async def sink() -> AsyncIterator[GatedSink]:
    """This module's sink (the daemon's relay): a gated one, open unless a test holds it."""
    s = GatedSink()
    await s.start()
    yield s
    s.gate.set()
    await s.stop()


@pytest.fixture
async def pg_env(
    cluster: PgCluster, pg_url: str, tmp_path: Path, sink: Sink, clock: Clock
) -> AsyncIterator[Env]:
    """A daemon (portal on) on a fresh database of the cluster; one institution with a
    contract and Anna, who may write in."""
    url = pg_url
    path = write_config(
        tmp_path / "config.toml", tmp_path / "var", sink.port,
        storage={"backend": "postgres"}, web={"enabled": True},
    )  # fmt: skip
    (tmp_path / ".env").write_text(f"TICKETMAIL_DATABASE_URL={url}\n", encoding="utf-8")
    config = load_config(path, environ={"TICKETMAIL_DATABASE_URL": url})
    daemon = Daemon(config, clock=clock)
    await daemon.start()
    env = Env(path, config, daemon, clock, sink)
    try:
        await env.customer("10042", "Gymnasium Musterstadt")
        await env.user(ANNA, "10042", name="Anna Müller", lang="de")
        yield env
    finally:
        if not cluster.running:
            await asyncio.to_thread(cluster.start_server)
        await daemon.stop(grace=5)


def _rows(env: Env, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
    """Rows of one query on the test's PostgreSQL database, read-only."""
    conn = open_reader(_target(env))
    try:
        return list(conn.execute(sql, params).fetchall())
    finally:
        conn.close()


def stored(env: Env, message_id: str) -> tuple[int, int]:
    """(rows in messages, rows in articles) carrying `message_id`."""
    [(messages,)] = _rows(env, "SELECT COUNT(*) FROM messages WHERE message_id = ?", (message_id,))
    [(articles,)] = _rows(env, "SELECT COUNT(*) FROM articles WHERE message_id = ?", (message_id,))
    return int(messages), int(articles)


def quarantined(env: Env) -> int:
    [(count,)] = _rows(env, "SELECT COUNT(*) FROM quarantine")
    return int(count)


def _target(env: Env) -> DatabaseTarget:
    return DatabaseTarget("postgres", env.data_dir / "unused", env.config.database.url)


async def mail_from_reply(port: int) -> tuple[int, str]:
    """The reply to MAIL FROM in a fresh session."""
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=20, start_tls=False)
    await client.connect()
    try:
        await client.ehlo()
        response = await client.execute_command(f"MAIL FROM:<{ANNA}>".encode())
        return response.code, response.message
    finally:
        client.close()


async def send(env: Env, message_id: str) -> tuple[int, str]:
    """One mail from Anna with `message_id`: the final reply (MAIL's, RCPT's or DATA's)."""
    mail = make_mail(ANNA, f"Drucker {message_id}", message_id=message_id)
    try:
        return await smtp_send(env.port, mail)
    except aiosmtplib.SMTPResponseException as exc:  # refused at MAIL FROM
        return exc.code, exc.message


async def healthz(client: Client) -> int:
    return (await client.get("/healthz")).status_code


async def test_database_stopped_then_started(pg_env: Env, cluster: PgCluster) -> None:
    """SPEC 10: while the database is down SMTP answers 451 4.3.0 (at MAIL FROM once known),
    /healthz 503, a page 503 'briefly unavailable' in the visitor's language; once it is back
    the same daemon takes mail and serves pages again, and a mail answered 250 before the stop
    is stored exactly once (its MTA retry recognised as a duplicate). The outbox worker says
    once that it waits for the database, not an error at every pass, and then that it
    resumed."""
    env = pg_env
    client = await logged_in(env, ANNA, lang="de")
    english = Client(env, lang="en")
    before = "<before-stop@client.example>"
    assert (await send(env, before))[0] == 250
    assert await healthz(client) == 200

    assert env.daemon.worker is not None
    with capture_logs() as events:
        await asyncio.to_thread(cluster.stop_server, "immediate")
        await down_and_back(env, client, english, cluster, before, events)
        env.daemon.worker.wake()
        await eventually(
            lambda: any(e["event"] == "outbox_worker_resumed" for e in events),
            what="the outbox worker's pass after the start",
        )
    worker = [e["event"] for e in events if e["event"].startswith("outbox_worker")]
    # The outbox worker said once that it waits for the database, and that it resumed.
    assert worker[0] == "outbox_worker_waiting"
    assert worker.count("outbox_worker_waiting") == 1
    assert "outbox_worker_error" not in worker
    assert worker[-1] == "outbox_worker_resumed"
    await client.close()
    await english.close()


async def down_and_back(
    env: Env,
    client: Client,
    english: Client,
    cluster: PgCluster,
    before: str,
    events: list[dict[str, Any]],
) -> None:
    """The database stopped: 451, 503, the page; started: 250 and pages again."""
    worker = env.daemon.worker
    assert worker is not None
    # The first mail finds the database away (451 at DATA or MAIL), never 250.
    code, text = await send(env, "<during-1@client.example>")
    assert (code, "4.3.0" in text) == (451, True), text
    # From then on the node knows: 451 4.3.0 already at MAIL FROM, without waiting.
    asked = time.monotonic()
    code, text = await mail_from_reply(env.port)
    assert time.monotonic() - asked < FAST_SECONDS
    assert (code, "4.3.0" in text) == (451, True), text
    assert await healthz(client) == 503
    worker.wake()  # a pass of the outbox worker now that the node knows
    await eventually(
        lambda: any(e["event"] == "outbox_worker_waiting" for e in events),
        what="the outbox worker waiting for the database",
    )
    page = await client.get("/tickets")
    assert page.status_code == 503, page.text
    assert UNAVAILABLE_DE in page.text
    assert "Traceback" not in page.text
    page = await english.get("/login")
    assert page.status_code in (200, 503)  # the login form needs no database
    page = await english.get("/tickets", headers={"Cookie": "tm_session=x"})
    assert page.status_code == 503
    assert UNAVAILABLE_EN in page.text, page.text
    for _ in range(3):  # more passes while away: said once only
        worker.wake()
        await mail_from_reply(env.port)

    await asyncio.to_thread(cluster.start_server)
    back = time.monotonic()

    async def accepted() -> bool:
        return (await send(env, "<after-start@client.example>"))[0] == 250

    await eventually(accepted, seconds=BACK_SECONDS, every=0.05, what="a 250 after the start")
    print(f"database back to first 250: {time.monotonic() - back:.3f} s")
    assert await healthz(client) == 200
    page = await client.get("/tickets")
    assert page.status_code == 200
    assert "Drucker" in page.text
    # The MTA's retry of the mail answered 250 before the stop: 250 again, stored once.
    code, _ = await send(env, before)
    assert code == 250
    assert stored(env, before) == (1, 1)
    assert stored(env, "<during-1@client.example>") == (0, 0)


def outbox(env: Env) -> list[Any]:
    return _rows(
        env, "SELECT id, status, attempts, claimed_by, lease_until FROM outbox ORDER BY id"
    )


async def test_conclusions_the_database_missed_are_made_good_once_it_is_back(
    pg_env: Env, cluster: PgCluster, sink: GatedSink, clock: Clock
) -> None:
    """The database stops while the outbox worker holds a claim of two: the relay takes the
    first (its mark cannot be written), refuses the second for now (its deferral cannot be
    written). Once the database is back the worker writes both at its next pass, without
    waiting for their leases to run out (the clock stands still here): the first is sent,
    and only once; the second goes out at its retry; no repeat, no lease run out."""
    env = pg_env
    worker = env.daemon.worker
    assert worker is not None
    sink.answer = "451 4.3.0 try again later"  # both confirmations deferred: due together
    for n in range(2):
        assert (await send(env, f"<gated-{n}@client.example>"))[0] == 250
    await eventually(
        lambda: [(r["status"], r["attempts"]) for r in outbox(env)] == [("queued", 1)] * 2,
        what=lambda: f"outbox: {[tuple(r) for r in outbox(env)]}",
    )
    sink.answer, sink.hold, sink.then = None, True, "451 4.3.0 try again later"
    clock.advance(seconds=2)
    with capture_logs() as events:
        worker.wake()
        await asyncio.wait_for(sink.held.wait(), timeout=10)
        claims = outbox(env)
        assert [r["claimed_by"] for r in claims] == [env.config.node_name] * 2, claims
        await asyncio.to_thread(cluster.stop_server, "immediate")
        sink.gate.set()  # the relay takes the first; the second is answered 451
        await eventually(
            lambda: any(e["event"] == "outbox_worker_waiting" for e in events),
            what="the outbox worker waiting for the database",
        )
        sink.then = None
        await asyncio.to_thread(cluster.start_server)

        def concluded() -> bool:
            worker.wake()
            return [(r["status"], r["attempts"]) for r in outbox(env)] == [
                ("sent", 2),
                ("queued", 2),
            ]

        await eventually(
            concluded,
            seconds=BACK_SECONDS,
            what=lambda: f"outbox: {[tuple(r) for r in outbox(env)]}",
        )
        assert all(r["lease_until"] is None for r in outbox(env))
        assert len(sink.received) == 1
        clock.advance(seconds=2)  # the second's retry is due
        worker.wake()
        await sink.wait_for(2)
        await eventually(
            lambda: [r["status"] for r in outbox(env)] == ["sent", "sent"], what="both sent"
        )
    assert len({r.raw for r in sink.received}) == 2
    said = [e["event"] for e in events]
    assert "outbox_owed_concluded" in said
    assert "outbox_lease_expired" not in said


async def test_every_250_stored_once_under_load(pg_env: Env, cluster: PgCluster) -> None:
    """SPEC 10, 4.5: mails sent while the database is stopped (immediate) and started under
    load: every 250 stored exactly once, and every mail answered 451 (a COMMIT cut off
    among them) stored exactly once when its sender tries again."""
    env = pg_env
    replies: dict[str, int] = {}
    stop_at, start_at, total = 15, 45, 90  # mails sent before the stop, before the start, all

    async def sender(ids: list[str]) -> None:
        for message_id in ids:
            replies[message_id] = (await send(env, message_id))[0]

    async def server() -> None:
        await eventually(lambda: len(replies) >= stop_at, seconds=60, what="mails before the stop")
        await asyncio.to_thread(cluster.stop_server, "immediate")
        await eventually(lambda: len(replies) >= start_at, seconds=60, what="mails while down")
        await asyncio.to_thread(cluster.start_server)

    ids = [f"<load-{n}@client.example>" for n in range(total)]
    senders = [sender(ids[w::4]) for w in range(4)]  # four MTAs' connections at a time
    await asyncio.gather(server(), *senders)
    assert set(replies.values()) <= {250, 451}, replies
    assert {250, 451} == set(replies.values()), replies
    counts = {code: list(replies.values()).count(code) for code in (250, 451)}
    print(f"under load: {len(replies)} mails, 250: {counts[250]}, 451: {counts[451]}")
    for message_id, code in replies.items():
        if code == 250:
            assert stored(env, message_id) == (1, 1), message_id
    # The senders try the 451s again (as an MTA does): each ends stored exactly once.
    for message_id, code in sorted(replies.items()):
        if code != 250:
            retried = await eventually(
                lambda m=message_id: _accepted(env, m), seconds=BACK_SECONDS, every=0.05,
                what=f"{message_id} accepted once the database is back",
            )  # fmt: skip
            assert retried
            assert stored(env, message_id) == (1, 1), message_id
    # None was kept a second time in the quarantine (a database error is 451, not "held").
    assert quarantined(env) == 0


async def _accepted(env: Env, message_id: str) -> bool:
    return (await send(env, message_id))[0] == 250


async def test_reader_connection_replaced_after_restart(pg_env: Env, cluster: PgCluster) -> None:
    """SPEC 10: the web's reader connections broken by a restart are replaced: once the node
    is healthy again, every page is served (each reader thread's first read after the
    restart on a broken connection included), none a 503 or a 500."""
    env = pg_env
    client = await logged_in(env, ANNA, lang="de")
    for _ in range(2 * READER_THREADS):  # every reader thread opens its connection
        assert (await client.get("/tickets")).status_code == 200
    await asyncio.to_thread(cluster.stop_server, "fast")
    await asyncio.to_thread(cluster.start_server)

    async def healthy() -> bool:
        return await healthz(client) == 200

    await eventually(healthy, seconds=BACK_SECONDS, every=0.05, what="/healthz 200 again")
    for _ in range(2 * READER_THREADS):
        page = await client.get("/tickets")
        assert page.status_code == 200, page.text
    await client.close()


async def test_reads_queued_for_a_busy_pool_are_not_the_database_gone(
    pg_url: str, tmp_path: Path
) -> None:
    """Many more reads at once than there are pooled reader connections (and threads): each
    waits its turn and is answered; none times out, and the node never takes a busy pool for
    the database being away (20 searches at once made every page 503 and SMTP 451). A read
    cancelled while waiting for a connection gives it back."""
    db = await Database.open(DatabaseTarget("postgres", tmp_path / "unused", pg_url))
    try:
        reads = 4 * (min(32, (os.cpu_count() or 1) + 4))  # more than the default executor's
        rows = await asyncio.wait_for(
            asyncio.gather(*(db.fetchall("SELECT ?, pg_sleep(0.02)", (n,)) for n in range(reads))),
            timeout=BACK_SECONDS * 2,
        )
        assert sorted(r[0][0] for r in rows) == list(range(reads))
        assert db.availability.up
        cut = [asyncio.create_task(db.fetchall("SELECT pg_sleep(0.2)")) for _ in range(8)]
        await asyncio.sleep(0)  # each under way: a place taken, a thread in the pool
        for task in cut:
            task.cancel()
        await asyncio.gather(*cut, return_exceptions=True)
        after = await asyncio.wait_for(
            asyncio.gather(*(db.fetchone("SELECT 1") for _ in range(2 * READERS))), timeout=8
        )
        assert after == [after[0]] * (2 * READERS)
        assert db.availability.up
    finally:
        await db.close()
