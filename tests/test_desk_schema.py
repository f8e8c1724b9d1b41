"""The desk's schema comes to an existing database by migration 3 -> 4 (-> 5 -> 6 -> 7): the
full-text indexes are filled with the articles already there, and kept in step with new
ones."""

from __future__ import annotations

import math
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from desk_schema import insert_article, undo_desk_schema, undo_schema_7

from ticketmail.storage import desk as desk_db
from ticketmail.storage import portal_list
from ticketmail.storage._schema import SCHEMA_VERSION
from ticketmail.storage.store import CustomerRow, Store

NOW = "2026-11-22T10:00:00+00:00"

# SQLite only: these are migrations of SQLite's schema (undone with desk_schema's SQLite
# history, PRAGMA user_version); PostgreSQL's schema starts at version 13 and has none yet.
pytestmark = pytest.mark.sqlite_only


def _article(conn: sqlite3.Connection, ticket: int, text: str) -> None:
    insert_article(conn, ticket, text, subject="Drucker")


async def test_a_version_3_database_gets_its_articles_searchable(tmp_path: Path) -> None:
    """Articles stored before the desk are found by the queue's search after the migration,
    and an article added afterwards is found too."""
    store = await Store.open(tmp_path)
    await store.add_customers([CustomerRow("10042", "Gymnasium")], now=datetime.now(UTC))
    await store.close()
    path = tmp_path / "ticketmail.sqlite3"
    conn = sqlite3.connect(path)
    with conn:
        undo_desk_schema(conn)
        conn.execute(
            "INSERT INTO tickets(number, customer, requester, subject, status, created_at, "
            "updated_at) VALUES (100001, '10042', 'anna@schule.example', 'Drucker', 'new', ?, ?)",
            (NOW, NOW),
        )
        _article(conn, 100001, "Der Toner ist leer.")
        conn.execute("PRAGMA user_version = 3")
    conn.close()

    store = await Store.open(tmp_path)
    try:
        await store.catch_up_search()  # schema 6 indexes every article again, in the background
        found = await store.write(
            lambda c: desk_db.queue(
                c, status=None, customer=None, owner=None, q="toner", limit=10, offset=0
            )
        )
        assert [t.number for t in found.tickets] == [100001]
        await store.write(lambda c: _article(c, 100001, "Papierstau im Fach zwei."))
        await store.catch_up_search()  # as the desk does before a search
        found = await store.write(
            lambda c: desk_db.queue(
                c, status=None, customer=None, owner=None, q="papierstau", limit=10, offset=0
            )
        )
        assert [t.number for t in found.tickets] == [100001]
        nothing = await store.write(
            lambda c: desk_db.queue(
                c, status=None, customer=None, owner=None, q="quark", limit=10, offset=0
            )
        )
        assert nothing.tickets == ()
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()


async def test_a_version_6_database_finds_parts_of_words_of_its_articles(tmp_path: Path) -> None:
    """Articles stored before the trigram index (schema 5) are found by parts of words in
    the portal and the desk once the migration's backlog is indexed."""
    store = await Store.open(tmp_path)
    await store.add_customers([CustomerRow("10042", "Gymnasium")], now=datetime.now(UTC))
    await store.close()
    path = tmp_path / "ticketmail.sqlite3"
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "INSERT INTO tickets(number, customer, requester, subject, status, created_at, "
            "updated_at) VALUES (100001, '10042', 'anna@schule.example', 'Zeugnis', 'new', ?, ?)",
            (NOW, NOW),
        )
        _article(conn, 100001, "Die Zeugnisvorlage für die Schüler fehlt.")
    undo_schema_7(conn)
    conn.close()

    store = await Store.open(tmp_path)
    try:
        assert await store.catch_up_search() == 0
        found = await store.write(
            lambda c: desk_db.queue(
                c, status=None, customer=None, owner=None, q="nisvorl", limit=10, offset=0
            )
        )
        assert [t.number for t in found.tickets] == [100001]
        listed = await store.write(
            lambda c: portal_list.search_tickets(
                c, "10042", q="Schuler", status=None, requester=None, limit=10, offset=0,
                deadline=math.inf,
            )
        )  # fmt: skip
        assert [t.number for t in listed.tickets] == [100001]
    finally:
        await store.close()
