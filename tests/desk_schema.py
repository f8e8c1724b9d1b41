"""Take a new database back to before the desk (schema 3), or to before schema 5, for the
migration tests."""

from __future__ import annotations

import sqlite3

UNDO_DESK = """
DROP TRIGGER tickets_tally_insert;
DROP TRIGGER tickets_tally_delete;
DROP TRIGGER tickets_tally_update;
DROP TABLE ticket_tally;
DROP INDEX tickets_requester_any;
DROP TABLE search_backlog;
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


INDEX_BACKLOG = """
INSERT INTO article_search(rowid, subject, sender, to_json, body_text)
SELECT a.id, a.subject, a.sender, a.to_json, a.body_text FROM search_backlog b
JOIN articles a ON a.id = b.article;
"""
# Schema 5 back to 4: no kept counts, no backlog, articles indexed by their insert trigger.
UNDO_5 = """
DROP TRIGGER tickets_tally_insert;
DROP TRIGGER tickets_tally_delete;
DROP TRIGGER tickets_tally_update;
DROP TABLE ticket_tally;
DROP INDEX tickets_requester_any;
DROP TABLE search_backlog;
DROP TRIGGER articles_search_insert;
DROP TRIGGER articles_search_delete;
DROP TRIGGER articles_search_update;
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
PRAGMA user_version = 4;
"""


def undo_desk_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(UNDO_DESK)


def undo_schema_5(conn: sqlite3.Connection) -> None:
    """A new database's schema 5 back to what version 4 had (its backlog indexed first)."""
    conn.executescript(INDEX_BACKLOG + UNDO_5)
