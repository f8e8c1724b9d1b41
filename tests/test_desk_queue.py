"""The desk's queue over a real database (either backend): the counts per status the triggers keep
match the tickets after any change, the migration counts what is there, and a search for a
word in nearly every article reads only the newest matching articles (all of them within one
institution), saying so."""

from __future__ import annotations

import tempfile
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import writer_conn
from desk_schema import insert_article, undo_desk_schema, undo_schema_5
from hypothesis import given, settings
from hypothesis import strategies as st
from search_support import blank_database

from ticketmail.storage import desk as desk_db
from ticketmail.storage import search
from ticketmail.storage._schema import SCHEMA_VERSION, migrate
from ticketmail.storage.dialect import Conn

NOW = "2026-11-22T10:00:00+00:00"
WHEN = datetime.fromisoformat(NOW)
AGENTS = ("max@stueber.de", "mia@stueber.de")
STATUSES = ("new", "open", "answered", "closed")


def _database(directory: Path) -> Conn:
    conn = writer_conn(directory)
    _fill(conn)
    return conn


def _fill(conn: Any) -> None:
    """The institutions and the agents."""
    conn.execute("BEGIN")
    for number, name in (("10042", "Gymnasium"), ("20001", "Realschule")):
        conn.execute(
            "INSERT INTO customers(number, name, created_at) VALUES (?, ?, ?)", (number, name, NOW)
        )
    for email in AGENTS:
        conn.execute("INSERT INTO agents(email, name, created_at) VALUES (?, ?, ?)",
                     (email, email, NOW))  # fmt: skip
    conn.execute("COMMIT")


def _ticket(conn: Conn, number: int, customer: str = "10042") -> None:
    conn.execute(
        "INSERT INTO tickets(number, customer, requester, subject, status, created_at, "
        "updated_at) VALUES (?, ?, 'anna@schule.example', 'Frage', 'new', ?, ?)",
        (number, customer, NOW, f"2026-11-22T10:{number % 60:02d}:00+00:00"),
    )


def _queue(conn: Conn, **filters: object) -> desk_db.Queue:
    """The queue, once every article waiting is indexed (as the desk does before a search)."""
    while search.index_some(conn):
        pass
    chosen: dict[str, object] = {"status": None, "customer": None, "owner": None, "q": ""}
    chosen.update(filters)
    return desk_db.queue(conn, limit=50, offset=0, **chosen)  # type: ignore[arg-type]


def _truth(conn: Conn, owner: str | None) -> dict[str, int]:
    """The counts per status by counting the tickets themselves."""
    rows = conn.execute("SELECT status, owner FROM tickets").fetchall()
    return dict(Counter(
        r["status"] for r in rows
        if owner is None or (r["owner"] or "") == owner
    ))  # fmt: skip


_CHANGE = st.one_of(
    st.tuples(st.just("status"), st.integers(0, 9), st.sampled_from(STATUSES)),
    st.tuples(st.just("owner"), st.integers(0, 9), st.sampled_from((*AGENTS, None))),
    st.tuples(st.just("delete"), st.integers(0, 9), st.none()),
)


@settings(max_examples=40, deadline=None)
@given(tickets=st.integers(1, 10), changes=st.lists(_CHANGE, max_size=25))
def test_the_counts_per_status_and_owner_follow_every_change(
    tickets: int, changes: list[tuple[str, int, str | None]]
) -> None:
    """Whatever tickets come, change status or owner, or go: the queue's counts per status
    (all tickets, an owner's, nobody's) are those of the tickets themselves."""
    with tempfile.TemporaryDirectory() as tmp:
        conn = _database(Path(tmp))
        try:
            for i in range(tickets):
                _ticket(conn, 100001 + i)
            for kind, index, value in changes:
                number = 100001 + index
                if kind == "status":
                    conn.execute("UPDATE tickets SET status = ? WHERE number = ?", (value, number))
                elif kind == "owner":
                    desk_db.set_owner(conn, number, value, by="system", now=WHEN)
                else:  # its history first: PostgreSQL always keeps the foreign key
                    conn.execute("DELETE FROM ticket_history WHERE ticket = ?", (number,))
                    conn.execute("DELETE FROM tickets WHERE number = ?", (number,))
            for owner in (None, "", *AGENTS):
                queue = _queue(conn, owner=owner)
                assert dict(queue.counts) == _truth(conn, owner)
                assert queue.total == sum(_truth(conn, owner).values())
        finally:
            conn.close()


@pytest.mark.sqlite_only
def test_the_migration_counts_the_tickets_already_there(tmp_path: Path) -> None:
    """A version 4 database (before the kept counts) gets its tickets counted. (SQLite only:
    a migration of SQLite's schema; PostgreSQL has none before version 13.)"""
    conn = _database(tmp_path)
    _ticket(conn, 100001)
    _ticket(conn, 100002)
    desk_db.set_owner(conn, 100002, AGENTS[0], by="system", now=WHEN)
    conn.execute("UPDATE tickets SET status = 'closed' WHERE number = 100002")
    undo_schema_5(conn)
    _ticket(conn, 100003)
    migrate(conn)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert dict(_queue(conn).counts) == {"new": 2, "closed": 1}
    assert dict(_queue(conn, owner=AGENTS[0]).counts) == {"closed": 1}
    assert dict(_queue(conn, owner="").counts) == {"new": 2}
    conn.close()


@pytest.mark.sqlite_only
def test_a_version_3_database_is_counted_too(tmp_path: Path) -> None:
    """From before the desk (no owners yet), every ticket is counted as nobody's. (SQLite
    only: a migration of SQLite's schema.)"""
    conn = _database(tmp_path)
    _ticket(conn, 100001)
    undo_desk_schema(conn)
    conn.execute("PRAGMA user_version = 3")
    migrate(conn)
    assert dict(_queue(conn, owner="").counts) == {"new": 1}
    conn.close()


def test_a_search_in_too_many_articles_reads_the_newest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With more matching articles than the bound, the queue holds the tickets of the newest
    ones and says it is bounded; within one institution it finds every one; a rarer word or
    a search under the bound is not bounded."""
    monkeypatch.setattr(desk_db, "SEARCH_BOUND", 3)
    with blank_database(tmp_path) as conn:  # on the backend under test
        _fill(conn)
        _bounded_search(conn)


def _bounded_search(conn: Any) -> None:
    for i in range(6):
        _ticket(conn, 100001 + i, customer="10042" if i % 2 == 0 else "20001")
    for i in range(6):  # oldest article first: ticket 100006's is the newest
        insert_article(conn, 100001 + i, f"Der Toner ist leer, Nummer {i}.")
    insert_article(conn, 100002, "Papierstau im Fach zwei.")

    found = _queue(conn, q="toner")
    assert found.bounded
    assert sorted(t.number for t in found.tickets) == [100004, 100005, 100006]
    assert found.total == 3

    within = _queue(conn, q="toner", customer="10042")
    assert not within.bounded
    assert sorted(t.number for t in within.tickets) == [100001, 100003, 100005]

    rare = _queue(conn, q="papierstau")
    assert not rare.bounded
    assert [t.number for t in rare.tickets] == [100002]
    exact = _queue(conn, q="toner 3")
    assert not exact.bounded
    assert [t.number for t in exact.tickets] == [100004]
