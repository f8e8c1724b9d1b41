"""Every SQL statement of ticketmail: schema, migrations, reads and atomic writes (SQLite, WAL)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import json
import secrets
import sqlite3
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite
import structlog

from ticketmail.errors import NotFoundError, RefusedError, TicketmailError, UsageError
from ticketmail.models import (
    Agent,
    ArticleView,
    AttachmentView,
    Customer,
    HeldEntry,
    OutboxEntry,
    QuarantineEntry,
    TicketRef,
    TicketSummary,
    TicketView,
    User,
)

__all__ = [
    "DB_NAME",
    "ArticleRecord",
    "CustomerRow",
    "MailFacts",
    "MessageRecord",
    "NewTicket",
    "OutboxDue",
    "OutboxRecord",
    "Recorded",
    "Reference",
    "Sender",
    "Store",
    "Thread",
    "Transaction",
    "UserRow",
    "backup_database",
    "iso",
    "read_sender",
]

DB_NAME = "ticketmail.sqlite3"
log = structlog.get_logger()
T = TypeVar("T")
SCHEMA_VERSION = 4
_SAVEPOINT = "ticketmail"
# Group commit: at most this many transactions share one COMMIT (one fsync of the WAL).
MAX_BATCH = 32
# Writes queued meanwhile go in the next trip right after a COMMIT, without waiting for the
# event loop to come round; after this many trips in a row (or as soon as anything else
# waits for the database) the thread is handed back.
DRAIN_TRIPS = 8
# With checkpoints in the background (the daemon): how often one runs while there are new
# commits, and the WAL size (pages) at which a COMMIT checkpoints itself should they lag.
CHECKPOINT_SECONDS = 0.25
BACKSTOP_CHECKPOINT_PAGES = 10_000

# The customer portal (SPEC 8): mail domains that vouch for an institution's users, login
# passwords (Argon2id), registrations, single-use tokens (stored hashed), server-side sessions
# (ids stored hashed), failed logins; the institution's tickets by last activity.
# IF NOT EXISTS: part of the whole schema of a new database and of the migration to 3.
_WEB_SCHEMA = """
CREATE TABLE IF NOT EXISTS customer_domains (
    customer TEXT NOT NULL REFERENCES customers(number),
    domain TEXT NOT NULL,
    PRIMARY KEY (customer, domain)
);
CREATE TABLE IF NOT EXISTS passwords (
    email TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    changed_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS registrations (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL,
    customer TEXT NOT NULL,
    name TEXT NOT NULL,
    lang TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    confirmed_at TEXT,
    decided_at TEXT
);
CREATE INDEX IF NOT EXISTS registrations_email ON registrations(email, status);
CREATE TABLE IF NOT EXISTS web_tokens (
    hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    email TEXT NOT NULL,
    registration INTEGER REFERENCES registrations(id),
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT
);
CREATE INDEX IF NOT EXISTS web_tokens_email ON web_tokens(email, kind);
CREATE TABLE IF NOT EXISTS web_sessions (
    hash TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    created_at TEXT NOT NULL,
    seen_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS web_sessions_email ON web_sessions(email);
CREATE TABLE IF NOT EXISTS login_failures (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL,
    ip TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS login_failures_email ON login_failures(email, at);
CREATE INDEX IF NOT EXISTS login_failures_ip ON login_failures(ip, at);
CREATE TABLE IF NOT EXISTS login_locks (
    email TEXT PRIMARY KEY,
    until TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tickets_customer_updated ON tickets(customer, updated_at);
CREATE INDEX IF NOT EXISTS tickets_requester ON tickets(customer, requester);
CREATE INDEX IF NOT EXISTS attachments_article_id ON attachments(article, id);
"""

# The support desk (SPEC 9): a ticket's owner, an agent's language and notification choice,
# internal notes (articles with direction 'note'), and full-text search over every article
# (FTS5, an external-content index kept in step by triggers; the migration fills it).
_DESK_SCHEMA = """
ALTER TABLE tickets ADD COLUMN owner TEXT;
CREATE INDEX tickets_owner ON tickets(owner, updated_at);
CREATE INDEX tickets_status_updated ON tickets(status, updated_at);
ALTER TABLE agents ADD COLUMN lang TEXT;
ALTER TABLE agents ADD COLUMN notify INTEGER NOT NULL DEFAULT 1;
CREATE VIRTUAL TABLE article_search USING fts5(
    subject, sender, to_json, body_text,
    content='articles', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
);
CREATE TRIGGER articles_search_insert AFTER INSERT ON articles BEGIN
    INSERT INTO article_search(rowid, subject, sender, to_json, body_text)
    VALUES (new.id, new.subject, new.sender, new.to_json, new.body_text);
END;
CREATE TRIGGER articles_search_delete AFTER DELETE ON articles BEGIN
    INSERT INTO article_search(article_search, rowid, subject, sender, to_json, body_text)
    VALUES ('delete', old.id, old.subject, old.sender, old.to_json, old.body_text);
END;
CREATE TRIGGER articles_search_update AFTER UPDATE ON articles BEGIN
    INSERT INTO article_search(article_search, rowid, subject, sender, to_json, body_text)
    VALUES ('delete', old.id, old.subject, old.sender, old.to_json, old.body_text);
    INSERT INTO article_search(rowid, subject, sender, to_json, body_text)
    VALUES (new.id, new.subject, new.sender, new.to_json, new.body_text);
END;
INSERT INTO article_search(article_search) VALUES ('rebuild');
"""

_SCHEMA = (
    """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE customers (
    number TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    support_until TEXT,
    trial_until TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE users (
    email TEXT PRIMARY KEY,
    customer TEXT NOT NULL REFERENCES customers(number),
    name TEXT NOT NULL DEFAULT '',
    lang TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX users_customer ON users(customer);
CREATE TABLE agents (
    email TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE tickets (
    number INTEGER PRIMARY KEY,
    customer TEXT NOT NULL REFERENCES customers(number),
    requester TEXT NOT NULL,
    subject TEXT NOT NULL,
    status TEXT NOT NULL,
    automatic INTEGER NOT NULL DEFAULT 0,
    previous_number INTEGER,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    closed_at TEXT
);
CREATE INDEX tickets_customer ON tickets(customer, status);
CREATE INDEX tickets_updated ON tickets(updated_at);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    received_at TEXT NOT NULL,
    envelope_from TEXT NOT NULL,
    envelope_to TEXT NOT NULL,
    header_from TEXT NOT NULL,
    message_id TEXT NOT NULL,
    raw_sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL,
    ticket INTEGER,
    reply TEXT NOT NULL
);
CREATE UNIQUE INDEX messages_dedup ON messages(message_id, header_from);
CREATE TABLE articles (
    id INTEGER PRIMARY KEY,
    ticket INTEGER NOT NULL REFERENCES tickets(number),
    message INTEGER REFERENCES messages(id),
    direction TEXT NOT NULL,
    automatic INTEGER NOT NULL,
    sender TEXT NOT NULL,
    to_json TEXT NOT NULL,
    cc_json TEXT NOT NULL,
    subject TEXT NOT NULL,
    date TEXT,
    message_id TEXT NOT NULL,
    in_reply_to TEXT NOT NULL,
    references_json TEXT NOT NULL,
    body_text TEXT NOT NULL,
    reply_text TEXT NOT NULL,
    raw_sha256 TEXT,
    note TEXT,
    flags_json TEXT NOT NULL DEFAULT '[]',
    created_at TEXT NOT NULL
);
CREATE INDEX articles_ticket ON articles(ticket);
CREATE INDEX articles_message_id ON articles(message_id);
CREATE TABLE attachments (
    id INTEGER PRIMARY KEY,
    article INTEGER NOT NULL REFERENCES articles(id),
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    content_id TEXT
);
CREATE INDEX attachments_article ON attachments(article);
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    kind TEXT NOT NULL,
    ticket INTEGER,
    recipient TEXT NOT NULL,
    sender TEXT NOT NULL,
    message_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    raw BLOB NOT NULL,
    automatic INTEGER NOT NULL,
    status TEXT NOT NULL,
    queued_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    last_error TEXT NOT NULL DEFAULT '',
    sent_at TEXT
);
CREATE INDEX outbox_due ON outbox(status, next_attempt_at);
CREATE INDEX outbox_message_id ON outbox(message_id);
CREATE INDEX outbox_recipient ON outbox(recipient, automatic, created_at);
CREATE INDEX outbox_ticket ON outbox(ticket, automatic, created_at);
CREATE TABLE suppressions (
    address TEXT PRIMARY KEY,
    until TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE held (
    id INTEGER PRIMARY KEY,
    received_at TEXT NOT NULL,
    envelope_from TEXT NOT NULL,
    envelope_to TEXT NOT NULL,
    sender TEXT NOT NULL,
    raw_sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    reason TEXT NOT NULL,
    status TEXT NOT NULL,
    outcome TEXT NOT NULL DEFAULT '',
    resolved_at TEXT
);
CREATE TABLE quarantine (
    id INTEGER PRIMARY KEY,
    received_at TEXT NOT NULL,
    envelope_from TEXT NOT NULL,
    envelope_to TEXT NOT NULL,
    raw_sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    error TEXT NOT NULL,
    status TEXT NOT NULL,
    outcome TEXT NOT NULL DEFAULT '',
    resolved_at TEXT
);
"""
    + _WEB_SCHEMA
    + _DESK_SCHEMA
)

# What takes a database of version N to N + 1: _MIGRATIONS[N - 1]. A new database gets
# _SCHEMA, which is always the latest version as a whole.
_MIGRATIONS = [
    # 1 -> 2: the auto-reply counts (per address, per ticket) read the index alone.
    """
DROP INDEX outbox_recipient;
CREATE INDEX outbox_recipient ON outbox(recipient, automatic, created_at);
DROP INDEX outbox_ticket;
CREATE INDEX outbox_ticket ON outbox(ticket, automatic, created_at);
""",
    # 2 -> 3: the customer portal's tables.
    _WEB_SCHEMA,
    # 3 -> 4: the support desk: owners, agents' settings, notes, full-text search.
    _DESK_SCHEMA,
]
assert len(_MIGRATIONS) == SCHEMA_VERSION - 1


Params = Sequence[Any] | Mapping[str, Any]  # positional ? or named :name parameters


def iso(moment: datetime) -> str:
    """Timestamps are stored as ISO 8601 UTC strings, which sort like the instants."""
    return moment.isoformat(timespec="seconds")


def iso_precise(moment: datetime) -> str:
    """With microseconds, for retry times under a second; sorts right beside `iso` ones."""
    return moment.isoformat(timespec="microseconds")


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _d(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


@dataclass(frozen=True, slots=True)
class CustomerRow:
    number: str
    name: str
    support_until: date | None = None
    trial_until: date | None = None


@dataclass(frozen=True, slots=True)
class UserRow:
    email: str
    customer: str
    name: str = ""
    lang: str | None = None


@dataclass(frozen=True, slots=True)
class ArticleRecord:
    direction: str
    automatic: bool
    sender: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str
    date: datetime | None
    message_id: str
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    body_text: str
    reply_text: str
    raw_sha256: str | None
    attachments: tuple[AttachmentView, ...]
    note: str | None = None
    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Sender:
    """A mail's sender as the store knows them: user, agent, and automatic mail sent to them."""

    user: User | None
    agent: Agent | None
    recent_auto_replies: int  # automatic mails to the address in the window asked for
    suppressed: bool  # blocked after a permanent bounce


@dataclass(frozen=True, slots=True)
class Thread:
    """The Message-IDs a ticket's mails thread under: its first mail and its latest one."""

    root: str | None
    latest: str | None


@dataclass(frozen=True, slots=True)
class OutboxDue:
    id: int
    queued_at: datetime
    sender: str
    recipient: str
    raw: bytes
    attempts: int


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    kind: str
    ticket: int | None
    recipient: str
    sender: str
    message_id: str
    subject: str
    raw: bytes
    automatic: bool


@dataclass(frozen=True, slots=True)
class Recorded:
    """What `record_mail` wrote: the message's row id and its notice's outbox entry."""

    message: int
    outbox: int | None


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """An accepted mail as the `messages` table keeps it (the raw bytes are a blob)."""

    envelope_from: str
    envelope_to: tuple[str, ...]
    header_from: str
    message_id: str
    raw_sha256: str
    size: int
    outcome: str
    reason: str
    ticket: int | None
    reply: str


@dataclass(frozen=True, slots=True)
class NewTicket:
    number: int
    customer: str
    requester: str
    subject: str
    automatic: bool
    previous_number: int | None


@dataclass(frozen=True, slots=True)
class MailFacts:
    """What the database knows about an incoming mail, read in one trip."""

    previous: tuple[str, int | None] | None  # (reply, ticket) of the same mail accepted before
    sent_by_us: bool  # ticketmail sent a mail with this Message-ID
    sender: Sender | None
    tagged: tuple[TicketRef, ...]  # the tickets the subject tags, in order
    referenced: tuple[TicketRef, ...]  # the tickets In-Reply-To/References name, in order
    next_number: int = 0  # the number a new ticket would get now (0 for a duplicate)


# A reference a mail makes, as intake classified it: ("number", n) names ticket n (a genuine
# ID of ours), ("sent", id) counts only if we sent a mail with that ID, ("any", id) names the
# ticket that holds or sent a mail with that ID.
Reference = tuple[str, int | str]

# The next ticket number: above the last one handed out and above every ticket there is.
_SQL_NEXT_NUMBER = (
    "SELECT MAX(:first, COALESCE((SELECT CAST(value AS INTEGER) FROM meta "
    "WHERE key = 'last_ticket_number'), :first - 1) + 1, "
    "COALESCE((SELECT MAX(number) FROM tickets), 0) + 1)"
)
_SQL_SENDER = (
    "SELECT u.email, u.name, u.lang, c.number, c.name AS cname, c.support_until, "
    "c.trial_until, a.email AS aemail, a.name AS aname, a.created_at AS acreated, "
    "(SELECT COUNT(*) FROM outbox WHERE recipient = :r AND created_at >= :since "
    " AND automatic = 1) AS auto_replies, "
    "EXISTS(SELECT 1 FROM suppressions WHERE address = :r AND until > :now) AS blocked "
    "FROM (SELECT 1) LEFT JOIN users u ON u.email = :a "
    "LEFT JOIN customers c ON c.number = u.customer "
    "LEFT JOIN agents a ON a.email = :a"
)
_SQL_SEEN = (
    "SELECT m.reply, m.ticket, "
    "EXISTS(SELECT 1 FROM outbox WHERE message_id = :m) AS own "
    "FROM (SELECT 1) LEFT JOIN (SELECT reply, ticket FROM messages "
    " WHERE message_id = :m AND header_from = :f LIMIT 1) m"
)
_SQL_TICKET_REF = (
    "SELECT t.number, t.customer, t.status, t.closed_at, t.requester, t.subject, "
    "(SELECT COUNT(*) FROM outbox o WHERE o.ticket = t.number AND o.created_at >= :since "
    " AND o.automatic = 1) AS recent FROM tickets t WHERE t.number = :n"
)
_SQL_TICKET_OF_MESSAGE = (
    "SELECT ticket FROM articles WHERE message_id = :m "
    "UNION ALL SELECT ticket FROM outbox WHERE message_id = :m AND ticket IS NOT NULL "
    "LIMIT 1"
)
_SQL_SENT = "SELECT 1 FROM outbox WHERE message_id = ? LIMIT 1"


def _sender_params(email: str, *, since: datetime, now: datetime) -> dict[str, str]:
    return {"a": email.casefold(), "r": email, "since": iso(since), "now": iso(now)}


def read_sender(conn: sqlite3.Connection, email: str, *, now: datetime) -> Sender:
    """Blocking, on the caller's own connection: a mail's sender as the pre-check needs it
    (registration, agent, suppression; no auto-reply count)."""
    return _sender_of(
        conn.execute(_SQL_SENDER, _sender_params(email, since=now, now=now)).fetchone()
    )


def _user_of(row: sqlite3.Row) -> User:
    """A user from a row of u.email, u.name, u.lang and c.number, c.name AS cname, c.support_until,
    c.trial_until."""
    customer = Customer(
        row["number"], row["cname"], _d(row["support_until"]), _d(row["trial_until"])
    )
    return User(row["email"], row["name"], row["lang"], customer)


def _sender_of(row: sqlite3.Row) -> Sender:
    user = None
    if row["email"] is not None and row["number"] is not None:
        user = _user_of(row)
    agent = (
        Agent(row["aemail"], row["aname"], _dt(row["acreated"]))
        if row["aemail"] is not None
        else None
    )
    return Sender(user, agent, int(row["auto_replies"]), bool(row["blocked"]))


def _seen_of(row: sqlite3.Row) -> tuple[tuple[str, int | None] | None, bool]:
    previous = (str(row["reply"]), row["ticket"]) if row["reply"] is not None else None
    return previous, bool(row["own"])


def _ticket_ref_of(row: sqlite3.Row | None) -> TicketRef | None:
    if row is None:
        return None
    return TicketRef(
        number=row["number"],
        customer=row["customer"],
        status=row["status"],
        closed_at=_dt(row["closed_at"]),
        requester=row["requester"],
        subject=row["subject"],
        recent_auto_replies=row["recent"],
    )


def _insert_ticket(conn: sqlite3.Connection, ticket: NewTicket, *, now: datetime) -> None:
    """The ticket, and its number as the last one handed out (numbers are never reused:
    a number some ticket has fails the INSERT)."""
    conn.execute(
        "INSERT INTO meta(key, value) VALUES ('last_ticket_number', :n) ON CONFLICT(key) "
        "DO UPDATE SET value = excluded.value "
        "WHERE CAST(meta.value AS INTEGER) < CAST(excluded.value AS INTEGER)",
        {"n": str(ticket.number)},
    )
    conn.execute(
        "INSERT INTO tickets(number, customer, requester, subject, status, automatic, "
        "previous_number, created_at, updated_at) VALUES (?, ?, ?, ?, 'new', ?, ?, ?, ?)",
        (
            ticket.number,
            ticket.customer,
            ticket.requester,
            ticket.subject,
            int(ticket.automatic),
            ticket.previous_number,
            iso(now),
            iso(now),
        ),
    )


def _touch_ticket(
    conn: sqlite3.Connection, number: int, *, status: str | None, now: datetime
) -> None:
    if status is None:
        conn.execute("UPDATE tickets SET updated_at = ? WHERE number = ?", (iso(now), number))
        return
    conn.execute(
        "UPDATE tickets SET status = ?, updated_at = ?, "
        "closed_at = CASE WHEN ? = 'closed' THEN ? ELSE NULL END WHERE number = ?",
        (status, iso(now), status, iso(now), number),
    )


def _insert_message(conn: sqlite3.Connection, record: MessageRecord, *, now: datetime) -> int:
    cur = conn.execute(
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
    assert cur.lastrowid is not None
    return cur.lastrowid


def _insert_article(
    conn: sqlite3.Connection,
    ticket: int,
    record: ArticleRecord,
    *,
    message: int | None,
    now: datetime,
) -> int:
    cur = conn.execute(
        "INSERT INTO articles(ticket, message, direction, automatic, sender, to_json, "
        "cc_json, subject, date, message_id, in_reply_to, references_json, body_text, "
        "reply_text, raw_sha256, note, flags_json, created_at) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
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
        ),
    )
    article = cur.lastrowid
    assert article is not None
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


def _insert_outbox(conn: sqlite3.Connection, record: OutboxRecord, *, now: datetime) -> int:
    cur = conn.execute(
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
    assert cur.lastrowid is not None
    return cur.lastrowid


_SQL_THREAD = (
    "SELECT (SELECT message_id FROM articles WHERE ticket = :t AND direction = 'in' "
    " AND message_id != '' ORDER BY id LIMIT 1), "
    "(SELECT message_id FROM articles WHERE ticket = :t AND direction = 'in' "
    " AND automatic = 0 AND message_id != '' ORDER BY id DESC LIMIT 1)"
)


class Step:
    """A write transaction's work on the database thread, for `Store.write`: blocking calls
    on the store's connection, inside the transaction `Store.write` opened for it."""

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def mail_facts(
        self,
        *,
        message_id: str,
        header_from: str,
        numbers: Sequence[int],
        references: Sequence[Reference],
        since: datetime,
        now: datetime,
        first_number: int,
    ) -> MailFacts:
        """The duplicate check, then the sender, the tickets a mail names and the number a
        new ticket would get (`tickets.first_number` at least)."""
        conn = self.conn
        seen = conn.execute(_SQL_SEEN, {"m": message_id, "f": header_from}).fetchone()
        previous, sent_by_us = _seen_of(seen)
        if previous is not None:
            return MailFacts(previous, sent_by_us, None, (), ())
        sender = None
        if header_from:
            params = _sender_params(header_from, since=since, now=now)
            sender = _sender_of(conn.execute(_SQL_SENDER, params).fetchone())

        def ticket(number: int) -> TicketRef | None:
            row = conn.execute(_SQL_TICKET_REF, {"n": number, "since": iso(since)}).fetchone()
            return _ticket_ref_of(row)

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
        (next_number,) = conn.execute(_SQL_NEXT_NUMBER, {"first": first_number}).fetchone()
        return MailFacts(None, sent_by_us, sender, tagged, tuple(referenced), int(next_number))

    def record_mail(
        self,
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

        A new ticket's number is the `next_number` of this transaction's `mail_facts`."""
        conn = self.conn
        if new_ticket is not None:
            _insert_ticket(conn, new_ticket, now=now)
        if touch is not None:
            _touch_ticket(conn, touch[0], status=touch[1], now=now)
        entry = _insert_message(conn, message, now=now)
        if article is not None:
            assert message.ticket is not None
            _insert_article(conn, message.ticket, article, message=entry, now=now)
        outbox = _insert_outbox(conn, notice, now=now) if notice is not None else None
        return Recorded(entry, outbox)

    def thread_of(self, ticket: int) -> Thread:
        """The ticket's first inbound Message-ID and the latest one a person wrote."""
        row = self.conn.execute(_SQL_THREAD, {"t": ticket}).fetchone()
        root, latest = (row[0], row[1]) if row else (None, None)
        return Thread(
            str(root) if root is not None else None,
            str(latest) if latest is not None else None,
        )

    def mark_bounced(self, message_ids: Sequence[str], *, reason: str) -> list[tuple[int, str]]:
        """Mark our sent mails named by a bounce; return their (outbox id, recipient)."""
        found: list[tuple[int, str]] = []
        for mid in message_ids:
            for row in self.conn.execute(
                "SELECT id, recipient FROM outbox WHERE message_id = ?", (mid,)
            ).fetchall():
                found.append((row["id"], row["recipient"]))
                self.conn.execute(
                    "UPDATE outbox SET status = 'bounced', last_error = ? WHERE id = ?",
                    (reason[:500], row["id"]),
                )
        return found

    def suppress(self, address: str, *, until: datetime, reason: str, now: datetime) -> None:
        self.conn.execute(
            "INSERT INTO suppressions(address, until, reason, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(address) DO UPDATE SET until = MAX(until, excluded.until), "
            "reason = excluded.reason",
            (address.casefold(), iso(until), reason[:300], iso(now)),
        )


@dataclass(frozen=True, slots=True)
class _Done:
    """What a write statement left: the new row's id and the number of rows changed."""

    lastrowid: int | None
    rowcount: int


class _Opening:
    """How far a transaction's start got on the database thread: its batch's BEGIN (when it
    opens the batch) and its own SAVEPOINT. Written there, read on the event loop after."""

    __slots__ = ("begin", "begun", "savepoint")

    def __init__(self, *, begin: bool) -> None:
        self.begin = begin  # this transaction opens the batch with BEGIN IMMEDIATE
        self.begun = False  # ... and did
        self.savepoint = False  # its own SAVEPOINT is set: a failure rolls back to it

    def run(self, conn: sqlite3.Connection) -> None:
        if self.begin:
            conn.execute("BEGIN IMMEDIATE")
            self.begun = True
        conn.execute(f"SAVEPOINT {_SAVEPOINT}")
        self.savepoint = True


def _opened_then(
    opening: _Opening, fn: Callable[[sqlite3.Connection], T], conn: sqlite3.Connection
) -> T:
    opening.run(conn)
    return fn(conn)


def _fetchall(sql: str, params: Params, conn: sqlite3.Connection) -> list[sqlite3.Row]:
    return list(conn.execute(sql, params).fetchall())


def _run(sql: str, params: Params, conn: sqlite3.Connection) -> _Done:
    cur = conn.execute(sql, params)
    return _Done(cur.lastrowid, cur.rowcount)


def _undo_member(opening: _Opening, conn: sqlite3.Connection) -> bool:
    """Roll one transaction back to its SAVEPOINT (when it got that far); False when no
    transaction is open any more (SQLite itself rolled the whole batch back)."""
    if opening.savepoint and conn.in_transaction:
        conn.execute(f"ROLLBACK TO {_SAVEPOINT}")
        conn.execute(f"RELEASE {_SAVEPOINT}")
    return conn.in_transaction


def _fail(members: Iterable[asyncio.Future[Any]], exc: BaseException) -> None:
    for future in members:
        if future.done():
            continue
        if isinstance(exc, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(exc)


async def _uninterrupted(aw: Awaitable[T]) -> T:
    """Await `aw` to its end even when the caller is cancelled meanwhile (then re-raised):
    a batch's COMMIT or a ROLLBACK must finish before the lock goes to the next task."""
    task = asyncio.ensure_future(aw)
    interrupted = False
    while not task.done():
        try:
            await asyncio.wait((task,))
        except asyncio.CancelledError:
            interrupted = True
    if interrupted:
        if not task.cancelled():
            task.exception()  # retrieved: it is the cancellation that goes on
        raise asyncio.CancelledError
    return task.result()


@dataclass(frozen=True, slots=True)
class _Job:
    """A transaction queued for `Store.write`: its work, the context it was asked in (log
    fields bound there), and where its result goes."""

    fn: Callable[[sqlite3.Connection], Any]
    context: contextvars.Context
    future: asyncio.Future[Any]
    flush: Callable[[], None] | None  # made durable first: what the job's rows refer to


def _run_jobs(
    jobs: Sequence[_Job], begin: bool, conn: sqlite3.Connection
) -> tuple[list[tuple[bool, Any]], bool]:
    """On the database thread: the jobs' flushes (each once), then each job in a SAVEPOINT
    of its own, then one COMMIT.

    Returns each job's (True, result) or (False, exception), and whether the transaction
    open before was lost (SQLite itself rolled it back after an error, say a full disk).
    """
    flushed: dict[Callable[[], None], OSError | None] = {}
    for flush in {job.flush for job in jobs if job.flush is not None}:
        try:
            flush()
            flushed[flush] = None
        except OSError as exc:
            flushed[flush] = exc
    if begin:
        conn.execute("BEGIN IMMEDIATE")
    outcomes: list[tuple[bool, Any]] = []
    lost = False
    for job in jobs:
        failed = flushed.get(job.flush) if job.flush is not None else None
        if failed is not None:  # what it would refer to is not on disk: it does not run
            outcomes.append((False, failed))
            continue
        conn.execute(f"SAVEPOINT {_SAVEPOINT}")
        try:
            value = job.context.run(job.fn, conn)
        except Exception as exc:
            if conn.in_transaction:
                conn.execute(f"ROLLBACK TO {_SAVEPOINT}")
                conn.execute(f"RELEASE {_SAVEPOINT}")
            else:  # the work of the jobs before went with it
                gone = TicketmailError("the database rolled the transaction back")
                outcomes = [(False, gone)] * len(outcomes)
                lost = True
                conn.execute("BEGIN IMMEDIATE")
            outcomes.append((False, exc))
            continue
        conn.execute(f"RELEASE {_SAVEPOINT}")
        outcomes.append((True, value))
    conn.execute("COMMIT")
    return outcomes, lost


def _commit_or_roll_back(commit: bool, conn: sqlite3.Connection) -> None:
    if commit:
        conn.execute("COMMIT")
    elif conn.in_transaction:
        conn.execute("ROLLBACK")


class Transaction:
    """One transaction on the store's connection; all writes go here.

    Outside `Store.transaction` (the reads of the pre-check) it is a plain reader.
    """

    def __init__(self, db: aiosqlite.Connection, *, opening: _Opening | None = None) -> None:
        self._db = db
        self._opening = opening  # not None: the start still goes with the first statement

    async def call(self, fn: Callable[[sqlite3.Connection], T], /) -> T:
        """`fn(connection)` on aiosqlite's own thread: many statements, one trip there.

        aiosqlite has no public call for this; it is `Connection._execute` with its sqlite3
        connection `_conn` (both in every release since 0.17; pyproject pins below 0.23).
        Each trip waits for the event loop to come round, and a transaction holds the write
        lock meanwhile, so a mail's reads and writes go in one trip each, and the start of a
        transaction opened lazily goes with the first of them.
        """
        run: Callable[[sqlite3.Connection], T] = fn
        if self._opening is not None:
            run = functools.partial(_opened_then, self._opening, fn)
            self._opening = None
        result = await self._db._execute(run, self._db._conn)  # type: ignore[no-untyped-call]
        return cast(T, result)

    async def _one(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        rows = await self._all(sql, params)
        return rows[0] if rows else None

    async def _all(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        return await self.call(functools.partial(_fetchall, sql, params))

    async def _execute(self, sql: str, params: Params = ()) -> _Done:
        return await self.call(functools.partial(_run, sql, params))

    # --- reads used while deciding -------------------------------------------------------

    async def get_user(self, email: str) -> User | None:
        row = await self._one(
            "SELECT u.email, u.name, u.lang, c.number, c.name AS cname, c.support_until, "
            "c.trial_until FROM users u JOIN customers c ON c.number = u.customer "
            "WHERE u.email = ?",
            (email.casefold(),),
        )
        return _user_of(row) if row is not None else None

    async def get_agent(self, email: str) -> Agent | None:
        row = await self._one(
            "SELECT email, name, created_at FROM agents WHERE email = ?", (email.casefold(),)
        )
        return Agent(row["email"], row["name"], _dt(row["created_at"])) if row else None

    async def ticket_ref(self, number: int, *, since: datetime) -> TicketRef | None:
        """What routing and the support team's actions need to know about one ticket."""
        return await self._ticket_ref(number, since=since)

    async def participants(self, ticket: int) -> list[User]:
        """The registered users of a ticket's institution who should hear of it.

        The requester first, then every colleague who has written on it (not automatically),
        in the order they first did. An address no longer registered there hears nothing.
        """
        rows = await self._all(
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
        )
        return [_user_of(r) for r in rows]

    async def thread_of(self, ticket: int) -> Thread:
        """The ticket's first inbound Message-ID and the latest one a person wrote."""
        return await self.call(lambda conn: Step(conn).thread_of(ticket))

    async def tickets_by_number(
        self, numbers: Iterable[int], *, since: datetime
    ) -> list[TicketRef]:
        """Existing tickets among `numbers`, in the order given."""
        found: list[TicketRef] = []
        for number in numbers:
            ref = await self._ticket_ref(number, since=since)
            if ref is not None:
                found.append(ref)
        return found

    async def tickets_by_message_id(
        self, message_ids: Iterable[str], *, since: datetime
    ) -> list[TicketRef]:
        """Tickets that hold an article with, or sent a mail with, one of these Message-IDs."""
        found: list[TicketRef] = []
        for mid in message_ids:
            row = await self._one(_SQL_TICKET_OF_MESSAGE, {"m": mid})
            if row is None:
                continue
            ref = await self._ticket_ref(row[0], since=since)
            if ref is not None and ref not in found:
                found.append(ref)
        return found

    async def _ticket_ref(self, number: int, *, since: datetime) -> TicketRef | None:
        return _ticket_ref_of(await self._one(_SQL_TICKET_REF, {"n": number, "since": iso(since)}))

    async def is_own_message_id(self, message_id: str) -> bool:
        """ticketmail sent a mail with this Message-ID (whatever secret signed it)."""
        return await self._one(_SQL_SENT, (message_id,)) is not None

    async def is_suppressed(self, address: str, *, now: datetime) -> bool:
        """True while an address gets no automatic mail (after a permanent bounce)."""
        row = await self._one(
            "SELECT 1 FROM suppressions WHERE address = ? AND until > ? LIMIT 1",
            (address, iso(now)),
        )
        return row is not None

    async def auto_replies_to(self, recipient: str, *, since: datetime) -> int:
        row = await self._one(
            "SELECT COUNT(*) FROM outbox WHERE recipient = ? AND created_at >= ? AND automatic = 1",
            (recipient, iso(since)),
        )
        return int(row[0]) if row else 0

    async def auto_replies_about(self, ticket: int, *, since: datetime) -> int:
        row = await self._one(
            "SELECT COUNT(*) FROM outbox WHERE ticket = ? AND created_at >= ? AND automatic = 1",
            (ticket, iso(since)),
        )
        return int(row[0]) if row else 0

    # --- writes ----------------------------------------------------------------------------

    async def touch_ticket(self, number: int, *, status: str | None, now: datetime) -> None:
        """Record activity on a ticket, and change its status when `status` is given."""
        await self.call(functools.partial(_touch_ticket, number=number, status=status, now=now))

    async def add_article(
        self, ticket: int, record: ArticleRecord, *, message: int | None, now: datetime
    ) -> int:
        return await self.call(
            functools.partial(
                _insert_article, ticket=ticket, record=record, message=message, now=now
            )
        )

    async def enqueue(self, record: OutboxRecord, *, now: datetime) -> int:
        return await self.call(functools.partial(_insert_outbox, record=record, now=now))

    async def add_quarantine(
        self,
        *,
        envelope_from: str,
        envelope_to: Sequence[str],
        raw_sha256: str,
        size: int,
        error: str,
        now: datetime,
    ) -> int:
        cur = await self._execute(
            "INSERT INTO quarantine(received_at, envelope_from, envelope_to, raw_sha256, size, "
            "error, status) VALUES (?, ?, ?, ?, ?, ?, 'held')",
            (
                iso(now),
                envelope_from,
                json.dumps(list(envelope_to)),
                raw_sha256,
                size,
                error[:2000],
            ),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    async def add_held(
        self,
        *,
        envelope_from: str,
        envelope_to: Sequence[str],
        sender: str,
        raw_sha256: str,
        size: int,
        reason: str,
        now: datetime,
    ) -> int:
        cur = await self._execute(
            "INSERT INTO held(received_at, envelope_from, envelope_to, sender, raw_sha256, "
            "size, reason, status) VALUES (?, ?, ?, ?, ?, ?, ?, 'held')",
            (iso(now), envelope_from, json.dumps(list(envelope_to)), sender, raw_sha256, size,
             reason[:500]),
        )  # fmt: skip
        assert cur.lastrowid is not None
        return cur.lastrowid

    async def resolve_held(self, entry: int, *, status: str, outcome: str,
                           now: datetime) -> None:  # fmt: skip
        await self._execute(
            "UPDATE held SET status = ?, outcome = ?, resolved_at = ? WHERE id = ?",
            (status, outcome, iso(now), entry),
        )

    async def resolve_quarantine(self, entry: int, *, outcome: str, now: datetime) -> None:
        await self._execute(
            "UPDATE quarantine SET status = 'retried', outcome = ?, resolved_at = ? WHERE id = ?",
            (outcome, iso(now), entry),
        )

    async def note_quarantine_error(self, entry: int, error: str) -> None:
        await self._execute("UPDATE quarantine SET error = ? WHERE id = ?", (error[:2000], entry))


async def _connect(path: Path) -> aiosqlite.Connection:
    db = await aiosqlite.connect(path, isolation_level=None)
    db.row_factory = sqlite3.Row
    await db.execute("PRAGMA busy_timeout = 10000")
    await db.execute("PRAGMA journal_mode = WAL")
    return db


class Store:
    """The database of one data directory. Writes are serialised by one lock.

    Group commit: a transaction that ends while others wait for the lock leaves the batch
    open for them (each in a SAVEPOINT of its own, so a failure undoes only its own work);
    the last of a batch, or the MAX_BATCH-th, commits it with one fsync. Leaving
    `transaction()` means committed and on disk, for every transaction of the batch.
    """

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self._db = db
        # Reads that need no transaction's view (the sender pre-check, the outbox worker's
        # polls) go to a second connection, so they do not queue behind the writer's COMMITs;
        # it sees committed data only. `open` connects it once the schema is there.
        self._reader = db
        self.path = path
        self._lock = asyncio.Lock()
        self._wanting = 0  # tasks waiting for the lock
        self._batch_open = False  # BEGIN IMMEDIATE ran, COMMIT not yet
        self._batch: list[asyncio.Future[None]] = []  # ended in the open batch, uncommitted
        self._flushes: set[asyncio.Task[None]] = set()
        # Queued for `write`: appended on the event loop, taken on the database thread.
        self._jobs: deque[_Job] = deque()
        self._writer: asyncio.Task[None] | None = None  # the task that runs them
        self._checkpoints: asyncio.Task[None] | None = None  # see start_checkpoints
        self.commits = 0  # batches committed since open (read by tests and the benchmark)

    @classmethod
    async def open(cls, data_dir: Path) -> Store:
        data_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, at start-up
        path = data_dir / DB_NAME
        db = await _connect(path)
        # FULL: a COMMIT returns only after the WAL is fsync'd; 250 means on disk.
        await db.execute("PRAGMA synchronous = FULL")
        await db.execute("PRAGMA foreign_keys = ON")
        store = cls(db, path)
        await store._migrate()
        reader = await _connect(path)
        await reader.execute("PRAGMA query_only = ON")
        store._reader = reader
        return store

    async def start_checkpoints(self) -> None:
        """Copy the WAL into the database on a connection and thread of their own, every
        CHECKPOINT_SECONDS while there are new commits, instead of inside the COMMIT that
        crosses SQLite's 1,000 pages (which then took several milliseconds, with its
        batch's mails waiting). A checkpoint copies each page once, however often the WAL
        holds it. Should they fall behind, a COMMIT still checkpoints at
        BACKSTOP_CHECKPOINT_PAGES. For the daemon; a CLI command keeps SQLite's default.
        """
        if self._checkpoints is not None:
            return
        await self._db.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_CHECKPOINT_PAGES}")
        conn = await _connect(self.path)
        self._checkpoints = asyncio.create_task(self._checkpoint(conn), name="store-checkpoint")

    async def _checkpoint(self, conn: aiosqlite.Connection) -> None:
        try:
            done = self.commits
            while True:
                await asyncio.sleep(CHECKPOINT_SECONDS)
                if self.commits == done:
                    continue
                done = self.commits
                try:  # PASSIVE: never waits for the writer or a reader, never blocks one
                    await conn.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as exc:  # the next COMMIT or the next round tries again
                    log.warning("checkpoint_failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            await asyncio.shield(conn.close())

    async def close(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpoints
        if self._writer is not None:  # writes queued before the close still go to disk
            with contextlib.suppress(Exception):
                await asyncio.shield(self._writer)
        if self._reader is not self._db:
            await self._reader.close()
        await self._db.close()

    async def _migrate(self) -> None:
        async with self._db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        version = int(row[0]) if row else 0
        if version >= SCHEMA_VERSION:
            return
        async with self.transaction():
            async with self._db.execute("PRAGMA user_version") as cur:
                row = await cur.fetchone()
            if row and int(row[0]) >= SCHEMA_VERSION:
                return
            found = int(row[0]) if row else 0
            steps = [_SCHEMA] if found == 0 else _MIGRATIONS[found - 1 :]
            for script in steps:
                statement = ""
                for piece in script.split(";"):  # a trigger's body holds ';' of its own
                    statement += piece + ";"
                    if sqlite3.complete_statement(statement):
                        if statement.strip(" \n;"):
                            await self._db.execute(statement)
                        statement = ""
            await self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @asynccontextmanager
    async def transaction(self, *, lazy: bool = False) -> AsyncIterator[Transaction]:
        """A transaction: on leaving, committed (fsync'd) together with its batch; on any
        exception or cancellation inside, rolled back alone (the rest of the batch stays).

        `lazy`: the start goes with the first statement (one trip less); only for a block
        that touches the database through the Transaction alone, never through the Store.
        """
        await self._acquire()
        opening = _Opening(begin=not self._batch_open)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            try:
                if not lazy:
                    await self._trip(opening.run)
                yield Transaction(self._db, opening=opening if lazy else None)
            except BaseException:
                await _uninterrupted(self._undo(opening))
                raise
            self._joined(opening, done)
        finally:
            try:
                if self._batch_open and (self._wanting == 0 or len(self._batch) >= MAX_BATCH):
                    await _uninterrupted(self._end_batch())
            finally:
                self._lock.release()
        await done

    async def write(
        self, fn: Callable[[sqlite3.Connection], T], *, flush: Callable[[], None] | None = None
    ) -> T:
        """`fn(connection)` as a transaction of its own, on the database thread; returns its
        result once committed (fsync'd), or raises its exception (its work undone).

        Every write queued while one trip is under way goes in the next trip together, each in
        a SAVEPOINT of its own, and one COMMIT (one fsync) ends them all: no trip back to the
        event loop between a transaction's statements, none between two transactions.
        `fn` runs in the context it was queued in; it must not touch the Store. `flush`
        (say `BlobStore.sync`) runs on the database thread before the trip's transaction,
        once for all the writes that name it; when it raises OSError, those writes do not
        run and raise it.
        """
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.append(_Job(fn, contextvars.copy_context(), future, flush))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_queued(), name="store-writer")
        return await future

    async def _write_queued(self) -> None:
        """Run the queued writes until none is left."""
        try:
            while self._jobs:
                await self._acquire()
                try:
                    await _uninterrupted(self._write_jobs())
                finally:
                    self._lock.release()
        except BaseException as exc:  # cancelled (the loop is closing): nobody is left waiting
            jobs, self._jobs = list(self._jobs), deque()
            _fail([job.future for job in jobs], exc)
            raise
        finally:
            self._writer = None

    async def _write_jobs(self) -> None:
        """Trips of queued writes back to back (see `_drain`), the first committing the
        batch left open for them."""
        members, self._batch = self._batch, []
        begin = not self._batch_open
        self._batch_open = False
        loop = asyncio.get_running_loop()
        try:
            await self._trip(functools.partial(self._drain, loop, begin, members))
        except Exception as exc:  # the thread itself failed: nothing was told
            _fail(members, exc)

    def _take(self) -> list[_Job]:
        """On the database thread: the next queued writes (at most MAX_BATCH) still wanted."""
        jobs: list[_Job] = []
        while len(jobs) < MAX_BATCH:
            try:
                job = self._jobs.popleft()
            except IndexError:
                break
            if not job.future.done():  # its caller may be cancelled meanwhile: told on the loop
                jobs.append(job)
        return jobs

    def _drain(
        self,
        loop: asyncio.AbstractEventLoop,
        begin: bool,
        members: list[asyncio.Future[None]],
        conn: sqlite3.Connection,
    ) -> None:
        """On the database thread: trip after trip of queued writes, each told its outcome on
        the event loop once its COMMIT is done; up to DRAIN_TRIPS, while nothing else waits
        for the database (a transaction for the lock, a read for aiosqlite's thread)."""
        for trip in range(DRAIN_TRIPS):
            if trip and (not self._jobs or self._wanting or not self._db._tx.empty()):
                return
            jobs = self._take()
            if trip and not jobs:
                return
            try:
                outcomes, lost = _run_jobs(jobs, begin, conn)
            except Exception as exc:
                with contextlib.suppress(Exception):
                    _commit_or_roll_back(False, conn)
                loop.call_soon_threadsafe(_fail, [*members, *(job.future for job in jobs)], exc)
                return
            loop.call_soon_threadsafe(self._committed, members, jobs, outcomes, lost)
            begin, members = True, []

    def _committed(
        self,
        members: list[asyncio.Future[None]],
        jobs: list[_Job],
        outcomes: list[tuple[bool, Any]],
        lost: bool,
    ) -> None:
        """On the event loop: one trip's COMMIT is done; tell its writes."""
        if lost:
            _fail(members, TicketmailError("the database rolled the transaction back"))
        self._batch_committed(members)
        for job, (ok, value) in zip(jobs, outcomes, strict=True):
            if job.future.done():  # its caller was cancelled meanwhile
                continue
            if ok:
                job.future.set_result(value)
            else:
                job.future.set_exception(value)

    async def _trip(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        result = await self._db._execute(fn, self._db._conn)  # type: ignore[no-untyped-call]
        return cast(T, result)

    async def _acquire(self) -> None:
        self._wanting += 1
        try:
            await self._lock.acquire()
        except asyncio.CancelledError:
            # The batch may have been left open for this task: someone must commit it.
            if self._batch_open:
                flush = asyncio.create_task(self._flush(), name="store-flush")
                self._flushes.add(flush)
                flush.add_done_callback(self._flushes.discard)
            raise
        finally:
            self._wanting -= 1

    async def _flush(self) -> None:
        await self._acquire()
        try:
            if self._batch_open:
                await _uninterrupted(self._end_batch())
        finally:
            self._lock.release()

    def _joined(self, opening: _Opening, done: asyncio.Future[None]) -> None:
        """A transaction ended well: its work waits in the batch for the COMMIT."""
        if opening.begun:
            self._batch_open = True
        if opening.savepoint:
            self._batch.append(done)
        else:  # it never reached the database: nothing to commit
            done.set_result(None)

    async def _undo(self, opening: _Opening) -> None:
        """A transaction failed: undo its own work; the batch goes on without it."""
        alive = await self._trip(functools.partial(_undo_member, opening))
        if opening.begun:
            self._batch_open = True
        if not alive and self._batch_open:  # SQLite ended the whole batch (disk full, I/O)
            self._batch_open = False
            members, self._batch = self._batch, []
            _fail(members, TicketmailError("the database rolled the transaction back"))

    async def _end_batch(self) -> None:
        """COMMIT the open batch (ROLLBACK when nothing in it was kept) and tell its members."""
        members, self._batch = self._batch, []
        self._batch_open = False
        try:
            await self._trip(functools.partial(_commit_or_roll_back, bool(members)))
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await self._trip(functools.partial(_commit_or_roll_back, False))
            _fail(members, exc)
            raise
        self._batch_committed(members)

    def _batch_committed(self, members: Iterable[asyncio.Future[None]]) -> None:
        """A COMMIT is done: count it, and tell the transactions that ended in its batch."""
        self.commits += 1
        for future in members:
            if not future.done():
                future.set_result(None)

    async def _statement(self, sql: str, params: Params = ()) -> None:
        """One statement as a transaction of its own: atomic, and committed on return."""
        await self.write(functools.partial(_run, sql, params))

    async def _one(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        rows = await self._all(sql, params)
        return rows[0] if rows else None

    async def _read(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        """A read of committed data on the reader connection (never inside a transaction)."""
        return list(await self._reader.execute_fetchall(sql, params))

    async def _all(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        # One trip to the database thread (execute, fetch and close there), not three.
        return list(await self._db.execute_fetchall(sql, params))

    # --- the secret of generated Message-IDs --------------------------------------------------

    async def message_id_secret(self) -> str:
        """The data directory's own signing secret, made at random the first time it is asked.

        Used when TICKETMAIL_SECRET is not set. The daemon and every CLI process share it,
        and `backup` carries it along with the database.
        """
        row = await self._one("SELECT value FROM meta WHERE key = 'message_id_secret'")
        if row is not None:
            return str(row[0])
        async with self.transaction():
            await self._db.execute(
                "INSERT INTO meta(key, value) VALUES ('message_id_secret', ?) "
                "ON CONFLICT(key) DO NOTHING",
                (secrets.token_hex(32),),
            )
        row = await self._one("SELECT value FROM meta WHERE key = 'message_id_secret'")
        assert row is not None
        return str(row[0])

    # --- customers, users and agents ----------------------------------------------------------

    async def get_user(self, email: str) -> User | None:
        """A registered user by address, read outside any write transaction."""
        return await Transaction(self._db).get_user(email)

    async def get_agent(self, email: str) -> Agent | None:
        """An agent by address, read outside any write transaction."""
        return await Transaction(self._db).get_agent(email)

    async def add_agent(self, email: str, name: str, *, now: datetime) -> bool:
        """Add an agent or rename one; True when new. A customer user cannot be an agent."""
        address = email.casefold()
        async with self.transaction():
            if await self._one("SELECT 1 FROM users WHERE email = ?", (address,)):
                raise RefusedError(
                    f"{address} is registered as a customer user; an agent's address "
                    "must not be one (user remove it first)"
                )
            known = await self._one("SELECT 1 FROM agents WHERE email = ?", (address,))
            await self._db.execute(
                "INSERT INTO agents(email, name, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT(email) DO UPDATE SET name = excluded.name",
                (address, name, iso(now)),
            )
        return known is None

    async def remove_agent(self, email: str) -> None:
        async with self.transaction():
            cur = await self._db.execute("DELETE FROM agents WHERE email = ?", (email.casefold(),))
            if cur.rowcount == 0:
                raise NotFoundError(f"agent {email} does not exist")

    async def list_agents(self) -> list[Agent]:
        rows = await self._all("SELECT email, name, created_at FROM agents ORDER BY email")
        return [Agent(r["email"], r["name"], _dt(r["created_at"])) for r in rows]

    async def add_customers(self, rows: Sequence[CustomerRow], *, now: datetime) -> None:
        """Insert or update customers, all or none."""
        async with self.transaction():
            await self._db.executemany(
                "INSERT INTO customers(number, name, support_until, trial_until, created_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(number) DO UPDATE SET name = excluded.name, "
                "support_until = excluded.support_until, trial_until = excluded.trial_until",
                [
                    (
                        r.number,
                        r.name,
                        r.support_until.isoformat() if r.support_until else None,
                        r.trial_until.isoformat() if r.trial_until else None,
                        iso(now),
                    )
                    for r in rows
                ],
            )

    async def list_customers(self) -> list[tuple[Customer, int]]:
        rows = await self._all(
            "SELECT c.*, (SELECT COUNT(*) FROM users u WHERE u.customer = c.number) AS users "
            "FROM customers c ORDER BY c.number"
        )
        return [
            (
                Customer(r["number"], r["name"], _d(r["support_until"]), _d(r["trial_until"])),
                r["users"],
            )
            for r in rows
        ]

    async def add_users(self, rows: Sequence[UserRow], *, now: datetime) -> None:
        """Insert or update users, all or none; every customer must exist."""
        async with self.transaction():
            for line, r in enumerate(rows, start=1):
                known = await self._one("SELECT 1 FROM customers WHERE number = ?", (r.customer,))
                where = f"row {line}: " if len(rows) > 1 else ""
                if known is None:
                    raise UsageError(f"{where}customer {r.customer} does not exist")
                agent = await self._one(
                    "SELECT 1 FROM agents WHERE email = ?", (r.email.casefold(),)
                )
                if agent is not None:
                    raise RefusedError(
                        f"{where}{r.email.casefold()} is an agent's address, not a customer's"
                    )
            await self._db.executemany(
                "INSERT INTO users(email, customer, name, lang, created_at) VALUES (?,?,?,?,?) "
                "ON CONFLICT(email) DO UPDATE SET customer = excluded.customer, "
                "name = excluded.name, lang = excluded.lang",
                [(r.email.casefold(), r.customer, r.name, r.lang, iso(now)) for r in rows],
            )

    async def remove_user(self, email: str) -> None:
        async with self.transaction():
            cur = await self._db.execute("DELETE FROM users WHERE email = ?", (email.casefold(),))
            if cur.rowcount == 0:
                raise NotFoundError(f"user {email} does not exist")

    async def list_users(self, *, customer: str | None = None) -> list[User]:
        sql = (
            "SELECT u.email, u.name, u.lang, c.number, c.name AS cname, c.support_until, "
            "c.trial_until FROM users u JOIN customers c ON c.number = u.customer"
        )
        params: tuple[Any, ...] = ()
        if customer is not None:
            sql += " WHERE u.customer = ?"
            params = (customer,)
        rows = await self._all(sql + " ORDER BY u.customer, u.email", params)
        return [_user_of(r) for r in rows]

    # --- tickets ------------------------------------------------------------------------------

    async def list_tickets(
        self,
        *,
        customer: str | None = None,
        status: str | None = None,
        active_since: date | None = None,
    ) -> list[TicketSummary]:
        """Tickets, newest first; `active_since`: with activity on or after that day (UTC)."""
        sql = (
            "SELECT t.*, c.name AS cname, (SELECT COUNT(*) FROM articles a "
            "WHERE a.ticket = t.number) AS narticles FROM tickets t "
            "JOIN customers c ON c.number = t.customer WHERE 1 = 1"
        )
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
        rows = await self._all(sql + " ORDER BY t.created_at DESC, t.number DESC", params)
        return [self._summary(r) for r in rows]

    @staticmethod
    def _summary(r: sqlite3.Row) -> TicketSummary:
        created = _dt(r["created_at"])
        updated = _dt(r["updated_at"])
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
        )

    async def get_ticket(self, number: int) -> TicketView:
        row = await self._one(
            "SELECT t.*, c.name AS cname, (SELECT COUNT(*) FROM articles a "
            "WHERE a.ticket = t.number) AS narticles FROM tickets t "
            "JOIN customers c ON c.number = t.customer WHERE t.number = ?",
            (number,),
        )
        if row is None:
            raise NotFoundError(f"ticket {number} does not exist")
        articles: list[ArticleView] = []
        for a in await self._all("SELECT * FROM articles WHERE ticket = ? ORDER BY id", (number,)):
            files = await self._all(
                "SELECT * FROM attachments WHERE article = ? ORDER BY id", (a["id"],)
            )
            articles.append(
                ArticleView(
                    id=a["id"],
                    direction=a["direction"],
                    automatic=bool(a["automatic"]),
                    sender=a["sender"],
                    to=tuple(json.loads(a["to_json"])),
                    cc=tuple(json.loads(a["cc_json"])),
                    subject=a["subject"],
                    date=_dt(a["date"]),
                    message_id=a["message_id"],
                    body_text=a["body_text"],
                    reply_text=a["reply_text"],
                    raw_sha256=a["raw_sha256"],
                    note=a["note"],
                    flags=tuple(json.loads(a["flags_json"])),
                    attachments=tuple(
                        AttachmentView(
                            f["filename"],
                            f["content_type"],
                            f["size"],
                            f["sha256"],
                            f["content_id"],
                        )
                        for f in files
                    ),
                )
            )
        return TicketView(self._summary(row), row["previous_number"], tuple(articles))

    async def set_status(self, number: int, status: str, *, now: datetime) -> None:
        """Change a ticket's status (an admin's or agent's action)."""
        async with self.transaction() as tx:
            row = await self._one("SELECT 1 FROM tickets WHERE number = ?", (number,))
            if row is None:
                raise NotFoundError(f"ticket {number} does not exist")
            await tx.touch_ticket(number, status=status, now=now)

    # --- outbox -------------------------------------------------------------------------------

    async def due_outbox(self, *, now: datetime, limit: int = 20) -> list[OutboxDue]:
        rows = await self._read(
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
        rows = await self._read("SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'queued'")
        row = rows[0] if rows else None
        return _dt(row[0]) if row else None

    async def get_outbox(self, entry: int) -> OutboxEntry:
        row = await self._one("SELECT * FROM outbox WHERE id = ?", (entry,))
        if row is None:
            raise NotFoundError(f"outbox entry {entry} does not exist")
        return self._outbox(row)

    async def outbox_sent(self, entry: int, *, now: datetime) -> None:
        await self._statement(
            "UPDATE outbox SET status = 'sent', sent_at = ?, attempts = attempts + 1, "
            "next_attempt_at = NULL, last_error = '' WHERE id = ?",
            (iso(now), entry),
        )

    async def outbox_retry_later(self, entry: int, *, error: str, at: datetime) -> None:
        await self._statement(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? "
            "WHERE id = ?",
            (iso_precise(at), error[:500], entry),
        )

    async def outbox_failed(self, entry: int, *, error: str) -> None:
        await self._statement(
            "UPDATE outbox SET status = 'failed', attempts = attempts + 1, "
            "next_attempt_at = NULL, last_error = ? WHERE id = ?",
            (error[:500], entry),
        )

    async def requeue_outbox(self, entry: int | None, *, now: datetime) -> list[int]:
        """Queue failed or bounced entries again (one, or all when `entry` is None).

        The entry's age for relay.max_age_hours counts from now.
        """
        async with self.transaction():
            if entry is not None:
                row = await self._one("SELECT status FROM outbox WHERE id = ?", (entry,))
                if row is None:
                    raise NotFoundError(f"outbox entry {entry} does not exist")
                if row["status"] not in ("failed", "bounced"):
                    raise RefusedError(f"outbox entry {entry} is {row['status']}, not failed")
                ids = [entry]
            else:
                rows = await self._all(
                    "SELECT id FROM outbox WHERE status IN ('failed', 'bounced') ORDER BY id"
                )
                ids = [r["id"] for r in rows]
            await self._db.executemany(
                "UPDATE outbox SET status = 'queued', queued_at = ?, next_attempt_at = ? "
                "WHERE id = ?",
                [(iso(now), iso(now), i) for i in ids],
            )
        return ids

    async def list_outbox(self) -> list[OutboxEntry]:
        rows = await self._all(
            "SELECT id, created_at, kind, ticket, recipient, sender, message_id, subject, "
            "status, attempts, next_attempt_at, last_error, sent_at FROM outbox ORDER BY id"
        )
        return [self._outbox(r) for r in rows]

    @staticmethod
    def _outbox(r: sqlite3.Row) -> OutboxEntry:
        created = _dt(r["created_at"])
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
            next_attempt_at=_dt(r["next_attempt_at"]),
            last_error=r["last_error"],
            sent_at=_dt(r["sent_at"]),
        )

    # --- held (unverified senders) --------------------------------------------------------------

    async def list_held(self) -> list[HeldEntry]:
        rows = await self._all("SELECT * FROM held ORDER BY id")
        return [self._held(r) for r in rows]

    async def get_held(self, entry: int) -> HeldEntry:
        row = await self._one("SELECT * FROM held WHERE id = ?", (entry,))
        if row is None:
            raise NotFoundError(f"held entry {entry} does not exist")
        return self._held(row)

    @staticmethod
    def _held(r: sqlite3.Row) -> HeldEntry:
        received = _dt(r["received_at"])
        assert received is not None
        return HeldEntry(
            id=r["id"],
            received_at=received,
            envelope_from=r["envelope_from"],
            envelope_to=tuple(json.loads(r["envelope_to"])),
            sender=r["sender"],
            raw_sha256=r["raw_sha256"],
            size=r["size"],
            reason=r["reason"],
            status=r["status"],
            outcome=r["outcome"],
        )

    # --- quarantine ---------------------------------------------------------------------------

    async def list_quarantine(self) -> list[QuarantineEntry]:
        rows = await self._all("SELECT * FROM quarantine ORDER BY id")
        return [self._quarantine(r) for r in rows]

    async def get_quarantine(self, entry: int) -> QuarantineEntry:
        row = await self._one("SELECT * FROM quarantine WHERE id = ?", (entry,))
        if row is None:
            raise NotFoundError(f"quarantine entry {entry} does not exist")
        return self._quarantine(row)

    @staticmethod
    def _quarantine(r: sqlite3.Row) -> QuarantineEntry:
        received = _dt(r["received_at"])
        assert received is not None
        return QuarantineEntry(
            id=r["id"],
            received_at=received,
            envelope_from=r["envelope_from"],
            envelope_to=tuple(json.loads(r["envelope_to"])),
            raw_sha256=r["raw_sha256"],
            size=r["size"],
            error=r["error"],
            status=r["status"],
            outcome=r["outcome"],
        )


def backup_database(source: Path, dest: Path) -> None:
    """A consistent copy of a live database through SQLite's online backup API."""
    src = sqlite3.connect(source, timeout=30)
    try:
        dst = sqlite3.connect(dest)
        try:
            src.backup(dst)
            (result,) = dst.execute("PRAGMA integrity_check").fetchone()
            if result != "ok":
                raise TicketmailError(f"backup of {source} failed its integrity check: {result}")
        finally:
            dst.close()
    finally:
        src.close()
