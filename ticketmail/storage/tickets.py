"""Tickets and their articles: the SQL for writing them (in jobs) and for reading them."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from ticketmail.errors import NotFoundError
from ticketmail.models import (
    ArticleView,
    AttachmentView,
    HistoryEntry,
    TicketRef,
    TicketSummary,
    TicketView,
    User,
)
from ticketmail.storage._rows import iso, moment, ticket_ref_of, user_of
from ticketmail.storage.database import Database
from ticketmail.storage.dialect import Conn, Row, insert_id, is_postgres
from ticketmail.storage.records import ArticleRecord, NewTicket, Thread

__all__ = [
    "SQL_TICKET_REF",
    "Tickets",
    "history_of",
    "history_row",
    "insert_article",
    "insert_ticket",
    "participants",
    "record_change",
    "set_ticket_status",
    "thread_of",
    "ticket_ref",
    "touch_ticket",
    "version_of",
]

# A ticket as routing and the support team's actions see it, with the automatic mails sent
# about it since :since.
SQL_TICKET_REF = (
    "SELECT t.number, t.customer, t.status, t.closed_at, t.requester, t.subject, "
    "(SELECT COUNT(*) FROM outbox o WHERE o.ticket = t.number AND o.created_at >= :since "
    " AND o.automatic = 1) AS recent FROM tickets t WHERE t.number = :n"
)
_SQL_THREAD = (
    "SELECT (SELECT message_id FROM articles WHERE ticket = :t AND direction = 'in' "
    " AND message_id != '' ORDER BY id LIMIT 1), "
    "(SELECT message_id FROM articles WHERE ticket = :t AND direction = 'in' "
    " AND automatic = 0 AND message_id != '' ORDER BY id DESC LIMIT 1)"
)
_SQL_SUMMARY = (
    "SELECT t.*, c.name AS cname, (SELECT COUNT(*) FROM articles a "
    "WHERE a.ticket = t.number) AS narticles FROM tickets t "
    "JOIN customers c ON c.number = t.customer"
)


# --- in a job, on the writer's connection ------------------------------------------------------


def ticket_ref(conn: Conn, number: int, *, since: datetime) -> TicketRef | None:
    """What routing and the support team's actions need to know about one ticket."""
    return ticket_ref_of(
        conn.execute(SQL_TICKET_REF, {"n": number, "since": iso(since)}).fetchone()
    )


def insert_ticket(conn: Conn, ticket: NewTicket, *, now: datetime) -> None:
    """The ticket, and on SQLite its number as the last one handed out (numbers are never
    reused: a number some ticket has fails the INSERT; PostgreSQL's sequence remembers it
    there, and one row every node's job wrote would make the nodes wait for each other)."""
    if not is_postgres(conn):
        conn.execute(
            "INSERT INTO meta(key, value) VALUES ('last_ticket_number', :n) ON CONFLICT(key) "
            "DO UPDATE SET value = excluded.value "
            "WHERE CAST(meta.value AS INTEGER) < CAST(excluded.value AS INTEGER)",
            {"n": str(ticket.number)},
        )
    conn.execute(
        "INSERT INTO tickets(number, customer, requester, subject, status, automatic, "
        "previous_number, created_at, updated_at, channel) "
        "VALUES (?, ?, ?, ?, 'new', ?, ?, ?, ?, ?)",
        (
            ticket.number,
            ticket.customer,
            ticket.requester,
            ticket.subject,
            int(ticket.automatic),
            ticket.previous_number,
            iso(now),
            iso(now),
            ticket.channel,
        ),
    )


def touch_ticket(conn: Conn, number: int, *, status: str | None, by: str, now: datetime) -> None:
    """Record activity on a ticket, and change its status when `status` is given and
    differs from the one it has (kept in its history as done `by` someone)."""
    old = None
    if status is not None:
        row = conn.execute("SELECT status FROM tickets WHERE number = ?", (number,)).fetchone()
        old = row[0] if row is not None else None
    if status is None or old is None or old == status:
        conn.execute("UPDATE tickets SET updated_at = ? WHERE number = ?", (iso(now), number))
        return
    conn.execute(  # any other status ends a wait (SPEC 9.1): storage/waiting.py sets one
        "UPDATE tickets SET status = ?, updated_at = ?, waiting_until = NULL, "
        "closed_at = CASE WHEN ? = 'closed' THEN ? ELSE NULL END WHERE number = ?",
        (status, iso(now), status, iso(now), number),
    )
    record_change(conn, number, "status", old, status, by=by, now=now)


