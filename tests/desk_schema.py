"""Take a new database back to before the desk (schema 3), or to before schema 5 to
11, for the migration tests; and store an article the way the tests of those schemas need.

The undo_* functions are SQLite's schema history (the tests using them are sqlite_only);
insert_article works on either backend."""

from __future__ import annotations

import sqlite3

from ticketmail.storage._schema import DESK_SCHEMA, GRAMS_SCHEMA, QUEUE_SCHEMA
from ticketmail.storage.dialect import Conn

NOW = "2026-11-22T10:00:00+00:00"

# What schema 14 added: outbox entries claimed by a node for a lease.
DROP_OUTBOX_CLAIM = """
ALTER TABLE outbox DROP COLUMN claimed_by;
ALTER TABLE outbox DROP COLUMN lease_until;
"""

# What schema 13 added: waiting until a time.
DROP_WAITING = """
ALTER TABLE tickets DROP COLUMN waiting_until;
"""

# What schema 11 added: merged tickets' target.
DROP_MERGE = """
DROP INDEX tickets_merged_into;
ALTER TABLE tickets DROP COLUMN merged_into;
"""

# What schema 12 changed: the trigram index without the institution's column, the stale
# texts without their institution, schema 7's article triggers; both indexes emptied and
# every article waiting to be indexed, as schema 7's migration left them (the trigram rows
# of schema 11 go with its table).
UNDO_GRAMS = """
DROP TRIGGER tickets_grams_customer;
DROP TABLE article_grams;
CREATE VIRTUAL TABLE article_grams USING fts5(
    subject, people, body, content='', tokenize='trigram'
);
DELETE FROM search_stale;
ALTER TABLE search_stale DROP COLUMN customer;
""" + GRAMS_SCHEMA[GRAMS_SCHEMA.index("DROP TRIGGER articles_search_delete") :]

# What schema 10 added: ticket versions and the ticket history.
DROP_TEAM = """
DROP TABLE ticket_history;
ALTER TABLE tickets DROP COLUMN version;
ALTER TABLE articles DROP COLUMN version;
"""

# What schema 9 added: users' and registrations' phone numbers, tickets' channels.
DROP_PHONE = """
ALTER TABLE users DROP COLUMN phone;
ALTER TABLE registrations DROP COLUMN phone;
ALTER TABLE tickets DROP COLUMN channel;
"""

# What schema 8 added: the desk's text modules.
DROP_TEXTS = """
DROP TABLE text_modules;
"""

# What schema 7 added: the trigram index, the stale texts, and its article triggers (back to
# schema 6's).
UNDO_7 = """
DROP TABLE article_grams;
DROP TABLE search_stale;
DROP TRIGGER articles_search_delete;
DROP TRIGGER articles_search_update;
""" + QUEUE_SCHEMA[QUEUE_SCHEMA.index("CREATE TRIGGER articles_search_delete") :]

# What schema 6 added: the login limits' device column and cleared mark, the locks per
# device (back to one per address), the mail requests.
DROP_6 = """
DROP TABLE mail_requests;
DROP INDEX login_failures_device;
ALTER TABLE login_failures DROP COLUMN device;
ALTER TABLE login_failures DROP COLUMN cleared;
DROP TABLE login_locks;
CREATE TABLE login_locks (email TEXT PRIMARY KEY, until TEXT NOT NULL);
"""

# What schema 5 added: the kept counts, the requester index, the index's backlog and the
# article triggers that feed it.
DROP_5 = """
DROP TRIGGER tickets_tally_insert;
DROP TRIGGER tickets_tally_delete;
DROP TRIGGER tickets_tally_update;
DROP TABLE ticket_tally;
DROP INDEX tickets_requester_any;
DROP TABLE search_backlog;
DROP TRIGGER articles_search_insert;
DROP TRIGGER articles_search_delete;
DROP TRIGGER articles_search_update;
"""

UNDO_DESK = (
    DROP_OUTBOX_CLAIM
    + DROP_WAITING
    + UNDO_GRAMS
    + DROP_MERGE
    + DROP_TEAM
    + DROP_PHONE
    + DROP_TEXTS
    + UNDO_7
    + DROP_6
    + DROP_5
    + """
DROP TABLE article_search;
DROP INDEX tickets_owner;
DROP INDEX tickets_status_updated;
ALTER TABLE tickets DROP COLUMN owner;
ALTER TABLE agents DROP COLUMN lang;
ALTER TABLE agents DROP COLUMN notify;
"""
)

# Schema 4's article triggers (indexing inside the article's own transaction), as the desk's
# schema wrote them.
_FIRST = DESK_SCHEMA.index("CREATE TRIGGER articles_search_insert")
V4_TRIGGERS = DESK_SCHEMA[_FIRST : DESK_SCHEMA.index("INSERT INTO article_search(article_search)")]

