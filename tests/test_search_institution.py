"""The trigram index by institution (schema 11, storage/fulltext.py): each article's row
holds its institution's token, a search within one institution reads only that part of the
index and still lists only its tickets, moves between institutions and the migration keep
the index right (SPEC 8.4)."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import on_postgres
from desk_schema import undo_schema_12
from search_support import another, blank_database, index_matches, integrity_check, rows_of

from ticketmail.storage import desk as desk_db
from ticketmail.storage import portal_list, search
from ticketmail.storage._schema import SCHEMA_VERSION, migrate
from ticketmail.storage.dialect import insert_id
from ticketmail.storage.fulltext import gram_columns, institution_token, terms_of

NOW = "2026-11-22T10:00:00+00:00"
ALPHA, BETA = "10042", "20001"
TICKETS = {100001: ALPHA, 100002: BETA, 100003: ALPHA, 100004: BETA}


def _article(conn: Any, ticket: int, text: str) -> int:
    return insert_id(
        conn,
        "INSERT INTO articles(ticket, direction, automatic, sender, to_json, cc_json, subject, "
        "message_id, in_reply_to, references_json, body_text, reply_text, created_at) "
        "VALUES (?, 'in', 0, 'a@b.example', '[]', '[]', 'Frage', '', '', '[]', ?, '', ?)",
        (ticket, text, NOW),
    )


def _index(conn: Any) -> None:
    for _ in range(1000):  # bounded: a batch indexes at least one article
        if not search.index_some(conn):
            return
    raise AssertionError("the backlog did not empty")


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[Any]:
    """Two institutions of two tickets each; nothing indexed yet (on the backend under
    test)."""
    with blank_database(tmp_path) as conn:
        for number in (ALPHA, BETA):
            conn.execute(
                "INSERT INTO customers(number, name, created_at) VALUES (?, 'S', ?)",
                (number, NOW),
            )
        for number, customer in TICKETS.items():
            conn.execute(
                "INSERT INTO tickets(number, customer, requester, subject, status, created_at, "
                "updated_at) VALUES (?, ?, 'a@b.example', 'x', 'open', ?, ?)",
                (number, customer, NOW, NOW),
            )
        yield conn


def _rows_of(conn: Any, customer: str) -> list[int]:
    """The index's rows under the institution (SQLite: its token's)."""
    return rows_of(conn, customer)


def _index_matches(conn: Any, q: str, customer: str | None) -> list[int]:
    return index_matches(conn, q, customer)


def _portal(conn: Any, customer: str, q: str) -> list[int]:
    found = portal_list.search_tickets(
        conn, customer, q=q, status=None, requester=None, limit=50, offset=0, deadline=math.inf
    )
    assert not found.cut
    assert found.total == len(found.tickets)
    return sorted(t.number for t in found.tickets)


def _desk(conn: Any, customer: str | None, q: str) -> list[int]:
    found = desk_db.queue(conn, status=None, customer=customer, owner=None, q=q, limit=50, offset=0)
    assert found.total == len(found.tickets)
    return sorted(t.number for t in found.tickets)


def test_a_search_within_an_institution_reads_only_its_rows_of_the_index(
    conn: Any,
) -> None:
    """Each article is indexed under its institution's token, and a search's MATCH for one
    institution yields only that institution's articles from the index itself."""
    alpha = [_article(conn, 100001, "Die Zeugnisvorlage fehlt"),
             _article(conn, 100003, "Zeugnisvorlagen für Schüler")]  # fmt: skip
    beta = [_article(conn, 100002, "Auch hier: Zeugnisvorlage"),
            _article(conn, 100004, "Schülerausweis")]  # fmt: skip
    _index(conn)
    assert institution_token(ALPHA) != institution_token(BETA)
    assert _rows_of(conn, ALPHA) == alpha
    assert _rows_of(conn, BETA) == beta
    assert _index_matches(conn, "nisvorl", ALPHA) == alpha
    assert _index_matches(conn, "nisvorl", BETA) == beta[:1]
    assert _index_matches(conn, "nisvorl", None) == sorted(alpha + beta[:1])
    assert _index_matches(conn, "schuler", BETA) == beta[1:]
    # A token typed is no search term (not a word's characters), and the token column is
    # not among the columns a term is looked up in.
    assert not terms_of(institution_token(ALPHA))
    assert _portal(conn, BETA, f"Schüler {institution_token(ALPHA)}") == [100004]


def test_a_token_shared_with_another_institution_still_lists_only_its_own_tickets(
    conn: Any,
) -> None:
    """Should two institutions' tokens ever be the same, the portal's and the desk's search
    within one institution still never list the other's tickets (the SQL binds them to the
    institution's tickets)."""
    own = _article(conn, 100001, "Tonerkartusche leer")
    other = _article(conn, 100002, "Tonerkartusche auch leer")
    _index(conn)
    # The other institution's article indexed again under this institution's token, as a
    # collision of the two hashes would have it (PostgreSQL: its row under this institution,
    # as an index gone wrong would have it).
    if on_postgres():
        conn.execute("UPDATE search_index SET customer = ? WHERE article = ?", (ALPHA, other))
    else:
        conn.execute(
            "INSERT INTO article_grams(article_grams, rowid, subject, people, body, customer) "
            "VALUES ('delete', ?, ?, ?, ?, ?)",
            (other, *gram_columns("Frage", "a@b.example", "[]", "Tonerkartusche auch leer", BETA)),
        )
        conn.execute(
            "INSERT INTO article_grams(rowid, subject, people, body, customer) VALUES (?,?,?,?,?)",
            (other, *gram_columns("Frage", "a@b.example", "[]", "Tonerkartusche auch leer", ALPHA)),
        )
    assert _rows_of(conn, ALPHA) == [own, other]
    assert _portal(conn, ALPHA, "nerkart") == [100001]
    assert _desk(conn, ALPHA, "nerkart") == [100001]
    assert _portal(conn, BETA, "nerkart") == []


