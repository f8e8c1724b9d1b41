"""The portal's list of an institution's tickets and its search (SPEC 8.3, 8.4).

A search finds the ticket number, or tickets with an article the customer sees (not a note,
not an automatic one) whose subject or text holds every word typed, parts of words included
(storage/fulltext.py). It never reads another institution's tickets: every statement is
bound to the institution. It runs within a `Budget`: a statement cut short at the deadline
leaves what the earlier ones found, and the result says it was cut short.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ticketmail.storage.fulltext import Budget, Terms, terms_of

__all__ = ["PROBE_BOUND", "TicketList", "WebTicket", "list_tickets", "search_tickets"]

# Fewer matching articles than this in the whole index: the search starts from them (a
# join each); more: from the institution's tickets, newest first, a chunk at a time.
PROBE_BOUND = 2000
FIRST_CHUNK = 64  # tickets in the first chunk; each next chunk is twice as many


@dataclass(frozen=True, slots=True)
class WebTicket:
    number: int
    subject: str
    status: str
    requester: str
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None


@dataclass(frozen=True, slots=True)
class TicketList:
    """One page of the list, how many in all, and whether a search was cut short (then
    `total` counts what it found in its time)."""

    tickets: tuple[WebTicket, ...]
    total: int
    cut: bool = False


def _dt(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _web_ticket(row: sqlite3.Row) -> WebTicket:
    return WebTicket(
        number=row["number"],
        subject=row["subject"],
        status=row["status"],
        requester=row["requester"],
        created_at=_dt(row["created_at"]),
        updated_at=_dt(row["updated_at"]),
        closed_at=_dt(row["closed_at"]) if row["closed_at"] else None,
    )


_COLUMNS = "t.number, t.subject, t.status, t.requester, t.created_at, t.updated_at, t.closed_at"
_ORDER = "ORDER BY t.updated_at DESC, t.number DESC"


def _filters(
    customer: str, status: str | None, requester: str | None
) -> tuple[str, dict[str, Any]]:
    where = ["t.customer = :c"]
    params: dict[str, Any] = {"c": customer}
    if status is not None:
        where.append("t.status = :s")
        params["s"] = status
    if requester is not None:
        where.append("t.requester = :r")
        params["r"] = requester
    return " AND ".join(where), params


def list_tickets(
    conn: sqlite3.Connection,
    customer: str,
    *,
    status: str | None,
    requester: str | None,
    limit: int,
    offset: int,
) -> tuple[list[WebTicket], int]:
    """An institution's tickets, newest activity first, one page of them and how many in
    all (no search: see `search_tickets`)."""
    clause, params = _filters(customer, status, requester)
    params.update(limit=limit, offset=offset)
    count = f"SELECT COUNT(*) FROM tickets t WHERE {clause}"  # noqa: S608 - fixed fragments
    (total,) = conn.execute(count, params).fetchone()
    select = f"SELECT {_COLUMNS} FROM tickets t WHERE {clause} {_ORDER} LIMIT :limit OFFSET :offset"  # noqa: S608 - fixed fragments
    rows = conn.execute(select, params).fetchall()
    return [_web_ticket(r) for r in rows], int(total)


def _article_matches(terms: Terms) -> tuple[str, dict[str, str]]:
    """SQL true for an article `a` the customer sees that holds every term."""
    parts = ["a.automatic = 0", "a.direction IN ('in', 'out')"]
    params: dict[str, str] = {}
    if terms.grams:
        params["gm"] = terms.grams_match("{subject body}")
        parts.append(
            "EXISTS (SELECT 1 FROM article_grams g WHERE article_grams MATCH :gm "
            "AND g.rowid = a.id)"
        )
    if terms.words:
        params["wm"] = terms.words_match("{subject body_text}")
        parts.append(
            "EXISTS (SELECT 1 FROM article_search w WHERE article_search MATCH :wm "
            "AND w.rowid = a.id)"
        )
    return " AND ".join(parts), params


def _probe(conn: sqlite3.Connection, terms: Terms, budget: Budget) -> list[int] | None:
    """The matching articles in the whole index when they are few (ids), else None."""
    if terms.grams:
        table, match = "article_grams", terms.grams_match("{subject body}")
    else:
        table, match = "article_search", terms.words_match("{subject body_text}")
    row = budget.one(
        conn,
        f"SELECT json_group_array(rowid) FROM (SELECT rowid FROM {table} "  # noqa: S608 - fixed fragments
        f"WHERE {table} MATCH :m LIMIT :bound)",
        {"m": match, "bound": PROBE_BOUND + 1},
    )
    if row is None:
        return None
    ids: list[int] = json.loads(str(row[0]))
    return ids if len(ids) <= PROBE_BOUND else None


def _matching(
    conn: sqlite3.Connection, terms: Terms, clause: str, params: dict[str, Any], budget: Budget
) -> list[tuple[str, int]]:
    """(activity, number) of the institution's tickets (under `clause`) with a matching
    article, as far as the budget reaches."""
    article, more = _article_matches(terms)
    params = {**params, **more}
    # A share of the budget for the probe: an expensive pattern then still gets a look at
    # the newest tickets.
    probe = Budget(min(budget.deadline, budget.deadline - budget.left() * 2 / 3))
    ids = _probe(conn, terms, probe)
    found: list[tuple[str, int]] = []
    if ids is not None:  # few in the whole index: from them to their tickets
        row = budget.one(
            conn,
            "SELECT json_group_array(json_array(t.updated_at, t.number)) FROM tickets t "  # noqa: S608 - fixed fragments
            f"WHERE {clause} AND t.number IN (SELECT a.ticket FROM articles a "
            f"WHERE a.id IN (SELECT value FROM json_each(:ids)) AND {article})",
            {**params, "ids": json.dumps(ids)},
        )
        if row is not None:
            found = [(str(u), int(n)) for u, n in json.loads(str(row[0]))]
        return found
    # Many: the institution's tickets newest first, a chunk at a time, each article looked
    # up in the index; a chunk cut short is lost, the chunks before it are kept.
    size = FIRST_CHUNK
    after: tuple[str, int] | None = None
    while not budget.cut:
        keyset = "" if after is None else " AND (t.updated_at, t.number) < (:au, :an)"
        chunk = budget.one(
            conn,
            "SELECT json_group_array(json_array(updated_at, number)) FROM (SELECT "  # noqa: S608 - fixed fragments
            f"t.updated_at, t.number FROM tickets t WHERE {clause}{keyset} {_ORDER} LIMIT :k)",
            {**params, "k": size, "au": after[0] if after else "", "an": after[1] if after else 0},
        )
        if chunk is None:
            break
        pairs = [(str(u), int(n)) for u, n in json.loads(str(chunk[0]))]
        if not pairs:
            break
        row = budget.one(
            conn,
            "SELECT json_group_array(c.value) FROM json_each(:chunk) c WHERE EXISTS "  # noqa: S608 - fixed fragments
            f"(SELECT 1 FROM articles a WHERE a.ticket = c.value AND {article})",
            {**params, "chunk": json.dumps([n for _, n in pairs])},
        )
        if row is None:
            break
        hits = set(json.loads(str(row[0])))
        found += [p for p in pairs if p[1] in hits]
        after = pairs[-1]
        size *= 2
    return found


def search_tickets(
    conn: sqlite3.Connection,
    customer: str,
    *,
    q: str,
    status: str | None,
    requester: str | None,
    limit: int,
    offset: int,
    deadline: float,
) -> TicketList:
    """The institution's tickets that `q` finds (its number, or words in an article the
    customer sees), newest activity first, one page of them, found within `deadline`
    (time.monotonic)."""
    budget = Budget(deadline)
    clause, params = _filters(customer, status, requester)
    found: dict[int, str] = {}
    number = q.strip().lstrip("#")
    if number.isdigit() and len(number) < 12:
        row = budget.one(
            conn,
            f"SELECT t.updated_at FROM tickets t WHERE {clause} AND t.number = :n",  # noqa: S608 - fixed fragments
            {**params, "n": int(number)},
        )
        if row is not None:
            found[int(number)] = str(row[0])
    terms = terms_of(q)
    if terms:
        for updated, n in _matching(conn, terms, clause, params, budget):
            found[n] = updated
    ordered = [n for _, n in sorted(((u, n) for n, u in found.items()), reverse=True)]
    page = json.dumps(ordered[offset : offset + limit])
    rows = conn.execute(  # the page's rows: at most `limit` lookups, outside the budget
        f"SELECT {_COLUMNS} FROM tickets t WHERE t.customer = :c AND "  # noqa: S608 - fixed fragments
        f"t.number IN (SELECT value FROM json_each(:page)) {_ORDER}",
        {"c": customer, "page": page},
    ).fetchall()
    return TicketList(tuple(_web_ticket(r) for r in rows), len(ordered), budget.cut)
