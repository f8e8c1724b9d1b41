"""The desk's schema comes to an existing database by migration 3 -> 4 (-> 5): the full-text
index is filled with the articles already there, and kept in step with new ones."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from desk_schema import insert_article, undo_desk_schema

from ticketmail.storage import desk as desk_db
from ticketmail.storage._schema import SCHEMA_VERSION
from ticketmail.storage.store import CustomerRow, Store

NOW = "2026-11-22T10:00:00+00:00"


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