def test_the_desk_finds_parts_of_words_in_every_institution_or_in_one(
    conn: Any,
) -> None:
    """The desk's search without an institution finds parts of words (diacritics folded) in
    every institution's tickets; with one, in that institution's only; the portal likewise
    within its own."""
    _article(conn, 100001, "Der Schülerausweis ist weg")
    _article(conn, 100002, "SCHÜLERAUSWEISE bitte")
    _article(conn, 100004, "PC im Raum 12 aus")
    _index(conn)
    assert _desk(conn, None, "lerausw") == [100001, 100002]
    assert _desk(conn, ALPHA, "Schuler") == [100001]
    assert _desk(conn, BETA, "schüler") == [100002]
    assert _portal(conn, ALPHA, "schuler") == [100001]
    assert _portal(conn, BETA, "Schuleraus") == [100002]
    assert _portal(conn, BETA, "PC") == [100004]
    assert _portal(conn, ALPHA, "PC") == []


def test_an_article_or_ticket_moved_to_another_institution_is_found_there_only(
    conn: Any,
) -> None:
    """An article moved to another institution's ticket, or a ticket moved to another
    institution, is indexed again under its new institution; its old row leaves the index
    (no row is left under the old token)."""
    moved = _article(conn, 100001, "Beamerlampe kaputt")
    stays = _article(conn, 100003, "Beamerlampe flackert")
    _index(conn)
    conn.execute("UPDATE articles SET ticket = 100002 WHERE id = ?", (moved,))
    _index(conn)
    assert _rows_of(conn, ALPHA) == [stays]
    assert _rows_of(conn, BETA) == [moved]
    assert _portal(conn, BETA, "amerlam") == [100002]
    assert _portal(conn, ALPHA, "amerlam") == [100003]
    conn.execute("UPDATE tickets SET customer = ? WHERE number = 100003", (BETA,))
    _index(conn)
    assert _rows_of(conn, ALPHA) == []
    assert _rows_of(conn, BETA) == [moved, stays]
    assert _index_matches(conn, "amerlam", ALPHA) == []
    assert _portal(conn, BETA, "amerlam") == [100002, 100003]
    assert conn.execute("SELECT COUNT(*) FROM search_stale").fetchone()[0] == 0
    integrity_check(conn)


@pytest.mark.sqlite_only  # SQLite's migration from schema 11 (FTS5): PostgreSQL has no such past
def test_a_version_11_database_is_indexed_again_by_institution(
    conn: Any,
) -> None:
    """A database of schema 11, its articles indexed without institutions, migrates to the
    current version: its articles wait in the backlog and, indexed, are found by parts of
    words within their own institution only."""
    a = _article(conn, 100001, "Stundenplanänderung")
    b = _article(conn, 100002, "Stundenplan fehlt")
    undo_schema_12(conn)
    # Schema 11's indexer: both indexes, the trigram one without the institution.
    conn.execute(
        "INSERT INTO article_search(rowid, subject, sender, to_json, body_text) "
        "SELECT id, subject, sender, to_json, body_text FROM articles"
    )
    conn.executemany(
        "INSERT INTO article_grams(rowid, subject, people, body) VALUES (?, ?, ?, ?)",
        [(n, *gram_columns("Frage", "a@b.example", "[]", text, "")[:3])
         for n, text in ((a, "Stundenplanänderung"), (b, "Stundenplan fehlt"))],
    )  # fmt: skip
    conn.execute("DELETE FROM search_backlog")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 11
    migrate(conn)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert search.waiting(conn) == 2
    _index(conn)
    assert _rows_of(conn, ALPHA) == [a]
    assert _rows_of(conn, BETA) == [b]
    assert _portal(conn, ALPHA, "nplanand") == [100001]
    assert _portal(conn, BETA, "undenplan") == [100002]
    assert _desk(conn, None, "undenplan") == [100001, 100002]
    conn.execute("INSERT INTO article_search(article_search) VALUES ('integrity-check')")


def test_two_nodes_work_off_one_backlog_each_article_indexed_once(
    conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two writers (two nodes on PostgreSQL, two processes on SQLite) index the one backlog
    at the same time, batch by batch, each batch a write job: every article ends up in the
    index once, under its institution, and the backlog is empty (SPEC 10: any node keeps
    the index, one batch at a time)."""
    monkeypatch.setattr(search, "INDEX_BATCH_ARTICLES", 7)
    ids: dict[str, list[int]] = {ALPHA: [], BETA: []}
    for i in range(120):
        ticket = 100001 + i % 4
        ids[TICKETS[ticket]].append(_article(conn, ticket, f"Beamerlampe Nummer {i}"))
    other = another(conn)
    batches = {"first": 0, "other": 0}

    def work(c: Any, name: str) -> None:
        for _ in range(1000):  # bounded: each batch takes at least one article
            c.execute("BEGIN IMMEDIATE")
            left = search.index_some(c)
            c.execute("COMMIT")
            batches[name] += 1
            if not left:
                return

    try:
        second = threading.Thread(target=work, args=(other, "other"))
        second.start()
        work(conn, "first")
        second.join(timeout=60)
        assert not second.is_alive()
    finally:
        other.close()
    assert search.waiting(conn) == 0
    assert _rows_of(conn, ALPHA) == ids[ALPHA]
    assert _rows_of(conn, BETA) == ids[BETA]
    assert _index_matches(conn, "amerlam", None) == sorted(ids[ALPHA] + ids[BETA])
    assert batches["first"] + batches["other"] >= 120 // 7
    integrity_check(conn)