def _next_version(conn: Conn, number: int) -> int:
    """Raise the ticket's version (every change does, SPEC 9.1); the new one (0: no ticket)."""
    row = conn.execute(
        "UPDATE tickets SET version = version + 1 WHERE number = ? RETURNING version", (number,)
    ).fetchone()
    return int(row[0]) if row is not None else 0


def version_of(conn: Conn, number: int) -> int | None:
    """The ticket's version (None: no such ticket)."""
    row = conn.execute("SELECT version FROM tickets WHERE number = ?", (number,)).fetchone()
    return int(row[0]) if row is not None else None


def record_change(
    conn: Conn,
    number: int,
    what: str,
    old: str | None,
    new: str | None,
    *,
    by: str,
    now: datetime,
) -> None:
    """A change of the ticket's `what` (status, owner, merge, waiting) in its history."""
    version = _next_version(conn, number)
    conn.execute(
        "INSERT INTO ticket_history(ticket, version, what, old, new, actor, at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (number, version, what, old, new, by, iso(now)),
    )


def set_ticket_status(conn: Conn, number: int, status: str, *, by: str, now: datetime) -> None:
    """Change a ticket's status (an admin's or agent's action); NotFoundError if none."""
    if conn.execute("SELECT 1 FROM tickets WHERE number = ?", (number,)).fetchone() is None:
        raise NotFoundError(f"ticket {number} does not exist")
    touch_ticket(conn, number, status=status, by=by, now=now)


def insert_article(
    conn: Conn,
    ticket: int,
    record: ArticleRecord,
    *,
    message: int | None,
    now: datetime,
) -> int:
    """An article on `ticket` with its attachments' rows (a change: the ticket's version
    rises, and the article keeps the new one); its id."""
    version = _next_version(conn, ticket)
    article = insert_id(
        conn,
        "INSERT INTO articles(ticket, message, direction, automatic, sender, to_json, "
        "cc_json, subject, date, message_id, in_reply_to, references_json, body_text, "
        "reply_text, raw_sha256, note, flags_json, created_at, version) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            ticket,
            message,
            record.direction,
            int(record.automatic),
            record.sender,
            json.dumps(list(record.to)),
            json.dumps(list(record.cc)),
            record.subject,
            iso(record.date) if record.date else None,
            record.message_id,
            " ".join(record.in_reply_to),
            json.dumps(list(record.references)),
            record.body_text,
            record.reply_text,
            record.raw_sha256,
            record.note,
            json.dumps(list(record.flags)),
            iso(now),
            version,
        ),
    )
    if record.attachments:
        conn.executemany(
            "INSERT INTO attachments(article, filename, content_type, size, sha256, content_id) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                (article, a.filename, a.content_type, a.size, a.sha256, a.content_id)
                for a in record.attachments
            ],
        )
    return article


_SQL_HISTORY = (
    "SELECT at, actor, what, old, new, version FROM ticket_history WHERE ticket = ? "
    "ORDER BY version"
)


def history_row(r: Row | tuple[Any, ...]) -> HistoryEntry:
    at = moment(r[0])
    assert at is not None
    return HistoryEntry(at, r[1], r[2], r[3], r[4], int(r[5]))


def history_of(conn: Conn, number: int) -> tuple[HistoryEntry, ...]:
    """The ticket's history, oldest first."""
    return tuple(history_row(r) for r in conn.execute(_SQL_HISTORY, (number,)))


def thread_of(conn: Conn, ticket: int) -> Thread:
    """The ticket's first inbound Message-ID and the latest one a person wrote."""
    row = conn.execute(_SQL_THREAD, {"t": ticket}).fetchone()
    root, latest = (row[0], row[1]) if row else (None, None)
    return Thread(
        str(root) if root is not None else None,
        str(latest) if latest is not None else None,
    )


