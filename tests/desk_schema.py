"""Take a new database back to before the desk (schema 3), for the migration tests."""

from __future__ import annotations

import sqlite3

UNDO_DESK = """
DROP TRIGGER tickets_tally_insert;
DROP TRIGGER tickets_tally_delete;
DROP TRIGGER tickets_tally_update;
DROP TABLE ticket_tally;
DROP INDEX tickets_requester_any;
DROP TRIGGER articles_search_insert;
DROP TRIGGER articles_search_delete;
DROP TRIGGER articles_search_update;
DROP TABLE article_search;
DROP INDEX tickets_owner;
DROP INDEX tickets_status_updated;
ALTER TABLE tickets DROP COLUMN owner;
ALTER TABLE agents DROP COLUMN lang;
ALTER TABLE agents DROP COLUMN notify;
"""


def undo_desk_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(UNDO_DESK)
