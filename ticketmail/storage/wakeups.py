"""Waking every node's outbox worker (PostgreSQL): NOTIFY when mail is queued, LISTEN for it.

A write job that queues outbox mail says `NOTIFY ticketmail_outbox` inside its transaction,
so the notice goes out when, and only if, the transaction commits (a job rolled back to its
savepoint takes its notice with it). Each node's worker LISTENs on a connection of its own
and is woken at once; the worker's own poll (relay.poll_seconds) stays the backstop for a
notice missed while that connection was away. On SQLite (one node) the daemon wakes its own
worker in-process, as before; these do nothing there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import psycopg
import structlog

from ticketmail.storage.dialect import Conn, is_postgres
from ticketmail.storage.postgres import CONNECT_TIMEOUT_SECONDS

__all__ = ["CHANNEL", "listen_outbox", "notify_outbox"]

log = structlog.get_logger()

CHANNEL = "ticketmail_outbox"
# After this long without a notice the listening connection is asked `SELECT 1`, so one
# that went away quietly is noticed and opened again.
CHECK_SECONDS = 30.0
# Waits before opening the listening connection again, one after another failure.
RECONNECT_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0)


def notify_outbox(conn: Conn) -> None:
    """In a write job: wake every node's outbox worker once the job's transaction commits."""
    if is_postgres(conn):
        conn.execute(f"NOTIFY {CHANNEL}")


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
