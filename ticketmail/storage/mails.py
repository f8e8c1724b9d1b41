"""The intake's SQL: what the database knows of an incoming mail, and recording the mail.

`mail_facts` and `record_mail` run in one job on the writer's connection, so a new
ticket's number read with the facts is the one the record writes. `read_sender` is the
admission's read, on a connection of its own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from ticketmail.models import Agent, TicketRef
from ticketmail.storage._rows import iso, moment, ticket_ref_of, user_of
from ticketmail.storage.dialect import Conn, Row, insert_id, is_postgres
from ticketmail.storage.merge import final_number
from ticketmail.storage.outbox import insert_outbox
from ticketmail.storage.postgres import WRITE_LOCK
from ticketmail.storage.records import (
    ArticleRecord,
    MailFacts,
    MessageRecord,
    NewTicket,
    OutboxRecord,
    Recorded,
    Reference,
    Sender,
)
from ticketmail.storage.tickets import SQL_TICKET_REF, insert_article, insert_ticket, touch_ticket

__all__ = [
    "mail_facts",
    "next_ticket_number",
    "raise_ticket_numbers",
    "read_sender",
    "record_mail",
]

# The next ticket number: above the last one handed out and above every ticket there is.
# (An aggregate MAX over a UNION: both dialects have it, where a scalar MAX is SQLite's alone.)
_SQL_NEXT_NUMBER = (
    "SELECT MAX(n) FROM (SELECT CAST(:first AS INTEGER) AS n "
    "UNION ALL SELECT CAST(value AS INTEGER) + 1 FROM meta WHERE key = 'last_ticket_number' "
    "UNION ALL SELECT MAX(number) + 1 FROM tickets) AS candidates"
)
_SQL_SENDER = (
    "SELECT u.email, u.name, u.lang, c.number, c.name AS cname, c.support_until, "
    "c.trial_until, a.email AS aemail, a.name AS aname, a.created_at AS acreated, "
    "(SELECT COUNT(*) FROM outbox WHERE recipient = :r AND created_at >= :since "
    " AND automatic = 1) AS auto_replies, "
    "EXISTS(SELECT 1 FROM suppressions WHERE address = :r AND until > :now) AS blocked "
    "FROM (SELECT 1 AS one) AS anyone LEFT JOIN users u ON u.email = :a "
    "LEFT JOIN customers c ON c.number = u.customer "
    "LEFT JOIN agents a ON a.email = :a"
)
_SQL_SEEN = (
    "SELECT m.reply, m.ticket, "
    "EXISTS(SELECT 1 FROM outbox WHERE message_id = :m) AS own "
    "FROM (SELECT 1 AS one) AS anyone LEFT JOIN (SELECT reply, ticket FROM messages "
    " WHERE message_id = :m AND header_from = :f LIMIT 1) m ON TRUE"
)
_SQL_TICKET_OF_MESSAGE = (
    "SELECT ticket FROM articles WHERE message_id = :m "
    "UNION ALL SELECT ticket FROM outbox WHERE message_id = :m AND ticket IS NOT NULL "
    "LIMIT 1"
)
_SQL_SENT = "SELECT 1 FROM outbox WHERE message_id = ? LIMIT 1"


def next_ticket_number(conn: Conn, *, first_number: int) -> int:
    """In the job that opens the ticket: the number it gets (`tickets.first_number` at least).

    SQLite: one more than the highest handed out (its one writer runs one job at a time).
    PostgreSQL: the sequence `ticket_numbers`, which nodes take from at the same time
    without waiting (a number of a job rolled back is a gap, never reused). Only while the
    sequence is behind `first_number` (the setting raised, and this process did not
    `raise_ticket_numbers` at its start, as the daemon and the CLI do) the job takes the
    write lock exclusively, so that no other node's job takes a number while it moves the
    sequence up.
    """
    if not is_postgres(conn):
        (number,) = conn.execute(_SQL_NEXT_NUMBER, {"first": first_number}).fetchone()
        return int(number)
    (number,) = conn.execute("SELECT nextval('ticket_numbers')").fetchone()
    if number >= first_number:
        return int(number)
    conn.execute("SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK,))  # alone from here on
    (number,) = conn.execute("SELECT nextval('ticket_numbers')").fetchone()
    if number < first_number:
        conn.execute("SELECT setval('ticket_numbers', ?)", (first_number,))
        number = first_number
    return int(number)


def raise_ticket_numbers(conn: Conn, *, first_number: int) -> None:
    """In a job that runs alone, at a process's start (PostgreSQL): the sequence of ticket
    numbers at `first_number` at least, and past every ticket's number (rows written with
    their numbers, as an import does), so that the nodes' jobs never need to move it (two
    doing so at once would wait for each other). SQLite counts from the rows: nothing."""
    if is_postgres(conn):
        conn.execute(
            "SELECT setval('ticket_numbers', wanted, false) FROM ticket_numbers, "
            "(SELECT GREATEST(:first, (SELECT COALESCE(MAX(number), 0) + 1 FROM tickets)) "
            " AS wanted) AS floor "
            "WHERE CASE WHEN is_called THEN last_value + 1 ELSE last_value END < wanted",
            {"first": first_number},
        )


def _sender_params(email: str, *, since: datetime, now: datetime) -> dict[str, str]:
    return {"a": email.casefold(), "r": email, "since": iso(since), "now": iso(now)}


def _sender_of(row: Row) -> Sender:
    user = user_of(row) if row["email"] is not None and row["number"] is not None else None
    agent = (
        Agent(row["aemail"], row["aname"], moment(row["acreated"]))
        if row["aemail"] is not None
        else None
    )
    return Sender(user, agent, int(row["auto_replies"]), bool(row["blocked"]))


def read_sender(conn: Conn, email: str, *, now: datetime) -> Sender:
    """Blocking, on the caller's own connection: a mail's sender as the pre-check needs it
    (registration, agent, suppression; no auto-reply count)."""
    return _sender_of(
        conn.execute(_SQL_SENDER, _sender_params(email, since=now, now=now)).fetchone()
    )


def mail_facts(
    conn: Conn,
    *,
    message_id: str,
    header_from: str,
    numbers: Sequence[int],
    references: Sequence[Reference],
    since: datetime,
    now: datetime,
) -> MailFacts:
    """The duplicate check, then the sender and the tickets a mail names."""
    seen = conn.execute(_SQL_SEEN, {"m": message_id, "f": header_from}).fetchone()
    previous = (str(seen["reply"]), seen["ticket"]) if seen["reply"] is not None else None
    sent_by_us = bool(seen["own"])
    if previous is not None:
        return MailFacts(previous, sent_by_us, None, (), ())
    sender = None
    if header_from:
        params = _sender_params(header_from, since=since, now=now)
        sender = _sender_of(conn.execute(_SQL_SENDER, params).fetchone())

    def ticket(number: int) -> TicketRef | None:
        """The ticket `number`, or the one it was merged into (SPEC 9.1)."""
        final = final_number(conn, number)
        row = conn.execute(SQL_TICKET_REF, {"n": final, "since": iso(since)}).fetchone()
        return ticket_ref_of(row)

    def ticket_of_message(mid: str) -> TicketRef | None:
        row = conn.execute(_SQL_TICKET_OF_MESSAGE, {"m": mid}).fetchone()
        return ticket(row[0]) if row is not None else None

    tagged = tuple(ref for ref in map(ticket, numbers) if ref is not None)
    referenced: list[TicketRef] = []
    for kind, value in references:
        if kind == "number":
            ref = ticket(int(value))
        elif kind == "sent" and conn.execute(_SQL_SENT, (value,)).fetchone() is None:
            ref = None
        else:
            ref = ticket_of_message(str(value))
        if ref is not None and ref not in referenced:
            referenced.append(ref)
    return MailFacts(None, sent_by_us, sender, tagged, tuple(referenced))


def _insert_message(conn: Conn, record: MessageRecord, *, now: datetime) -> int:
    return insert_id(
        conn,
        "INSERT INTO messages(received_at, envelope_from, envelope_to, header_from, "
        "message_id, raw_sha256, size, outcome, reason, ticket, reply) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (
            iso(now),
            record.envelope_from,
            json.dumps(list(record.envelope_to)),
            record.header_from,
            record.message_id,
            record.raw_sha256,
            record.size,
            record.outcome,
            record.reason,
            record.ticket,
            record.reply,
        ),
    )


def record_mail(
    conn: Conn,
    message: MessageRecord,
    *,
    new_ticket: NewTicket | None = None,
    touch: tuple[int, str | None] | None = None,
    article: ArticleRecord | None = None,
    notice: OutboxRecord | None = None,
    now: datetime,
) -> Recorded:
    """A mail's ticket change (new, or touched with an optional status), its message row,
    its article and the notice queued for it.

    A new ticket's number is one `next_ticket_number` gave this job."""
    if new_ticket is not None:
        insert_ticket(conn, new_ticket, now=now)
    if touch is not None:
        touch_ticket(conn, touch[0], status=touch[1], by=message.header_from, now=now)
    entry = _insert_message(conn, message, now=now)
    if article is not None:
        assert message.ticket is not None
        insert_article(conn, message.ticket, article, message=entry, now=now)
    outbox = insert_outbox(conn, notice, now=now) if notice is not None else None
    return Recorded(entry, outbox)