INDEX_BACKLOG = """
INSERT INTO article_search(rowid, subject, sender, to_json, body_text)
SELECT a.id, a.subject, a.sender, a.to_json, a.body_text FROM search_backlog b
JOIN articles a ON a.id = b.article;
"""

CLEAR_BACKLOG = "DELETE FROM search_backlog;"


def undo_desk_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(UNDO_DESK)


def undo_schema_6(conn: sqlite3.Connection) -> None:
    """A new database's schema back to what version 5 had (its backlog indexed first)."""
    conn.executescript(
        DROP_OUTBOX_CLAIM
        + DROP_WAITING
        + UNDO_GRAMS
        + INDEX_BACKLOG
        + CLEAR_BACKLOG
        + DROP_MERGE
        + DROP_TEAM
        + DROP_PHONE
        + DROP_TEXTS
        + UNDO_7
        + DROP_6
        + "PRAGMA user_version = 5;"
    )


def undo_schema_5(conn: sqlite3.Connection) -> None:
    """A new database's schema back to what version 4 had (its backlog indexed first)."""
    conn.executescript(
        DROP_OUTBOX_CLAIM
        + DROP_WAITING
        + UNDO_GRAMS
        + INDEX_BACKLOG
        + DROP_MERGE
        + DROP_TEAM
        + DROP_PHONE
        + DROP_TEXTS
        + UNDO_7
        + DROP_6
        + DROP_5
        + V4_TRIGGERS
        + "PRAGMA user_version = 4;"
    )


def undo_schema_7(conn: sqlite3.Connection) -> None:
    """A new database's schema back to what version 6 had (its backlog indexed first)."""
    conn.executescript(
        DROP_OUTBOX_CLAIM
        + DROP_WAITING
        + UNDO_GRAMS
        + INDEX_BACKLOG
        + CLEAR_BACKLOG
        + DROP_MERGE
        + DROP_TEAM
        + DROP_PHONE
        + DROP_TEXTS
        + UNDO_7
        + "PRAGMA user_version = 6;"
    )


def insert_article(conn: Conn, ticket: int, text: str, subject: str = "Frage") -> None:
    """A customer's article on `ticket`, straight into the table (its triggers fire)."""
    conn.execute(
        "INSERT INTO articles(ticket, direction, automatic, sender, to_json, cc_json, subject, "
        "message_id, in_reply_to, references_json, body_text, reply_text, created_at) "
        "VALUES (?, 'in', 0, 'anna@schule.example', '[]', '[]', ?, '', '', '[]', ?, ?, ?)",
        (ticket, subject, text, text, NOW),
    )


def undo_schema_8(conn: sqlite3.Connection) -> None:
    """A new database's schema back to what version 7 had (before the text modules)."""
    conn.executescript(
        DROP_OUTBOX_CLAIM
        + DROP_WAITING
        + UNDO_GRAMS
        + DROP_MERGE
        + DROP_TEAM
        + DROP_PHONE
        + DROP_TEXTS
        + "PRAGMA user_version = 7;"
    )


def undo_schema_9(conn: sqlite3.Connection) -> None:
    """A new database's schema back to what version 8 had (before the phone numbers)."""
    conn.executescript(
        DROP_OUTBOX_CLAIM
        + DROP_WAITING
        + UNDO_GRAMS
        + DROP_MERGE
        + DROP_TEAM
        + DROP_PHONE
        + "PRAGMA user_version = 8;"
    )


def undo_schema_10(conn: sqlite3.Connection) -> None:
    """A new database's schema back to what version 9 had (before ticket versions)."""
    conn.executescript(
        DROP_OUTBOX_CLAIM
        + DROP_WAITING
        + UNDO_GRAMS
        + DROP_MERGE
        + DROP_TEAM
        + "PRAGMA user_version = 9;"
    )


def undo_schema_11(conn: sqlite3.Connection) -> None:
    """A new database's schema back to what version 10 had (before merged tickets)."""
    conn.executescript(
        DROP_OUTBOX_CLAIM + DROP_WAITING + UNDO_GRAMS + DROP_MERGE + "PRAGMA user_version = 10;"
    )


def undo_schema_12(conn: sqlite3.Connection) -> None:
    """A new database's schema back to what version 11 had (the trigram index without
    institutions; every article waits in the backlog, as schema 11's migration left it)."""
    conn.executescript(DROP_OUTBOX_CLAIM + DROP_WAITING + UNDO_GRAMS + "PRAGMA user_version = 11;")


def undo_schema_13(conn: sqlite3.Connection) -> None:
    """A new database's schema back to what version 12 had (before waiting times)."""
    conn.executescript(DROP_OUTBOX_CLAIM + DROP_WAITING + "PRAGMA user_version = 12;")


def undo_schema_14(conn: sqlite3.Connection) -> None:
    """A new database's schema back to what version 13 had (before outbox claims)."""
    conn.executescript(DROP_OUTBOX_CLAIM + "PRAGMA user_version = 13;")
