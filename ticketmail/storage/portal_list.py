"""The portal's list of an institution's tickets and its search (SPEC 8.3, 8.4).

A search finds the ticket number, or tickets with an article the customer sees (not a note,
not an automatic one) whose subject or text holds every word typed, parts of words included
(storage/fulltext.py). It never reads another institution's tickets: every statement is
bound to the institution. It runs within a `Budget`: a statement cut short at the deadline
leaves what the earlier ones found, and the result says it was cut short.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ticketmail.models import customer_status
from ticketmail.storage import pg_search
from ticketmail.storage.dialect import Conn, Row, is_postgres
from ticketmail.storage.fulltext import Budget, Terms, by_ranges, terms_of

__all__ = ["TicketList", "WebTicket", "list_tickets", "search_tickets"]


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


def _web_ticket(row: Row) -> WebTicket:
    return WebTicket(
        number=row["number"],
        subject=row["subject"],
        status=customer_status(row["status"]),  # a waiting ticket is open to customers
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
    where = ["t.customer = :c", "t.status != 'merged'"]  # a merged one's articles: its target's
    params: dict[str, Any] = {"c": customer}
    if status is not None:  # customers see a waiting ticket as open (SPEC 9.1)
        where.append("t.status IN (:s, :also)")
        params["s"] = status
        params["also"] = "waiting" if status == "open" else status
    if requester is not None:
        where.append("t.requester = :r")
        params["r"] = requester
    return " AND ".join(where), params


def list_tickets(
    conn: Conn,
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


def _article_matches(terms: Terms, customer: str) -> tuple[str, str, dict[str, str]]:
    """(the index a search reads, SQL true for an article `a` the customer sees that holds
    the terms that index does not check, the parameters: :m for the index's MATCH, which
    reads only the institution's part of the trigram index)."""
    parts = ["a.automatic = 0", "a.direction IN ('in', 'out')"]
    words = terms.words_match("{subject body_text}")
    if not terms.grams:
        return "article_search", " AND ".join(parts), {"m": words}
    if terms.words:
        parts.append(  # the short words' matches in the range, once (not a lookup a row)
            "a.id IN (SELECT rowid FROM article_search WHERE article_search MATCH :wm "
            "AND rowid BETWEEN :low AND :high)"
        )
    return (
        "article_grams",
        " AND ".join(parts),
        {"m": terms.grams_match("{subject body}", customer), "wm": words},
    )


def _matching(
    conn: Conn, terms: Terms, clause: str, params: dict[str, Any], budget: Budget
) -> list[tuple[str, int]]:
    """(activity, number) of the institution's tickets (under `clause`, the institution as
    :c) with a matching article, as far as the budget reaches: the index read by ranges of
    article ids, newest first (`by_ranges`)."""
    if is_postgres(conn):  # one table, the institution's part of it (storage/pg_search)
        more: dict[str, Any] = {}
        holds = pg_search.matches(terms, more, people=False)
        pairs = pg_search.json_list("json_build_array(t.updated_at, t.number)")
        select = (
            f"SELECT {pairs} FROM tickets t "  # noqa: S608 - fixed fragments
            f"WHERE {clause} AND t.number IN (SELECT a.ticket FROM search_index p "
            "JOIN articles a ON a.id = p.article WHERE p.customer = :c AND "
            f"p.article BETWEEN :low AND :high AND {holds} "
            "AND a.automatic = 0 AND a.direction IN ('in', 'out'))"
        )
    else:
        table, article, more = _article_matches(terms, params["c"])
        select = (
            "SELECT json_group_array(json_array(t.updated_at, t.number)) FROM tickets t "  # noqa: S608 - fixed fragments
            f"WHERE {clause} AND t.number IN (SELECT a.ticket FROM {table} p "
            f"JOIN articles a ON a.id = p.rowid WHERE {table} MATCH :m "
            f"AND p.rowid BETWEEN :low AND :high AND {article})"
        )
    return [(str(u), int(n)) for u, n in by_ranges(conn, select, {**params, **more}, budget)]


def search_tickets(
    conn: Conn,
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
    if number.isascii() and number.isdigit() and len(number) < 12:
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
    page: object = ordered[offset : offset + limit]
    if is_postgres(conn):
        among = "t.number = ANY(CAST(:page AS BIGINT[]))"
    else:
        among, page = "t.number IN (SELECT value FROM json_each(:page))", json.dumps(page)
    rows = conn.execute(  # the page's rows: at most `limit` lookups, outside the budget
        f"SELECT {_COLUMNS} FROM tickets t WHERE t.customer = :c AND {among} {_ORDER}",  # noqa: S608 - fixed fragments
        {"c": customer, "page": page},
    ).fetchall()
    return TicketList(tuple(_web_ticket(r) for r in rows), len(ordered), budget.cut)
