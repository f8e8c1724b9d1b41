"""What ticketmail sends: the outbox, its delivery marks, bounces, and the suppressed addresses."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from ticketmail.errors import NotFoundError, RefusedError
from ticketmail.models import OutboxEntry
from ticketmail.storage._rows import iso, iso_precise, moment
from ticketmail.storage.database import Database
from ticketmail.storage.dialect import ALONGSIDE, Conn, Row, insert_id, is_postgres
from ticketmail.storage.records import OutboxDue, OutboxRecord
from ticketmail.storage.wakeups import listen_outbox, notify_outbox

__all__ = [
    "CLAIM_BATCH",
    "Outbox",
    "auto_replies_about",
    "auto_replies_to",
    "claim_due",
    "insert_outbox",
    "is_suppressed",
    "mark_bounced",
    "requeue",
    "suppress",
]


# --- in a job, on the writer's connection ------------------------------------------------------


# How many due entries one claim takes: few, so that should this node die, the last of
# them waits no more than a few leases for another node (see `claim_due`).
CLAIM_BATCH = 5


def insert_outbox(conn: Conn, record: OutboxRecord, *, now: datetime) -> int:
    """Queue a mail for the outbox worker (every node's is woken at the commit); its id."""
    notify_outbox(conn)
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


@dataclass(frozen=True, slots=True)
class _Claim:
    """A claimed entry, as the claim's write job returns it (the mail itself read after)."""

    id: int
    queued_at: str
    sender: str
    recipient: str
    attempts: int
    lease_until: datetime
    taken_from: str | None


# An entry a node may claim now (`claim_due`).
_DUE = (
    "status = 'queued' AND next_attempt_at <= :now AND (lease_until IS NULL OR lease_until <= :now)"
)


def claim_due(
    conn: Conn, *, node: str, now: datetime, lease: timedelta, limit: int = CLAIM_BATCH
) -> list[_Claim]:
    """Claim up to `limit` due entries for `node`, the k-th (from 0) until now + (k + 1) *
    `lease`: each may wait for the sends before it. Due: queued, its time come, under no
    lease, or under one that ran out (its node died mid-send: `taken_from` names it).

    PostgreSQL locks the rows it takes and skips those another transaction holds, so two
    nodes claim at the same time, neither waiting for the other, and never one entry twice
    (the outbox's jobs run alongside other nodes' jobs, `Database.write`). SQLite has one
    writer: the job is the lock.
    """
    lock = " FOR UPDATE SKIP LOCKED" if is_postgres(conn) else ""
    rows = conn.execute(
        "SELECT id, queued_at, sender, recipient, attempts, claimed_by, lease_until "
        "FROM outbox WHERE " + _DUE + " ORDER BY next_attempt_at, id LIMIT :limit" + lock,
        {"now": iso_precise(now), "limit": limit},
    ).fetchall()
    claims = [
        _Claim(
            r["id"],
            r["queued_at"],
            r["sender"],
            r["recipient"],
            r["attempts"],
            now + lease * (k + 1),
            r["claimed_by"] if r["lease_until"] is not None else None,
        )
        for k, r in enumerate(rows)
    ]
    if claims:
        conn.executemany(
            "UPDATE outbox SET claimed_by = ?, lease_until = ? WHERE id = ?",
            [(node, iso_precise(c.lease_until), c.id) for c in claims],
        )
    return claims


def _ours(entry: OutboxDue) -> tuple[int, str, str]:
    """The claim, for `WHERE id = ? AND claimed_by = ? AND lease_until = ?`: a conclusion
    (deferred, failed) or a release holds only while it does; should its lease have run out
    and another node have claimed the entry, that claim stands."""
    return entry.id, entry.claimed_by, iso_precise(entry.lease_until)


def _mark_sent(conn: Conn, entry: int, *, now: datetime) -> None:
    conn.execute(
        "UPDATE outbox SET status = 'sent', sent_at = ?, attempts = attempts + 1, "
        "next_attempt_at = NULL, last_error = '', lease_until = NULL WHERE id = ?",
        (iso(now), entry),
    )


def _retry_later(conn: Conn, entry: OutboxDue, *, error: str, at: datetime) -> bool:
    return (
        conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?, "
            "lease_until = NULL WHERE id = ? AND claimed_by = ? AND lease_until = ?",
            (iso_precise(at), error[:500], *_ours(entry)),
        ).rowcount
        > 0
    )


def _mark_failed(conn: Conn, entry: OutboxDue, *, error: str) -> bool:
    return (
        conn.execute(
            "UPDATE outbox SET status = 'failed', attempts = attempts + 1, "
            "next_attempt_at = NULL, last_error = ?, lease_until = NULL "
            "WHERE id = ? AND claimed_by = ? AND lease_until = ?",
            (error[:500], *_ours(entry)),
        ).rowcount
        > 0
    )


