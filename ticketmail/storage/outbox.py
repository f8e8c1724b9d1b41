"""What ticketmail sends: the outbox, its delivery marks, bounces, and the suppressed addresses."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ticketmail.errors import NotFoundError, RefusedError
from ticketmail.models import OutboxEntry
from ticketmail.storage._rows import iso, iso_precise, moment
from ticketmail.storage.database import Database
from ticketmail.storage.dialect import Conn, Row, insert_id
from ticketmail.storage.records import OutboxDue, OutboxRecord

__all__ = [
    "Outbox",
    "auto_replies_about",
    "auto_replies_to",
    "insert_outbox",
    "is_suppressed",
    "mark_bounced",
    "requeue",
    "suppress",
]


# --- in a job, on the writer's connection ------------------------------------------------------


def insert_outbox(conn: Conn, record: OutboxRecord, *, now: datetime) -> int:
    """Queue a mail for the outbox worker; its entry's id."""
    return insert_id(
        conn,
        "INSERT INTO outbox(created_at, kind, ticket, recipient, sender, message_id, "
        "subject, raw, automatic, status, queued_at, attempts, next_attempt_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, 0, ?)",
        (
            iso(now),
            record.kind,
            record.ticket,
            record.recipient,
            record.sender,
            record.message_id,
            record.subject,
            record.raw,
            int(record.automatic),
            iso(now),
            iso(now),
        ),
    )


def auto_replies_to(conn: Conn, recipient: str, *, since: datetime) -> int:
    """Automatic mails queued for `recipient` since `since`."""
    (count,) = conn.execute(
        "SELECT COUNT(*) FROM outbox WHERE recipient = ? AND created_at >= ? AND automatic = 1",
        (recipient, iso(since)),
    ).fetchone()
    return int(count)


def auto_replies_about(conn: Conn, ticket: int, *, since: datetime) -> int:
    """Automatic mails queued about `ticket` since `since`."""
    (count,) = conn.execute(
        "SELECT COUNT(*) FROM outbox WHERE ticket = ? AND created_at >= ? AND automatic = 1",
        (ticket, iso(since)),
    ).fetchone()
    return int(count)


def mark_bounced(conn: Conn, message_ids: Sequence[str], *, reason: str) -> list[tuple[int, str]]:
    """Mark our sent mails named by a bounce; return their (outbox id, recipient)."""
    found: list[tuple[int, str]] = []
    for mid in message_ids:
        for row in conn.execute(
            "SELECT id, recipient FROM outbox WHERE message_id = ?", (mid,)
        ).fetchall():
            found.append((row["id"], row["recipient"]))
            conn.execute(
                "UPDATE outbox SET status = 'bounced', last_error = ? WHERE id = ?",
                (reason[:500], row["id"]),
            )
    return found


def suppress(conn: Conn, address: str, *, until: datetime, reason: str, now: datetime) -> None:
    """No automatic mail to `address` until `until` (after a permanent bounce)."""
    conn.execute(
        "INSERT INTO suppressions(address, until, reason, created_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(address) DO UPDATE SET until = CASE WHEN excluded.until > suppressions.until "
        "THEN excluded.until ELSE suppressions.until END, "
        "reason = excluded.reason",
        (address.casefold(), iso(until), reason[:300], iso(now)),
    )


def is_suppressed(conn: Conn, address: str, *, now: datetime) -> bool:
    """True while an address gets no automatic mail (after a permanent bounce)."""
    row = conn.execute(
        "SELECT 1 FROM suppressions WHERE address = ? AND until > ? LIMIT 1", (address, iso(now))
    ).fetchone()
    return row is not None


def _mark_sent(conn: Conn, entry: int, *, now: datetime) -> None:
    conn.execute(
        "UPDATE outbox SET status = 'sent', sent_at = ?, attempts = attempts + 1, "
        "next_attempt_at = NULL, last_error = '' WHERE id = ?",
        (iso(now), entry),
    )


