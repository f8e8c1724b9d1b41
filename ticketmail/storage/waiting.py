"""Waiting until a time (SPEC 9.1): the SQL that sets a ticket waiting, finds the waits that
are due, and ends one. Plain functions on the writer's connection, inside a write job.

A wait ends three ways: the scheduler at its time (`end_due_wait`, by 'system'), a
customer's message, or any other status an agent sets (both through `touch_ticket`, which
clears `waiting_until` with every change of status).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ticketmail.storage._rows import iso, moment
from ticketmail.storage.database import Database
from ticketmail.storage.dialect import Conn, is_postgres
from ticketmail.storage.tickets import record_change

__all__ = ["DueWait", "any_wait_due", "due_waits", "end_due_wait", "set_waiting"]

# Waits one scheduler pass ends at most (the next pass takes the rest).
DUE_BATCH = 200


@dataclass(frozen=True, slots=True)
class DueWait:
    ticket: int
    until: datetime
    version: int  # the ticket's version when it was found due


def set_waiting(conn: Conn, number: int, until: datetime, *, by: str, now: datetime) -> bool:
    """Ticket `number` waits until `until` (kept in its history as done `by` someone: the
    status when it was not waiting, and the time); False when nothing changed (it waits
    until that time already)."""
    row = conn.execute(
        "SELECT status, waiting_until FROM tickets WHERE number = ?", (number,)
    ).fetchone()
    if row is None:
        return False
    old_status, old_until = row[0], row[1]
    new_until = iso(until)
    if old_status == "waiting" and old_until == new_until:
        return False
    conn.execute(
        "UPDATE tickets SET status = 'waiting', waiting_until = ?, updated_at = ?, "
        "closed_at = NULL WHERE number = ?",
        (new_until, iso(now), number),
    )
    if old_status != "waiting":
        record_change(conn, number, "status", old_status, "waiting", by=by, now=now)
        old_until = None
    record_change(conn, number, "waiting", old_until, new_until, by=by, now=now)
    return True


_SQL_DUE = (
    "SELECT number, waiting_until, version FROM tickets "
    "WHERE status = 'waiting' AND waiting_until <= ? ORDER BY waiting_until LIMIT ?"
)


async def any_wait_due(db: Database, *, now: datetime) -> bool:
    """Whether any ticket's wait is due: a read before the job, so that a scheduler pass
    with nothing to do (every node's, every few seconds) writes nothing."""
    row = await db.fetchone(
        "SELECT 1 FROM tickets WHERE status = 'waiting' AND waiting_until <= ? LIMIT 1",
        (iso(now),),
    )
    return row is not None


def due_waits(conn: Conn, *, now: datetime) -> tuple[DueWait, ...]:
    """The waiting tickets whose time has come, the longest due first (on PostgreSQL those
    no other node's job is ending now: the job runs alongside theirs)."""
    sql = _SQL_DUE + " FOR UPDATE SKIP LOCKED" if is_postgres(conn) else _SQL_DUE
    rows = conn.execute(sql, (iso(now), DUE_BATCH)).fetchall()
    found: list[DueWait] = []
    for r in rows:
        until = moment(r[1])
        assert until is not None
        found.append(DueWait(int(r[0]), until, int(r[2])))
    return tuple(found)


def end_due_wait(conn: Conn, wait: DueWait, *, now: datetime) -> bool:
    """The ticket is open again, by 'system' in its history, if it still waits, its time has
    come and nothing changed since it was found (its version): of several nodes (or passes)
    ending it, exactly one does. Whether this call did."""
    cur = conn.execute(
        "UPDATE tickets SET status = 'open', waiting_until = NULL, updated_at = ? "
        "WHERE number = ? AND status = 'waiting' AND waiting_until <= ? AND version = ?",
        (iso(now), wait.ticket, iso(now), wait.version),
    )
    if cur.rowcount != 1:
        return False
    record_change(conn, wait.ticket, "status", "waiting", "open", by="system", now=now)
    return True