def _release(conn: Conn, entries: Sequence[OutboxDue]) -> int:
    """Give claimed entries back unattempted (due at once, for any node: no repeat)."""
    released = sum(
        conn.execute(
            "UPDATE outbox SET lease_until = NULL WHERE id = ? AND claimed_by = ? "
            "AND lease_until = ?",
            _ours(e),
        ).rowcount
        for e in entries
    )
    if released:
        notify_outbox(conn)
    return released


def _expire_claims_of(conn: Conn, node: str, *, now: datetime) -> int:
    """End the leases `node` holds (it starts: none of its sends is under way any more)."""
    return conn.execute(
        "UPDATE outbox SET lease_until = ? "
        "WHERE status = 'queued' AND claimed_by = ? AND lease_until > ?",
        (iso_precise(now), node, iso_precise(now)),
    ).rowcount


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
    if ids:
        notify_outbox(conn)
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

    async def claim_outbox(
        self, *, node: str, now: datetime, lease: timedelta, limit: int = CLAIM_BATCH
    ) -> list[OutboxDue]:
        """Claim due entries for `node` (see `claim_due`), with their mails. Looked for
        with a read first: a worker woken with nothing due (another node's notice, its
        poll) writes nothing."""
        sql = "SELECT 1 FROM outbox WHERE " + _DUE + " LIMIT 1"  # noqa: S608 - fixed fragments
        due = await self.db.fetchone(sql, {"now": iso_precise(now)})
        if due is None:
            return []
        claims = await self.db.write(
            lambda conn: claim_due(conn, node=node, now=now, lease=lease, limit=limit),
            alongside=ALONGSIDE,
        )
        if not claims:
            return []
        marks = ", ".join("?" * len(claims))
        rows = await self.db.fetchall(
            f"SELECT id, raw FROM outbox WHERE id IN ({marks})",  # noqa: S608 - only ?s
            [c.id for c in claims],
        )
        raws = {r["id"]: bytes(r["raw"]) for r in rows}
        return [
            OutboxDue(
                c.id,
                datetime.fromisoformat(c.queued_at),
                c.sender,
                c.recipient,
                raws[c.id],
                c.attempts,
                node,
                c.lease_until,
                c.taken_from,
            )
            for c in claims
        ]

    async def next_outbox_due(self) -> datetime | None:
        """When the next queued entry is due: its next attempt, or its lease's end."""
        row = await self.db.fetchone(
            "SELECT MIN(CASE WHEN lease_until > next_attempt_at THEN lease_until "
            "ELSE next_attempt_at END) FROM outbox WHERE status = 'queued'"
        )
        return moment(row[0]) if row else None

    async def release_outbox(self, entries: Sequence[OutboxDue]) -> int:
        """Give claimed entries back unattempted; how many were still this claim's."""
        return await self.db.write(lambda conn: _release(conn, entries), alongside=ALONGSIDE)

    async def expire_outbox_claims(self, node: str, *, now: datetime) -> int:
        """A node starting: the leases it held before end now (see `_expire_claims_of`)."""
        return await self.db.write(
            lambda conn: _expire_claims_of(conn, node, now=now), alongside=ALONGSIDE
        )

    async def listen_outbox(self, wake: Callable[[], None]) -> None:
        """Call `wake` whenever any node queues outbox mail (PostgreSQL; until cancelled).
        On SQLite it returns at once: the daemon wakes its own worker."""
        if self.db.target.postgres:
            await listen_outbox(self.db.target.url, wake)

    async def list_outbox(self) -> list[OutboxEntry]:
        rows = await self.db.fetchall(
            "SELECT id, created_at, kind, ticket, recipient, sender, message_id, subject, "
            "status, attempts, next_attempt_at, last_error, sent_at FROM outbox ORDER BY id"
        )
        return [_entry(r) for r in rows]

    async def outbox_sent(self, entry: int, *, now: datetime) -> None:
        await self.db.write(lambda conn: _mark_sent(conn, entry, now=now), alongside=ALONGSIDE)

    async def outbox_retry_later(self, entry: OutboxDue, *, error: str, at: datetime) -> bool:
        """Defer a claimed entry; False when its claim had run out and another's stands."""
        return await self.db.write(
            lambda conn: _retry_later(conn, entry, error=error, at=at), alongside=ALONGSIDE
        )

    async def outbox_failed(self, entry: OutboxDue, *, error: str) -> bool:
        """Fail a claimed entry; False when its claim had run out and another's stands."""
        return await self.db.write(
            lambda conn: _mark_failed(conn, entry, error=error), alongside=ALONGSIDE
        )

    async def requeue_outbox(self, entry: int | None, *, now: datetime) -> list[int]:
        """Queue failed or bounced entries again (one, or all when `entry` is None)."""
        return await self.db.write(lambda conn: requeue(conn, entry, now=now))