def _retry_later(conn: Conn, entry: int, *, error: str, at: datetime) -> None:
    conn.execute(
        "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? "
        "WHERE id = ?",
        (iso_precise(at), error[:500], entry),
    )


def _mark_failed(conn: Conn, entry: int, *, error: str) -> None:
    conn.execute(
        "UPDATE outbox SET status = 'failed', attempts = attempts + 1, "
        "next_attempt_at = NULL, last_error = ? WHERE id = ?",
        (error[:500], entry),
    )


def requeue(conn: Conn, entry: int | None, *, now: datetime) -> list[int]:
    """Queue failed or bounced entries again (one, or all when `entry` is None).

    The entry's age for relay.max_age_hours counts from now.
    """
    if entry is not None:
        row = conn.execute("SELECT status FROM outbox WHERE id = ?", (entry,)).fetchone()
        if row is None:
            raise NotFoundError(f"outbox entry {entry} does not exist")
        if row["status"] not in ("failed", "bounced"):
            raise RefusedError(f"outbox entry {entry} is {row['status']}, not failed")
        ids = [entry]
    else:
        rows = conn.execute(
            "SELECT id FROM outbox WHERE status IN ('failed', 'bounced') ORDER BY id"
        ).fetchall()
        ids = [r["id"] for r in rows]
    conn.executemany(
        "UPDATE outbox SET status = 'queued', queued_at = ?, next_attempt_at = ? WHERE id = ?",
        [(iso(now), iso(now), i) for i in ids],
    )
    return ids


# --- the Store's part ---------------------------------------------------------------------------


def _entry(r: Row) -> OutboxEntry:
    created = moment(r["created_at"])
    assert created is not None
    return OutboxEntry(
        id=r["id"],
        created_at=created,
        kind=r["kind"],
        ticket=r["ticket"],
        recipient=r["recipient"],
        sender=r["sender"],
        message_id=r["message_id"],
        subject=r["subject"],
        status=r["status"],
        attempts=r["attempts"],
        next_attempt_at=moment(r["next_attempt_at"]),
        last_error=r["last_error"],
        sent_at=moment(r["sent_at"]),
    )


class Outbox:
    """The Store's outbox: the worker's reads and marks, the CLI's list and retry."""

    db: Database

    async def due_outbox(self, *, now: datetime, limit: int = 20) -> list[OutboxDue]:
        rows = await self.db.fetchall(
            "SELECT id, queued_at, sender, recipient, raw, attempts FROM outbox "
            "WHERE status = 'queued' AND next_attempt_at <= ? "
            "ORDER BY next_attempt_at, id LIMIT ?",
            (iso_precise(now), limit),
        )
        return [
            OutboxDue(
                r["id"],
                datetime.fromisoformat(r["queued_at"]),
                r["sender"],
                r["recipient"],
                bytes(r["raw"]),
                r["attempts"],
            )
            for r in rows
        ]

    async def next_outbox_due(self) -> datetime | None:
        row = await self.db.fetchone(
            "SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'queued'"
        )
        return moment(row[0]) if row else None

    async def list_outbox(self) -> list[OutboxEntry]:
        rows = await self.db.fetchall(
            "SELECT id, created_at, kind, ticket, recipient, sender, message_id, subject, "
            "status, attempts, next_attempt_at, last_error, sent_at FROM outbox ORDER BY id"
        )
        return [_entry(r) for r in rows]

    async def outbox_sent(self, entry: int, *, now: datetime) -> None:
        await self.db.write(lambda conn: _mark_sent(conn, entry, now=now))

    async def outbox_retry_later(self, entry: int, *, error: str, at: datetime) -> None:
        await self.db.write(lambda conn: _retry_later(conn, entry, error=error, at=at))

    async def outbox_failed(self, entry: int, *, error: str) -> None:
        await self.db.write(lambda conn: _mark_failed(conn, entry, error=error))

    async def requeue_outbox(self, entry: int | None, *, now: datetime) -> list[int]:
        """Queue failed or bounced entries again (one, or all when `entry` is None)."""
        return await self.db.write(lambda conn: requeue(conn, entry, now=now))
