"""Waking every node's outbox worker (PostgreSQL): NOTIFY when mail is queued, LISTEN for it.

A write job that queues outbox mail marks its connection (`notify_outbox`); once the trip
has committed, the writer sends one `NOTIFY ticketmail_outbox` for all of its jobs
(`send_notices`), in a small transaction of its own that does not wait for the disk
(`synchronous_commit` off): PostgreSQL serialises the commits of notifying transactions
with one lock, which inside the trip would be held through the trip's WAL flush, and
another node's commit would wait for it. A job rolled back to its savepoint takes its mark
with it (`_writer`). Each node's worker LISTENs on a connection of its own and is woken at
once; the worker's own poll (relay.poll_seconds) stays the backstop for a notice missed
(the server gone before the notice was sent, or the listening connection away). On SQLite
(one node) the daemon wakes its own worker in-process, as before; these do nothing there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import psycopg
import structlog

from ticketmail.storage.dialect import Conn
from ticketmail.storage.postgres import CONNECT_TIMEOUT_SECONDS, PgConn

__all__ = [
    "CHANNEL",
    "listen_outbox",
    "notices",
    "notify_outbox",
    "send_notices",
    "take_back_notices",
]

log = structlog.get_logger()

CHANNEL = "ticketmail_outbox"
# Several statements in one round trip (the simple protocol): the notice's own transaction,
# committed without waiting for the WAL's flush (a notice lost in a crash is made up for by
# every worker's wake after it reconnects, and by its poll).
_NOTICE = f"BEGIN; SET LOCAL synchronous_commit TO off; NOTIFY {CHANNEL}; COMMIT".encode()
# After this long without a notice the listening connection is asked `SELECT 1`, so one
# that went away quietly is noticed and opened again.
CHECK_SECONDS = 30.0
# Waits before opening the listening connection again, one after another failure.
RECONNECT_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0)


def notify_outbox(conn: Conn) -> None:
    """In a write job: wake every node's outbox worker once the job's trip has committed."""
    if isinstance(conn, PgConn):
        conn.notices += 1


def notices(conn: Conn) -> int:
    """How many notices the trip's jobs have asked for so far (0 on SQLite)."""
    return conn.notices if isinstance(conn, PgConn) else 0


def take_back_notices(conn: Conn, count: int) -> None:
    """A job rolled back (or the whole trip): its notices, asked after `count`, undone."""
    if isinstance(conn, PgConn):
        conn.notices = count


def send_notices(conn: Conn) -> None:
    """On the writer, after a trip's COMMIT: the one notice its jobs asked for, if any."""
    if isinstance(conn, PgConn) and conn.notices:
        conn.notices = 0
        conn.raw.execute(_NOTICE)


async def listen_outbox(url: str, wake: Callable[[], None]) -> None:
    """Call `wake` at every notice on the outbox's channel, and once after each (re)connect
    (for what was queued while away). Runs until cancelled; a connection lost (the database
    restarted, a failover) is opened again after a short wait, which grows while it fails."""
    failures = 0
    while True:
        try:
            conn = await psycopg.AsyncConnection.connect(
                url,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                application_name="ticketmail-listener",
            )
            async with conn:  # closed on the way out, cancelled or not
                await conn.execute(f"LISTEN {CHANNEL}")
                if failures:
                    log.info("outbox_listen_resumed", failures=failures)
                failures = 0
                wake()
                while True:
                    async for _ in conn.notifies(timeout=CHECK_SECONDS):
                        wake()
                    await conn.execute("SELECT 1")
        except psycopg.Error as exc:
            delay = RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)]
            failures += 1
            log.warning("outbox_listen_lost", error=f"{type(exc).__name__}: {exc}", retry_in=delay)
            await asyncio.sleep(delay)
