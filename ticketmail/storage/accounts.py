"""Every SQL statement of the customer portal: accounts, registrations, tokens, sessions,
institutions' mail domains, and the tickets a customer may see (login limits: `logins`).

Plain functions on a `Conn`: the writes run inside `Store.write(fn)` (their own
transaction, on the database thread), the reads on any connection (the portal's readers).
Tokens and session ids arrive hashed; passwords arrive as Argon2id hashes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from ticketmail.errors import NotFoundError, RefusedError
from ticketmail.models import Customer
from ticketmail.storage._rows import iso
from ticketmail.storage.dialect import Conn, Row, insert_id
from ticketmail.storage.logins import lift_locks
from ticketmail.storage.mails import next_ticket_number
from ticketmail.storage.outbox import insert_outbox
from ticketmail.storage.portal_list import WebTicket, _web_ticket
from ticketmail.storage.records import ArticleRecord, NewTicket, OutboxRecord
from ticketmail.storage.tickets import insert_article, insert_ticket, ticket_ref, touch_ticket

__all__ = [
    "Identity",
    "LoginRecord",
    "Registration",
    "Token",
    "WebArticle",
    "WebAttachment",
    "WebTicket",
    "WebTicketPage",
    "account_exists",
    "add_registration",
    "approve_registration",
    "attachment_of",
    "auto_mail_state",
    "confirm_registration",
    "create_session",
    "customer_of",
    "domains_of",
    "end_session",
    "end_sessions",
    "enqueue",
    "identity_of",
    "is_pending",
    "issue_token",
    "login_record",
    "next_ticket_number",
    "open_web_ticket",
    "peek_token",
    "registration_of",
    "reject_registration",
    "session_email",
    "set_domains",
    "set_password",
    "set_ticket_status",
    "take_token",
    "ticket_page",
    "ticket_ref",
    "touch_session",
    "update_account",
    "web_article",
]

# Articles a customer sees (written in every query below as it stands here): written by a
# person (a.automatic = 0), to or from the customer (a.direction IN ('in', 'out')).


@dataclass(frozen=True, slots=True)
class Registration:
    id: int
    email: str
    customer: str
    name: str
    lang: str
    password_hash: str
    status: str  # unconfirmed, pending, approved, rejected, superseded
    phone: str = ""


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # confirm, reset
    email: str
    registration: int | None


@dataclass(frozen=True, slots=True)
class LoginRecord:
    email: str
    password_hash: str
    pending: bool


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a session belongs to: an active user of an institution, or a pending account."""

    email: str
    name: str
    lang: str | None
    customer: Customer
    pending: bool
    phone: str = ""


@dataclass(frozen=True, slots=True)
class WebAttachment:
    id: int
    filename: str
    content_type: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class WebArticle:
    id: int
    direction: str
    sender: str
    author_name: str
    at: datetime
    body_text: str
    reply_text: str
    note: str | None
    attachments: tuple[WebAttachment, ...]


@dataclass(frozen=True, slots=True)
class WebTicketPage:
    ticket: WebTicket
    previous_number: int | None
    articles: tuple[WebArticle, ...]
    channel: str = "mail"  # mail, web, phone, other (SPEC 9.1)


