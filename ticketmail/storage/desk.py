"""Every SQL statement of the support desk (SPEC 9): the queue with its full-text search,
a ticket as an agent sees it, owners, internal notes, agents' settings, pending
registrations, institutions, and the figures `/metrics` reports.

Plain functions on a `Conn`: writes run inside `store.write(fn)`, reads on the
web's read-only connections.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from ticketmail.errors import NotFoundError
from ticketmail.models import MERGED, Customer, HistoryEntry
from ticketmail.storage import accounts, pg_search
from ticketmail.storage._rows import iso
from ticketmail.storage.accounts import LoginRecord
from ticketmail.storage.dialect import Conn, Row, is_postgres
from ticketmail.storage.fulltext import Budget, Terms, by_ranges, terms_of
from ticketmail.storage.merge import refuse_merged
from ticketmail.storage.records import ArticleRecord
from ticketmail.storage.tickets import (
    history_of,
    insert_article,
    record_change,
    touch_ticket,
    version_of,
)

__all__ = [
    "DEFAULT_SORT",
    "SORTS",
    "DeskAgent",
    "DeskArticle",
    "DeskFile",
    "DeskTicket",
    "DeskTicketPage",
    "Figures",
    "Institution",
    "OwnerChange",
    "PendingRegistration",
    "Queue",
    "add_note",
    "agent_of",
    "agents_to_notify",
    "figures",
    "institution",
    "institutions",
    "list_agents",
    "login_record",
    "notifications_about",
    "pending_registrations",
    "queue",
    "raw_of",
    "refusal",
    "registration_email",
    "set_agent_settings",
    "set_owner",
    "ticket_brief",
    "ticket_page",
    "update_institution",
]


@dataclass(frozen=True, slots=True)
class DeskAgent:
    email: str
    name: str
    lang: str | None
    notify: bool


@dataclass(frozen=True, slots=True)
class DeskTicket:
    number: int
    subject: str
    status: str
    customer: str
    customer_name: str
    requester: str
    owner: str | None
    created_at: datetime
    updated_at: datetime
    version: int = 0  # raised by every change (SPEC 9.1): what a desk form carries as `seen`
    waiting_until: datetime | None = None  # while waiting: when it is open again
    requester_name: str = ""  # the user's name ("" without one: show the address)
    owner_name: str = ""  # the owning agent's name


@dataclass(frozen=True, slots=True)
class Queue:
    tickets: tuple[DeskTicket, ...]
    total: int
    counts: tuple[tuple[str, int], ...]  # per status, under the other filters
    # The search's words are in more than SEARCH_BOUND articles: only the tickets of the
    # newest SEARCH_BOUND of them are counted and listed (within an institution, all are).
    bounded: bool = False
    cut: bool = False  # the search's time ran out: what it found until then


@dataclass(frozen=True, slots=True)
class DeskFile:
    id: int
    filename: str
    content_type: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class DeskArticle:
    id: int
    direction: str  # in, out, note
    automatic: bool
    sender: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str
    date: datetime | None
    message_id: str
    in_reply_to: str
    body_text: str
    note: str | None
    has_raw: bool
    flags: tuple[str, ...]
    attachments: tuple[DeskFile, ...]
    version: int = 0  # the ticket's version this article made (a merge: the merge's)
    stored_at: datetime | None = None  # when ticketmail stored it


@dataclass(frozen=True, slots=True)
class DeskTicketPage:
    ticket: DeskTicket
    customer: Customer
    previous_number: int | None
    articles: tuple[DeskArticle, ...]
    others: tuple[DeskTicket, ...]  # the institution's other tickets, newest first
    history: tuple[HistoryEntry, ...] = ()

    @property
    def timeline(self) -> tuple[DeskArticle | HistoryEntry, ...]:
        """Articles and history entries in the order they happened: by when each was
        stored, then by the version each made (articles a merge brought from another
        ticket stand by their time among this ticket's)."""
        both: list[DeskArticle | HistoryEntry] = [*self.articles, *self.history]
        return tuple(sorted(both, key=_happened))

    def since(self, seen: int) -> tuple[DeskArticle | HistoryEntry, ...]:
        """What changed after a page that showed version `seen`."""
        return tuple(e for e in self.timeline if e.version > seen)


_EARLIEST = datetime.min.replace(tzinfo=UTC)


def _happened(entry: DeskArticle | HistoryEntry) -> tuple[datetime, int]:
    at = entry.at if isinstance(entry, HistoryEntry) else entry.stored_at
    return at or _EARLIEST, entry.version


@dataclass(frozen=True, slots=True)
class PendingRegistration:
    id: int
    email: str
    name: str
    lang: str
    customer: str
    customer_name: str | None
    created_at: datetime
    confirmed_at: datetime | None


@dataclass(frozen=True, slots=True)
class Institution:
    customer: Customer
    domains: tuple[str, ...]
    users: tuple[tuple[str, str, str | None, str], ...]  # (email, name, lang, phone)
    tickets: int


@dataclass(frozen=True, slots=True)
class Figures:
    """What `/metrics` reads from the database at a scrape."""

    outbox_queued: int
    outbox_oldest: datetime | None
    quarantine: int
    held: int
    tickets: tuple[tuple[str, int], ...]


def _dt(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


_TICKET_COLUMNS = (
    "t.number, t.subject, t.status, t.customer, c.name AS cname, t.requester, t.owner, "
    "t.created_at, t.updated_at, t.version, t.waiting_until, "
    "(SELECT u.name FROM users u WHERE u.email = t.requester) AS rname, "
    "(SELECT g.name FROM agents g WHERE g.email = t.owner) AS oname"
)
# The queue's orders (issue 24), each an ORDER BY an index serves (SCHEMA: tickets_updated,
# the primary key, tickets_status_updated walked backwards, tickets_customer), newest
# activity first within a status or an institution; status by its code from z to a
# (waiting, open, new, closed, answered): one walk of the index, no sort of a whole status.
# The key is what `sort=` says; unknown: DEFAULT_SORT.
SORTS = {
    "-activity": "t.updated_at DESC, t.number DESC",
    "activity": "t.updated_at, t.number",
    "-number": "t.number DESC",
    "number": "t.number",
    "status": "t.status DESC, t.updated_at DESC, t.number DESC",  # waiting, open, new, ...
    "customer": "t.customer, t.updated_at DESC, t.number DESC",
}
DEFAULT_SORT = "-activity"


def _ticket(row: Row) -> DeskTicket:
    return DeskTicket(
        row["number"], row["subject"], row["status"], row["customer"], row["cname"],
        row["requester"], row["owner"], _dt(row["created_at"]), _dt(row["updated_at"]),
        row["version"], _dt(row["waiting_until"]) if row["waiting_until"] else None,
        row["rname"] or "", row["oname"] or "",
    )  # fmt: skip


# --- agents ------------------------------------------------------------------------------------


def agent_of(conn: Conn, email: str) -> DeskAgent | None:
    row = conn.execute(
        "SELECT email, name, lang, notify FROM agents WHERE email = ?", (email,)
    ).fetchone()
    return DeskAgent(row[0], row[1], row[2], bool(row[3])) if row is not None else None


def list_agents(conn: Conn) -> tuple[DeskAgent, ...]:
    rows = conn.execute("SELECT email, name, lang, notify FROM agents ORDER BY name, email")
    return tuple(DeskAgent(r[0], r[1], r[2], bool(r[3])) for r in rows)


def login_record(conn: Conn, email: str) -> tuple[LoginRecord | None, bool]:
    """(the password a login is checked against, whether the address is an agent's)."""
    if agent_of(conn, email) is not None:
        row = conn.execute("SELECT hash FROM passwords WHERE email = ?", (email,)).fetchone()
        return (LoginRecord(email, row[0], pending=False) if row else None), True
    return accounts.login_record(conn, email), False


def set_agent_settings(
    conn: Conn, email: str, *, lang: str | None = None, notify: bool | None = None
) -> None:
    """An agent's language and whether notifications reach them (None: unchanged)."""
    if agent_of(conn, email) is None:
        raise NotFoundError(f"agent {email} does not exist")
    if lang is not None:
        conn.execute("UPDATE agents SET lang = ? WHERE email = ?", (lang, email))
    if notify is not None:
        conn.execute("UPDATE agents SET notify = ? WHERE email = ?", (int(notify), email))


def agents_to_notify(
    conn: Conn, ticket: int, *, notify_to: tuple[str, ...]
) -> tuple[DeskAgent, ...]:
    """Who hears of a ticket's news: its owner, else `notify_to` (or every agent); only
    agents who have not switched notifications off."""
    row = conn.execute("SELECT owner FROM tickets WHERE number = ?", (ticket,)).fetchone()
    owner = row[0] if row is not None else None
    if not owner:
        return team_to_notify(conn, notify_to=notify_to)
    found = agent_of(conn, owner)
    return (found,) if found is not None and found.notify else ()


def team_to_notify(conn: Conn, *, notify_to: tuple[str, ...]) -> tuple[DeskAgent, ...]:
    """Who hears of news nobody owns: `notify_to` (or every agent); only agents who have
    not switched notifications off."""
    if notify_to:
        wanted = {a.casefold() for a in notify_to}
        chosen = tuple(a for a in list_agents(conn) if a.email in wanted)
    else:
        chosen = list_agents(conn)
    return tuple(a for a in chosen if a.notify)


def notifications_about(conn: Conn, ticket: int, recipient: str, *, since: datetime) -> int:
    """Notifications of this ticket to this agent since then (the per-ticket rate limit)."""
    (count,) = conn.execute(
        "SELECT COUNT(*) FROM outbox WHERE ticket = ? AND recipient = ? AND created_at >= ? "
        "AND kind IN ('agent_new_ticket', 'agent_follow_up', 'agent_customer_closed', "
        "'agent_customer_reopened')",
        (ticket, recipient, iso(since)),
    ).fetchone()
    return int(count)


# --- the queue ---------------------------------------------------------------------------------

# A search reads at most this many matching articles, newest first. A word in nearly every
# article would otherwise join hundreds of thousands of articles to their tickets (seconds
# per page); an agent narrows such a search by another word or an institution instead.
SEARCH_BOUND = 2000


def _index_terms(
    conn: Conn, terms: Terms, customer: str | None, params: dict[str, Any]
) -> tuple[str, str, str]:
    """(the index a search reads as `p`, its article id column; SQL true for its row `p`
    when it holds every term; with `customer`, only that institution's part of the trigram
    index is read); their parameters go into `params`, the index's MATCH as :m."""
    if is_postgres(conn):  # one table (storage/pg_search), the institution its first column
        holds = pg_search.matches(terms, params, people=True)
        if customer:
            holds += " AND p.customer = :c"
        return "search_index p", "p.article", holds
    params["m"] = terms.grams_match("{subject people body}", customer or None)
    params["wm"] = terms.words_match("{subject sender to_json body_text}")
    if not terms.grams:
        params["m"] = params["wm"]
        return "article_search p", "p.rowid", "article_search MATCH :m"
    holds = "article_grams MATCH :m"
    if terms.words:  # the short words' matches read once, not looked up for each row
        holds += " AND p.rowid IN (SELECT rowid FROM article_search WHERE article_search MATCH :wm)"
    return "article_grams p", "p.rowid", holds


def _json_list(conn: Conn, expression: str, *, distinct: bool = False) -> str:
    """`json_group_array([DISTINCT] expression)` in the connection's dialect."""
    if is_postgres(conn):
        return pg_search.json_list(expression, distinct=distinct)
    return f"json_group_array({'DISTINCT ' if distinct else ''}{expression})"


def _found(
    conn: Conn, q: str, customer: str | None, params: dict[str, Any], budget: Budget
) -> tuple[list[int], bool]:
    """The tickets `q` finds, as far as the budget reaches: a ticket number, a requester's
    address, words in any article (of the newest SEARCH_BOUND articles with them, unless an
    institution is chosen); whether the words' matches were bounded."""
    number = q.strip().lstrip("#")
    params["qn"] = int(number) if number.isascii() and number.isdigit() and len(number) < 12 else -1
    # (PostgreSQL's text holds no NUL: an address typed with one is nobody's there either)
    params["qa"] = q.strip().casefold().replace("\x00", "\ufffd")
    row = budget.one(
        conn,
        f"SELECT {_json_list(conn, 'n')} FROM (SELECT CAST(:qn AS BIGINT) AS n UNION "  # noqa: S608 - fixed fragments
        "SELECT number FROM tickets WHERE requester = :qa) AS asked",
        params,
    )
    found: list[int] = json.loads(str(row[0])) if row is not None else []
    terms = terms_of(q)
    if not terms:
        return found, False
    table, rowid, holds = _index_terms(conn, terms, customer, params)
    tickets = _json_list(conn, "a.ticket", distinct=True)
    if customer:  # all of one institution's (its part of the index): by ranges, newest first
        select = (
            f"SELECT {tickets} FROM {table} "  # noqa: S608 - fixed fragments
            f"JOIN articles a ON a.id = {rowid} JOIN tickets i ON i.number = a.ticket "
            f"WHERE {holds} AND {rowid} BETWEEN :low AND :high AND i.customer = :c"
        )
        return found + by_ranges(conn, select, params, budget), False
    newest = f"SELECT {rowid} FROM {table} WHERE {holds} ORDER BY {rowid} DESC LIMIT :bound"  # noqa: S608 - fixed fragments
    params["bound"] = SEARCH_BOUND + 1
    counted = budget.one(conn, f"SELECT COUNT(*) FROM ({newest}) AS hits", params)  # noqa: S608 - fixed fragments
    if counted is None:
        return found, False
    hits = int(str(counted[0]))
    params["bound"] = SEARCH_BOUND
    # The newest matching articles (all of them, unless there are too many), as one row (a
    # JSON array), not a row per ticket: each row would hand the GIL back and forth with
    # the event loop.
    row = budget.one(
        conn,
        f"SELECT {tickets} FROM articles a WHERE a.id IN ({newest})",  # noqa: S608 - fixed fragments
        params,
    )
    if row is not None:
        found += json.loads(str(row[0]))
    return found, hits > SEARCH_BOUND


def queue(
    conn: Conn,
    *,
    status: str | None,
    customer: str | None,
    owner: str | None,  # an address, or "" for tickets without one
    q: str,
    limit: int,
    offset: int,
    deadline: float = math.inf,
    sort: str = DEFAULT_SORT,
) -> Queue:
    """All tickets under the filters in the order `sort` names (SORTS; newest activity
    first unless said), one page of them, how many in all and per status. `q` finds a
    ticket number, an address, or words in any article, parts of words too (of the newest
    SEARCH_BOUND articles with them, unless an institution is chosen), as far as `deadline`
    (time.monotonic) lets it."""
    where: list[str] = []
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    bounded = cut = False
    if customer:
        where.append("t.customer = :c")
        params["c"] = customer
    if owner is not None:
        where.append("t.owner = :o" if owner else "t.owner IS NULL")
        params["o"] = owner
    if q.strip():
        budget = Budget(deadline)
        found, bounded = _found(conn, q, customer, params, budget)
        cut = budget.cut
        if is_postgres(conn):
            params["found"] = found
            where.append("t.number = ANY(CAST(:found AS BIGINT[]))")
        else:
            params["found"] = json.dumps(found)
            where.append("t.number IN (SELECT value FROM json_each(:found))")
    base = " AND ".join(where) or "1 = 1"
    if customer or q.strip():  # a few tickets (an institution's, a search's): count them
        tally = f"SELECT t.status, COUNT(*) FROM tickets t WHERE {base} GROUP BY t.status"  # noqa: S608 - fixed fragments
    else:  # every ticket, or an owner's: the counts the triggers keep (SCHEMA 5)
        mine = "" if owner is None else "WHERE owner = :tally_owner "
        params["tally_owner"] = owner
        tally = f"SELECT status, SUM(n) FROM ticket_tally {mine}GROUP BY status HAVING SUM(n) > 0"  # noqa: S608 - fixed fragments
    counts = tuple((r[0], int(r[1])) for r in conn.execute(tally, params))
    clause = base
    if status is not None:
        clause = f"{base} AND t.status = :s"
        params["s"] = status
    else:  # merged tickets are no work: only a `status=merged` filter lists them
        clause = f"{base} AND t.status != '{MERGED}'"
    total = sum(n for s, n in counts if s == status or (status is None and s != MERGED))
    # The page's numbers first, then their rows: the institution's name is looked up for
    # the page's tickets only, not for every ticket a search found.
    order = SORTS.get(sort, SORTS[DEFAULT_SORT])
    rows = conn.execute(
        f"SELECT {_TICKET_COLUMNS} FROM (SELECT t.number FROM tickets t WHERE {clause} "  # noqa: S608 - fixed fragments
        f"ORDER BY {order} LIMIT :limit OFFSET :offset) p "
        "JOIN tickets t ON t.number = p.number JOIN customers c ON c.number = t.customer "
        f"ORDER BY {order}",
        params,
    ).fetchall()
    return Queue(tuple(_ticket(r) for r in rows), total, counts, bounded, cut)


# --- one ticket --------------------------------------------------------------------------------


def ticket_page(conn: Conn, number: int) -> DeskTicketPage | None:
    """A ticket with every article (automatic ones and notes too), oldest first, its
    institution and the institution's other tickets."""
    row = conn.execute(
        f"SELECT {_TICKET_COLUMNS}, t.previous_number, c.support_until, c.trial_until "  # noqa: S608 - fixed fragments
        "FROM tickets t JOIN customers c ON c.number = t.customer WHERE t.number = ?",
        (number,),
    ).fetchone()
    if row is None:
        return None
    ticket = _ticket(row)
    customer = Customer(
        ticket.customer, row["cname"], _day(row["support_until"]), _day(row["trial_until"])
    )
    files: dict[int, list[DeskFile]] = {}
    for f in conn.execute(
        "SELECT f.id, f.article, f.filename, f.content_type, f.size, f.sha256 FROM articles a "
        "JOIN attachments f ON f.article = a.id WHERE a.ticket = ? ORDER BY f.id",
        (number,),
    ):
        files.setdefault(f["article"], []).append(
            DeskFile(f["id"], f["filename"], f["content_type"], f["size"], f["sha256"])
        )
    articles = tuple(
        DeskArticle(
            id=a["id"],
            direction=a["direction"],
            automatic=bool(a["automatic"]),
            sender=a["sender"],
            to=tuple(json.loads(a["to_json"])),
            cc=tuple(json.loads(a["cc_json"])),
            subject=a["subject"],
            date=_dt(a["date"]) if a["date"] else None,
            message_id=a["message_id"],
            in_reply_to=a["in_reply_to"],
            body_text=a["body_text"],
            note=a["note"],
            has_raw=a["raw_sha256"] is not None,
            flags=tuple(json.loads(a["flags_json"])),
            attachments=tuple(files.get(a["id"], ())),
            version=a["version"],
            stored_at=_dt(a["created_at"]),
        )
        for a in conn.execute(
            "SELECT id, direction, automatic, sender, to_json, cc_json, subject, date, "
            "message_id, in_reply_to, body_text, note, raw_sha256, flags_json, version, "
            "created_at "
            "FROM articles "
            "WHERE ticket = ? ORDER BY id",
            (number,),
        )
    )
    others = tuple(
        _ticket(r)
        for r in conn.execute(
            f"SELECT {_TICKET_COLUMNS} FROM tickets t JOIN customers c ON c.number = t.customer "  # noqa: S608 - fixed fragments
            "WHERE t.customer = ? AND t.number != ? ORDER BY t.updated_at DESC LIMIT 20",
            (ticket.customer, number),
        )
    )
    return DeskTicketPage(
        ticket, customer, row["previous_number"], articles, others, history_of(conn, number)
    )


def refusal(conn: Conn, number: int, *, seen: int | None, force: bool) -> str | None:
    """Why a desk form made on a page that showed version `seen` of ticket `number` must
    not act (SPEC 9.1): 'missing' (no such ticket), 'stale' (it changed since, or the form
    named no version), or None; SourceMerged for a merged ticket (read-only). Run it in
    the write job that acts, so that of two agents racing on one version only the first
    acts; `force` acts anyway."""
    version = version_of(conn, number)
    if version is None:
        return "missing"
    refuse_merged(conn, number)  # a merged ticket is read-only: SourceMerged
    if not force and (seen is None or seen < version):
        return "stale"
    return None


def ticket_brief(conn: Conn, number: int) -> DeskTicket | None:
    """One ticket as the queue lists it."""
    row = conn.execute(
        f"SELECT {_TICKET_COLUMNS} FROM tickets t JOIN customers c ON c.number = t.customer "  # noqa: S608 - fixed fragments
        "WHERE t.number = ?",
        (number,),
    ).fetchone()
    return _ticket(row) if row is not None else None


def raw_of(conn: Conn, number: int, article: int) -> str | None:
    """The SHA-256 of an article's raw message (None: no such article, or none kept)."""
    row = conn.execute(
        "SELECT raw_sha256 FROM articles WHERE id = ? AND ticket = ?", (article, number)
    ).fetchone()
    return row[0] if row is not None and row[0] else None


def attachment(conn: Conn, number: int, file: int) -> DeskFile | None:
    row = conn.execute(
        "SELECT f.id, f.filename, f.content_type, f.size, f.sha256 FROM attachments f "
        "JOIN articles a ON a.id = f.article WHERE f.id = ? AND a.ticket = ?",
        (file, number),
    ).fetchone()
    return DeskFile(row[0], row[1], row[2], row[3], row[4]) if row is not None else None


@dataclass(frozen=True, slots=True)
class OwnerChange:
    old: str | None
    new: str | None

    @property
    def changed(self) -> bool:
        return self.old != self.new


def set_owner(
    conn: Conn, number: int, owner: str | None, *, by: str, now: datetime
) -> OwnerChange | None:
    """The ticket's owner (an agent), or none, kept in its history as done `by` someone;
    None when there is no such ticket. The owner it has already changes nothing."""
    if owner is not None and agent_of(conn, owner) is None:
        raise NotFoundError(f"agent {owner} does not exist")
    row = conn.execute("SELECT owner FROM tickets WHERE number = ?", (number,)).fetchone()
    if row is None:
        return None
    change = OwnerChange(row[0], owner)
    if change.changed:
        conn.execute("UPDATE tickets SET owner = ? WHERE number = ?", (owner, number))
        record_change(conn, number, "owner", change.old, owner, by=by, now=now)
    return change


def add_note(conn: Conn, number: int, *, agent: str, body: str, now: datetime) -> int | None:
    """An internal note (direction 'note'): never mailed, never shown to customers."""
    row = conn.execute("SELECT subject FROM tickets WHERE number = ?", (number,)).fetchone()
    if row is None:
        return None
    record = ArticleRecord(
        direction="note", automatic=False, sender=agent, to=(), cc=(), subject=row[0],
        date=now, message_id="", in_reply_to=(), references=(), body_text=body,
        reply_text=body, raw_sha256=None, attachments=(), flags=("web",),
    )  # fmt: skip
    touch_ticket(conn, number, status=None, by=agent, now=now)
    return insert_article(conn, number, record, message=None, now=now)


# --- registrations and institutions --------------------------------------------------------


def pending_registrations(conn: Conn) -> tuple[PendingRegistration, ...]:
    return tuple(
        PendingRegistration(
            r["id"],
            r["email"],
            r["name"],
            r["lang"],
            r["customer"],
            r["cname"],
            _dt(r["created_at"]),
            _dt(r["confirmed_at"]) if r["confirmed_at"] else None,
        )
        for r in conn.execute(
            "SELECT r.id, r.email, r.name, r.lang, r.customer, c.name AS cname, r.created_at, "
            "r.confirmed_at FROM registrations r LEFT JOIN customers c ON c.number = r.customer "
            "WHERE r.status = 'pending' ORDER BY r.id"
        )
    )


def pending_count(conn: Conn) -> int:
    """Confirmed registrations awaiting an agent's approval (the desk's navigation)."""
    (count,) = conn.execute(
        "SELECT COUNT(*) FROM registrations WHERE status = 'pending'"
    ).fetchone()
    return int(count)


def registration_email(conn: Conn, registration: int) -> str | None:
    row = conn.execute(
        "SELECT email FROM registrations WHERE id = ? AND status = 'pending'", (registration,)
    ).fetchone()
    return row[0] if row is not None else None


def institutions(conn: Conn) -> tuple[tuple[Customer, int, int], ...]:
    """Every institution with its number of users and of open (not closed or merged)
    tickets."""
    return tuple(
        (
            Customer(r[0], r[1], _day(r[2]), _day(r[3])),
            int(r[4]),
            int(r[5]),
        )
        for r in conn.execute(
            "SELECT c.number, c.name, c.support_until, c.trial_until, "
            "(SELECT COUNT(*) FROM users u WHERE u.customer = c.number), "
            "(SELECT COUNT(*) FROM tickets t WHERE t.customer = c.number "
            " AND t.status NOT IN ('closed', 'merged')) FROM customers c ORDER BY c.number"
        )
    )


def institution(conn: Conn, number: str) -> Institution | None:
    customer = accounts.customer_of(conn, number)
    if customer is None:
        return None
    users = tuple(
        (r[0], r[1], r[2], r[3])
        for r in conn.execute(
            "SELECT email, name, lang, phone FROM users WHERE customer = ? ORDER BY email",
            (number,),
        )
    )
    (tickets,) = conn.execute(
        "SELECT COUNT(*) FROM tickets WHERE customer = ?", (number,)
    ).fetchone()
    return Institution(customer, accounts.domains_of(conn, number), users, int(tickets))


def update_institution(
    conn: Conn,
    number: str,
    *,
    support_until: date | None,
    trial_until: date | None,
    domains: tuple[str, ...],
) -> None:
    """Contract and trial dates and mail domains, as `customer add ... --domains` sets them."""
    cur = conn.execute(
        "UPDATE customers SET support_until = ?, trial_until = ? WHERE number = ?",
        (
            support_until.isoformat() if support_until else None,
            trial_until.isoformat() if trial_until else None,
            number,
        ),
    )
    if cur.rowcount == 0:
        raise NotFoundError(f"customer {number} does not exist")
    accounts.set_domains(conn, number, domains)


# --- figures for /metrics ------------------------------------------------------------------


def figures(conn: Conn) -> Figures:
    queued, oldest = conn.execute(
        "SELECT COUNT(*), MIN(queued_at) FROM outbox WHERE status = 'queued'"
    ).fetchone()
    (quarantine,) = conn.execute("SELECT COUNT(*) FROM quarantine WHERE status = 'held'").fetchone()
    (held,) = conn.execute("SELECT COUNT(*) FROM held WHERE status = 'held'").fetchone()
    tickets = tuple(
        (r[0], int(r[1])) for r in conn.execute("SELECT status, COUNT(*) FROM tickets GROUP BY 1")
    )
    return Figures(int(queued), _dt(oldest) if oldest else None, int(quarantine), int(held),
                   tickets)  # fmt: skip