def participants(conn: Conn, ticket: int) -> list[User]:
    """The registered users of a ticket's institution who should hear of it.

    The requester first, then every colleague who has written on it (not automatically),
    in the order they first did. An address no longer registered there hears nothing.
    """
    rows = conn.execute(
        "SELECT u.email, u.name, u.lang, c.number, c.name AS cname, c.support_until, "
        "c.trial_until, (u.email = t.requester) AS is_requester, "
        "(SELECT MIN(a.id) FROM articles a WHERE a.ticket = t.number "
        " AND a.sender = u.email) AS first_article "
        "FROM tickets t JOIN users u ON u.customer = t.customer "
        "JOIN customers c ON c.number = u.customer WHERE t.number = ? AND "
        "(u.email = t.requester OR u.email IN (SELECT a.sender FROM articles a "
        " WHERE a.ticket = t.number AND a.direction = 'in' AND a.automatic = 0)) "
        "ORDER BY is_requester DESC, first_article, u.email",
        (ticket,),
    ).fetchall()
    return [user_of(r) for r in rows]


# --- reads, on the read-only connections ------------------------------------------------------


def _summary(r: Row) -> TicketSummary:
    created = moment(r["created_at"])
    updated = moment(r["updated_at"])
    assert created is not None
    assert updated is not None
    return TicketSummary(
        number=r["number"],
        subject=r["subject"],
        status=r["status"],
        customer=r["customer"],
        customer_name=r["cname"],
        requester=r["requester"],
        created_at=created,
        updated_at=updated,
        articles=r["narticles"],
        merged_into=r["merged_into"],
        waiting_until=moment(r["waiting_until"]),
    )


def _article(a: Row, files: list[Row]) -> ArticleView:
    return ArticleView(
        id=a["id"],
        direction=a["direction"],
        automatic=bool(a["automatic"]),
        sender=a["sender"],
        to=tuple(json.loads(a["to_json"])),
        cc=tuple(json.loads(a["cc_json"])),
        subject=a["subject"],
        date=moment(a["date"]),
        message_id=a["message_id"],
        body_text=a["body_text"],
        reply_text=a["reply_text"],
        raw_sha256=a["raw_sha256"],
        note=a["note"],
        flags=tuple(json.loads(a["flags_json"])),
        attachments=tuple(
            AttachmentView(
                f["filename"], f["content_type"], f["size"], f["sha256"], f["content_id"]
            )
            for f in files
        ),
    )


class Tickets:
    """The Store's ticket reads and the writes that are only a ticket's (see `Store`)."""

    db: Database

    async def list_tickets(
        self,
        *,
        customer: str | None = None,
        status: str | None = None,
        active_since: date | None = None,
    ) -> list[TicketSummary]:
        """Tickets, newest first; `active_since`: with activity on or after that day (UTC)."""
        sql = _SQL_SUMMARY + " WHERE 1 = 1"
        params: list[Any] = []
        if customer is not None:
            sql += " AND t.customer = ?"
            params.append(customer)
        if status is not None:
            sql += " AND t.status = ?"
            params.append(status)
        if active_since is not None:
            sql += " AND t.updated_at >= ?"
            params.append(active_since.isoformat())
        rows = await self.db.fetchall(sql + " ORDER BY t.created_at DESC, t.number DESC", params)
        return [_summary(r) for r in rows]

    async def get_ticket(self, number: int) -> TicketView:
        """A ticket with every article and attachment; NotFoundError if none."""
        async with self.db.reading() as conn:
            found = list(
                await conn.execute_fetchall(_SQL_SUMMARY + " WHERE t.number = ?", (number,))
            )
            if not found:
                raise NotFoundError(f"ticket {number} does not exist")
            articles = await conn.execute_fetchall(
                "SELECT * FROM articles WHERE ticket = ? ORDER BY id", (number,)
            )
            history = await conn.execute_fetchall(_SQL_HISTORY, (number,))
            files = await conn.execute_fetchall(
                "SELECT f.* FROM attachments f JOIN articles a ON a.id = f.article "
                "WHERE a.ticket = ? ORDER BY f.id",
                (number,),
            )
        by_article: dict[int, list[Row]] = {}
        for f in files:
            by_article.setdefault(f["article"], []).append(f)
        row = found[0]
        views = tuple(_article(a, by_article.get(a["id"], [])) for a in articles)
        return TicketView(
            _summary(row), row["previous_number"], views, tuple(history_row(r) for r in history)
        )

    async def set_status(
        self, number: int, status: str, *, by: str = "system", now: datetime
    ) -> None:
        """Change a ticket's status (an admin's or agent's action), telling nobody."""
        await self.db.write(lambda conn: set_ticket_status(conn, number, status, by=by, now=now))