def _dt(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _customer(row: Row) -> Customer:
    def day(value: str | None) -> date | None:
        return date.fromisoformat(value) if value else None

    return Customer(row["number"], row["cname"], day(row["support_until"]), day(row["trial_until"]))


# --- institutions ---------------------------------------------------------------------------


def customer_of(conn: Conn, number: str) -> Customer | None:
    row = conn.execute(
        "SELECT number, name AS cname, support_until, trial_until FROM customers WHERE number = ?",
        (number,),
    ).fetchone()
    return _customer(row) if row is not None else None


def set_domains(conn: Conn, customer: str, domains: Sequence[str]) -> None:
    """Replace the mail domains whose users an institution vouches for."""
    if customer_of(conn, customer) is None:
        raise NotFoundError(f"customer {customer} does not exist")
    conn.execute("DELETE FROM customer_domains WHERE customer = ?", (customer,))
    conn.executemany(
        "INSERT INTO customer_domains(customer, domain) VALUES (?, ?) ON CONFLICT DO NOTHING",
        [(customer, d.casefold()) for d in domains],
    )


def domains_of(conn: Conn, customer: str) -> tuple[str, ...]:
    rows = conn.execute(
        "SELECT domain FROM customer_domains WHERE customer = ? ORDER BY domain", (customer,)
    ).fetchall()
    return tuple(r[0] for r in rows)


# --- registrations and tokens ---------------------------------------------------------------


def _registration(row: Row) -> Registration:
    return Registration(
        row["id"], row["email"], row["customer"], row["name"], row["lang"],
        row["password_hash"], row["status"], row["phone"],
    )  # fmt: skip


def account_exists(conn: Conn, email: str) -> tuple[str, str | None] | None:
    """(name, lang) when the address has an account (a user, an agent, a pending one)."""
    row = conn.execute(
        "SELECT name, lang FROM users WHERE email = :e UNION ALL "
        "SELECT name, NULL FROM agents WHERE email = :e UNION ALL "
        "SELECT name, lang FROM registrations WHERE email = :e AND status = 'pending' LIMIT 1",
        {"e": email},
    ).fetchone()
    return (row["name"], row["lang"]) if row is not None else None


def add_registration(
    conn: Conn,
    *,
    email: str,
    customer: str,
    name: str,
    lang: str,
    password_hash: str,
    now: datetime,
    phone: str = "",
) -> int:
    """A new unconfirmed registration. Older unconfirmed ones of the address stay valid
    (a stranger's registration must not void the owner's): each has its own link and
    password, and the first confirmed makes the others void."""
    return insert_id(
        conn,
        "INSERT INTO registrations(email, customer, name, lang, password_hash, status, "
        "created_at, phone) VALUES (?, ?, ?, ?, ?, 'unconfirmed', ?, ?)",
        (email, customer, name, lang, password_hash, iso(now), phone),
    )


def issue_token(
    conn: Conn,
    token_hash: str,
    *,
    kind: str,
    email: str,
    registration: int | None,
    now: datetime,
    expires: datetime,
) -> None:
    """A single-use token. The address's other tokens stay valid: a request nobody logged in
    made never voids a link already mailed (using one, or a new password, voids them)."""
    conn.execute("DELETE FROM web_tokens WHERE expires_at < ?", (iso(now - timedelta(days=1)),))
    conn.execute(
        "INSERT INTO web_tokens(hash, kind, email, registration, created_at, expires_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (token_hash, kind, email, registration, iso(now), iso(expires)),
    )


def peek_token(conn: Conn, token_hash: str, *, kind: str, now: datetime) -> Token | None:
    """The token when it is valid (unused, not expired); nothing changes."""
    row = conn.execute(
        "SELECT kind, email, registration FROM web_tokens WHERE hash = ? AND kind = ? "
        "AND used_at IS NULL AND expires_at > ?",
        (token_hash, kind, iso(now)),
    ).fetchone()
    return Token(row["kind"], row["email"], row["registration"]) if row is not None else None


def take_token(conn: Conn, token_hash: str, *, kind: str, now: datetime) -> Token | None:
    """The token when valid, used up by this call; a reset link used voids the address's
    other reset links."""
    token = peek_token(conn, token_hash, kind=kind, now=now)
    if token is not None:
        conn.execute("UPDATE web_tokens SET used_at = ? WHERE hash = ?", (iso(now), token_hash))
        if kind == "reset":
            _void_resets(conn, token.email)
    return token


def _void_resets(conn: Conn, email: str) -> None:
    conn.execute(
        "DELETE FROM web_tokens WHERE email = ? AND kind = 'reset' AND used_at IS NULL", (email,)
    )


def registration_of(conn: Conn, registration: int) -> Registration | None:
    """An unconfirmed registration whose address has no account yet, else None (a
    confirmation never changes an existing account)."""
    row = conn.execute(
        "SELECT * FROM registrations WHERE id = ? AND status = 'unconfirmed'", (registration,)
    ).fetchone()
    if row is None or account_exists(conn, row["email"]) is not None:
        return None
    return _registration(row)


def _activate(conn: Conn, reg: Registration, *, now: datetime) -> None:
    """The registration becomes a user of its institution, with its password; a user of
    the address made meanwhile (`user add`) keeps their own password."""
    if conn.execute("SELECT 1 FROM agents WHERE email = ?", (reg.email,)).fetchone():
        raise RefusedError(f"{reg.email} is an agent's address, not a customer's")
    cur = conn.execute(
        "INSERT INTO users(email, customer, name, lang, phone, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(email) DO NOTHING",
        (reg.email, reg.customer, reg.name, reg.lang, reg.phone, iso(now)),
    )
    if cur.rowcount:
        conn.execute(
            "INSERT INTO passwords(email, hash, changed_at) VALUES (?, ?, ?) ON CONFLICT(email) "
            "DO UPDATE SET hash = excluded.hash, changed_at = excluded.changed_at",
            (reg.email, reg.password_hash, iso(now)),
        )
    conn.execute(
        "UPDATE registrations SET status = 'approved', decided_at = ? WHERE id = ?",
        (iso(now), reg.id),
    )


def confirm_registration(conn: Conn, registration: int, *, now: datetime) -> str:
    """A confirmed registration: 'active' when its domain vouches for it, else 'pending'
    until an agent approves it; 'void' when it was decided meanwhile or its address has
    become an account (a user, an agent, a pending one): then nothing changes. The
    address's other unconfirmed registrations are void from now on."""
    reg = registration_of(conn, registration)
    if reg is None:
        return "void"
    conn.execute(
        "UPDATE registrations SET status = 'superseded', decided_at = ? "
        "WHERE email = ? AND status = 'unconfirmed' AND id != ?",
        (iso(now), reg.email, reg.id),
    )
    conn.execute(
        "UPDATE registrations SET confirmed_at = ?, status = 'pending' WHERE id = ?",
        (iso(now), reg.id),
    )
    domain = reg.email.rpartition("@")[2].casefold()
    vouched = conn.execute(
        "SELECT 1 FROM customer_domains WHERE customer = ? AND domain = ?",
        (reg.customer, domain),
    ).fetchone()
    if vouched is not None:
        _activate(conn, reg, now=now)
        return "active"
    return "pending"


def _pending(conn: Conn, email: str) -> Registration | None:
    row = conn.execute(
        "SELECT * FROM registrations WHERE email = ? AND status = 'pending' "
        "ORDER BY id DESC LIMIT 1",
        (email,),
    ).fetchone()
    return _registration(row) if row is not None else None


def is_pending(conn: Conn, email: str) -> bool:
    """The address has a confirmed account waiting for an agent's approval."""
    return _pending(conn, email) is not None


def approve_registration(conn: Conn, email: str, *, now: datetime) -> Registration:
    reg = _pending(conn, email)
    if reg is None:
        raise NotFoundError(f"no pending registration for {email}")
    _activate(conn, reg, now=now)
    return reg


def reject_registration(conn: Conn, email: str, *, now: datetime) -> Registration:
    reg = _pending(conn, email)
    if reg is None:
        raise NotFoundError(f"no pending registration for {email}")
    conn.execute(
        "UPDATE registrations SET status = 'rejected', decided_at = ? WHERE id = ?",
        (iso(now), reg.id),
    )
    conn.execute("DELETE FROM web_sessions WHERE email = ?", (email,))
    return reg


# --- passwords, logins, sessions ------------------------------------------------------------


def login_record(conn: Conn, email: str) -> LoginRecord | None:
    """The password hash a login is checked against: a user's, else a pending account's."""
    row = conn.execute(
        "SELECT p.hash FROM users u JOIN passwords p ON p.email = u.email WHERE u.email = ?",
        (email,),
    ).fetchone()
    if row is not None:
        return LoginRecord(email, row["hash"], pending=False)
    if conn.execute("SELECT 1 FROM users WHERE email = ?", (email,)).fetchone():
        return None  # a user without a password yet: /password/forgot
    reg = _pending(conn, email)
    return LoginRecord(email, reg.password_hash, pending=True) if reg is not None else None


def set_password(conn: Conn, email: str, password_hash: str, *, now: datetime) -> bool:
    """Set a user's (or pending account's) password; lifts every lock on the address and
    voids its reset links. False when the address has no account a password belongs to."""
    known = conn.execute(
        "SELECT 1 FROM users WHERE email = :e UNION ALL SELECT 1 FROM agents WHERE email = :e",
        {"e": email},
    ).fetchone()
    if known is not None:  # a user's, or an agent's (the desk logs agents in with it)
        conn.execute(
            "INSERT INTO passwords(email, hash, changed_at) VALUES (?, ?, ?) ON CONFLICT(email) "
            "DO UPDATE SET hash = excluded.hash, changed_at = excluded.changed_at",
            (email, password_hash, iso(now)),
        )
    else:
        reg = _pending(conn, email)
        if reg is None:
            return False
        conn.execute(
            "UPDATE registrations SET password_hash = ? WHERE id = ?", (password_hash, reg.id)
        )
    lift_locks(conn, email)
    _void_resets(conn, email)
    return True


def create_session(conn: Conn, session_hash: str, email: str, *, now: datetime) -> None:
    conn.execute(
        "INSERT INTO web_sessions(hash, email, created_at, seen_at) VALUES (?, ?, ?, ?)",
        (session_hash, email, iso(now), iso(now)),
    )


def session_email(
    conn: Conn, session_hash: str, *, idle_since: datetime, born_since: datetime
) -> tuple[str, datetime] | None:
    """(address, last seen) of a live session: seen after `idle_since`, made after
    `born_since`."""
    row = conn.execute(
        "SELECT email, seen_at FROM web_sessions WHERE hash = ? AND seen_at > ? AND created_at > ?",
        (session_hash, iso(idle_since), iso(born_since)),
    ).fetchone()
    return (row["email"], _dt(row["seen_at"])) if row is not None else None


def touch_session(conn: Conn, session_hash: str, *, now: datetime) -> None:
    conn.execute("UPDATE web_sessions SET seen_at = ? WHERE hash = ?", (iso(now), session_hash))


def end_session(conn: Conn, session_hash: str) -> None:
    conn.execute("DELETE FROM web_sessions WHERE hash = ?", (session_hash,))


def end_sessions(conn: Conn, email: str, *, keep: str | None = None) -> int:
    """End every session of an address (but `keep`); return how many."""
    cur = conn.execute(
        "DELETE FROM web_sessions WHERE email = ? AND hash != ?", (email, keep or "")
    )
    return cur.rowcount


def identity_of(conn: Conn, email: str) -> Identity | None:
    row = conn.execute(
        "SELECT u.email, u.name, u.lang, u.phone, c.number, c.name AS cname, c.support_until, "
        "c.trial_until FROM users u JOIN customers c ON c.number = u.customer WHERE u.email = ?",
        (email,),
    ).fetchone()
    if row is not None:
        return Identity(row["email"], row["name"], row["lang"], _customer(row), pending=False,
                        phone=row["phone"])  # fmt: skip
    reg = _pending(conn, email)
    if reg is None:
        return None
    nobody = Customer(reg.customer, "", None, None)  # not tied to it until approved
    return Identity(reg.email, reg.name, reg.lang, nobody, pending=True, phone=reg.phone)


def update_account(conn: Conn, email: str, *, name: str, lang: str, phone: str) -> None:
    conn.execute(
        "UPDATE users SET name = ?, lang = ?, phone = ? WHERE email = ?",
        (name, lang, phone, email),
    )
    conn.execute(
        "UPDATE registrations SET name = ?, lang = ?, phone = ? WHERE email = ? "
        "AND status = 'pending'",
        (name, lang, phone, email),
    )


# --- mail of the portal's -------------------------------------------------------------------


def auto_mail_state(
    conn: Conn, address: str, *, since: datetime, now: datetime
) -> tuple[bool, int]:
    """(blocked after a bounce, automatic mails sent to it since `since`)."""
    row = conn.execute(
        "SELECT EXISTS(SELECT 1 FROM suppressions WHERE address = :a AND until > :now), "
        "(SELECT COUNT(*) FROM outbox WHERE recipient = :a AND created_at >= :since "
        " AND automatic = 1)",
        {"a": address, "now": iso(now), "since": iso(since)},
    ).fetchone()
    return bool(row[0]), int(row[1])


def enqueue(conn: Conn, record: OutboxRecord, *, now: datetime) -> int:
    return insert_outbox(conn, record, now=now)


# --- tickets ---------------------------------------------------------------------------------


def ticket_page(conn: Conn, customer: str, number: int) -> WebTicketPage | None:
    """A ticket of the institution with the articles its customers see, oldest first."""
    row = conn.execute(
        "SELECT number, subject, CASE status WHEN 'waiting' THEN 'open' ELSE status END "
        "AS status, requester, created_at, updated_at, closed_at, "  # waiting: open to them
        "previous_number, channel FROM tickets WHERE number = ? AND customer = ?",
        (number, customer),
    ).fetchone()
    if row is None:
        return None
    files: dict[int, list[WebAttachment]] = {}
    for f in conn.execute(
        "SELECT f.id, f.article, f.filename, f.content_type, f.size, f.sha256 "
        "FROM articles a JOIN attachments f ON f.article = a.id WHERE a.ticket = ? "
        "AND a.automatic = 0 AND a.direction IN ('in', 'out') "
        "ORDER BY f.id",
        (number,),
    ).fetchall():
        files.setdefault(f["article"], []).append(
            WebAttachment(f["id"], f["filename"], f["content_type"], f["size"], f["sha256"])
        )
    articles = tuple(
        WebArticle(
            id=a["id"],
            direction=a["direction"],
            sender=a["sender"],
            author_name=a["gname"] or a["uname"] or "",
            at=_dt(a["created_at"]),
            body_text=a["body_text"],
            reply_text=a["reply_text"],
            note=a["note"],
            attachments=tuple(files.get(a["id"], ())),
        )
        for a in conn.execute(
            "SELECT a.id, a.direction, a.sender, a.created_at, a.body_text, a.reply_text, "
            "a.note, g.name AS gname, u.name AS uname FROM articles a "
            "LEFT JOIN agents g ON g.email = a.sender "
            "LEFT JOIN users u ON u.email = a.sender AND a.direction = 'in' "
            "WHERE a.ticket = ? AND a.automatic = 0 AND a.direction IN ('in', 'out') ORDER BY a.id",
            (number,),
        ).fetchall()  # all at once: psycopg steps through a cursor's rows in Python
    )
    return WebTicketPage(_web_ticket(row), row["previous_number"], articles, row["channel"])


def attachment_of(conn: Conn, customer: str, number: int, attachment: int) -> WebAttachment | None:
    """One file of a ticket of the institution, on an article its customers see."""
    row = conn.execute(
        "SELECT f.id, f.filename, f.content_type, f.size, f.sha256 FROM attachments f "
        "JOIN articles a ON a.id = f.article JOIN tickets t ON t.number = a.ticket "
        "WHERE f.id = ? AND t.number = ? AND t.customer = ? AND a.automatic = 0 "
        "AND a.direction IN ('in', 'out')",
        (attachment, number, customer),
    ).fetchone()
    if row is None:
        return None
    return WebAttachment(
        row["id"], row["filename"], row["content_type"], row["size"], row["sha256"]
    )


def web_article(
    *,
    sender: str,
    to: tuple[str, ...],
    subject: str,
    body: str,
    message_id: str,
    attachments: tuple[Any, ...],
    note: str | None,
    now: datetime,
    automatic: bool = False,
    direction: str = "in",
    taken: bool = False,
) -> ArticleRecord:
    """An article written in the portal: no raw message, flagged `web`; `taken`: written in
    the desk by an agent for the ticket's requester (SPEC 9.1), flagged `taken` too."""
    return ArticleRecord(
        direction=direction,
        automatic=automatic,
        sender=sender,
        to=to,
        cc=(),
        subject=subject,
        date=now,
        message_id=message_id,
        in_reply_to=(),
        references=(),
        body_text=body,
        reply_text=body,
        raw_sha256=None,
        attachments=attachments,
        note=note,
        flags=("web", "taken") if taken else ("web",),
    )


def open_web_ticket(
    conn: Conn,
    ticket: NewTicket | None,
    *,
    number: int,
    status: str | None,
    article: ArticleRecord,
    notice: OutboxRecord | None,
    now: datetime,
) -> int | None:
    """A new ticket (`ticket`) or activity on ticket `number` (with a new `status`), its
    article and the notice about it; the notice's outbox entry."""
    if ticket is not None:
        insert_ticket(conn, ticket, now=now)
    else:
        touch_ticket(conn, number, status=status, by=article.sender, now=now)
    insert_article(conn, number, article, message=None, now=now)
    return insert_outbox(conn, notice, now=now) if notice is not None else None


def set_ticket_status(
    conn: Conn, number: int, status: str, *, article: ArticleRecord, now: datetime
) -> None:
    touch_ticket(conn, number, status=status, by=article.sender, now=now)
    insert_article(conn, number, article, message=None, now=now)
