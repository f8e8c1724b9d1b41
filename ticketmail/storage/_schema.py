"""The database's schema and its migrations, applied on the writer's connection at open."""

from __future__ import annotations

import sqlite3

from ticketmail.storage.dialect import Conn

__all__ = ["SCHEMA_VERSION", "migrate"]

SCHEMA_VERSION = 15

# The customer portal (SPEC 8): mail domains that vouch for an institution's users, login
# passwords (Argon2id), registrations, single-use tokens (stored hashed), server-side sessions
# (ids stored hashed), failed logins; the institution's tickets by last activity.
# IF NOT EXISTS: part of the whole schema of a new database and of the migration to 3.
WEB_SCHEMA = """
CREATE TABLE IF NOT EXISTS customer_domains (
    customer TEXT NOT NULL REFERENCES customers(number),
    domain TEXT NOT NULL,
    PRIMARY KEY (customer, domain)
);
CREATE TABLE IF NOT EXISTS passwords (
    email TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    changed_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS registrations (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL,
    customer TEXT NOT NULL,
    name TEXT NOT NULL,
    lang TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    confirmed_at TEXT,
    decided_at TEXT
);
CREATE INDEX IF NOT EXISTS registrations_email ON registrations(email, status);
CREATE TABLE IF NOT EXISTS web_tokens (
    hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    email TEXT NOT NULL,
    registration INTEGER REFERENCES registrations(id),
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT
);
CREATE INDEX IF NOT EXISTS web_tokens_email ON web_tokens(email, kind);
CREATE TABLE IF NOT EXISTS web_sessions (
    hash TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    created_at TEXT NOT NULL,
    seen_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS web_sessions_email ON web_sessions(email);
CREATE TABLE IF NOT EXISTS login_failures (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL,
    ip TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS login_failures_email ON login_failures(email, at);
CREATE INDEX IF NOT EXISTS login_failures_ip ON login_failures(ip, at);
CREATE TABLE IF NOT EXISTS login_locks (
    email TEXT PRIMARY KEY,
    until TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tickets_customer_updated ON tickets(customer, updated_at);
CREATE INDEX IF NOT EXISTS tickets_requester ON tickets(customer, requester);
CREATE INDEX IF NOT EXISTS attachments_article_id ON attachments(article, id);
"""

# The support desk (SPEC 9): a ticket's owner, an agent's language and notification choice,
# internal notes (articles with direction 'note'), and full-text search over every article
# (FTS5, an external-content index kept in step by triggers; the migration fills it).
DESK_SCHEMA = """
ALTER TABLE tickets ADD COLUMN owner TEXT;
CREATE INDEX tickets_owner ON tickets(owner, updated_at);
CREATE INDEX tickets_status_updated ON tickets(status, updated_at);
ALTER TABLE agents ADD COLUMN lang TEXT;
ALTER TABLE agents ADD COLUMN notify INTEGER NOT NULL DEFAULT 1;
CREATE VIRTUAL TABLE article_search USING fts5(
    subject, sender, to_json, body_text,
    content='articles', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
);
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
INSERT INTO article_search(article_search) VALUES ('rebuild');
"""

# The desk's counts per status (SPEC 9.1), kept by triggers in a row per owner and status:
# the queue's tabs read a few rows instead of counting every ticket on each page view.
# An owner of '' stands for none. The migration counts the tickets already there. The
# queue's search for an address finds its tickets by index, whatever their institution.
# And a new article is no longer indexed in the transaction that stores it (tokenizing a
# 10 KB text cost the intake's writer 0.6 ms, a 200 KB one ~10 ms): it waits in
# search_backlog, and storage/search.py indexes the backlog in batches when the writer is
# quiet, or at once before a search. An article still waiting is not in the index, so
# deleting or changing one removes it from the index only when it was indexed.
QUEUE_SCHEMA = """
CREATE INDEX tickets_requester_any ON tickets(requester);
CREATE TABLE ticket_tally (
    owner TEXT NOT NULL,
    status TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (owner, status)
) WITHOUT ROWID;
CREATE TRIGGER tickets_tally_insert AFTER INSERT ON tickets BEGIN
    INSERT INTO ticket_tally(owner, status, n) VALUES (coalesce(new.owner, ''), new.status, 1)
    ON CONFLICT(owner, status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER tickets_tally_delete AFTER DELETE ON tickets BEGIN
    UPDATE ticket_tally SET n = n - 1 WHERE owner = coalesce(old.owner, '') AND status = old.status;
END;
CREATE TRIGGER tickets_tally_update AFTER UPDATE OF status, owner ON tickets
WHEN old.status IS NOT new.status OR old.owner IS NOT new.owner BEGIN
    UPDATE ticket_tally SET n = n - 1 WHERE owner = coalesce(old.owner, '') AND status = old.status;
    INSERT INTO ticket_tally(owner, status, n) VALUES (coalesce(new.owner, ''), new.status, 1)
    ON CONFLICT(owner, status) DO UPDATE SET n = n + 1;
END;
INSERT INTO ticket_tally(owner, status, n)
    SELECT coalesce(owner, ''), status, COUNT(*) FROM tickets GROUP BY 1, 2;
CREATE TABLE search_backlog (article INTEGER PRIMARY KEY);
DROP TRIGGER articles_search_insert;
DROP TRIGGER articles_search_delete;
DROP TRIGGER articles_search_update;
CREATE TRIGGER articles_search_insert AFTER INSERT ON articles BEGIN
    INSERT INTO search_backlog(article) VALUES (new.id);
END;
CREATE TRIGGER articles_search_delete AFTER DELETE ON articles BEGIN
    INSERT INTO article_search(article_search, rowid, subject, sender, to_json, body_text)
    SELECT 'delete', old.id, old.subject, old.sender, old.to_json, old.body_text
    WHERE NOT EXISTS (SELECT 1 FROM search_backlog WHERE article = old.id);
    DELETE FROM search_backlog WHERE article = old.id;
END;
CREATE TRIGGER articles_search_update AFTER UPDATE OF subject, sender, to_json, body_text
ON articles BEGIN
    INSERT INTO article_search(article_search, rowid, subject, sender, to_json, body_text)
    SELECT 'delete', old.id, old.subject, old.sender, old.to_json, old.body_text
    WHERE NOT EXISTS (SELECT 1 FROM search_backlog WHERE article = old.id);
    INSERT OR IGNORE INTO search_backlog(article) VALUES (new.id);
END;
"""

# The portal's login and mail limits (SPEC 8.2): a failed login names the browser's device
# cookie (`device`, a hash of its nonce; NULL for a browser without one) and is `cleared`,
# not deleted, when a reset lifts the address's locks (a source's count never goes down);
# a lock belongs to an address and a device ('' for every browser without a device cookie);
# every request for a reset or confirmation mail is kept for an hour's counts. The locks of
# version 5 are kept as locks for browsers without a device cookie.
LIMITS_SCHEMA = """
ALTER TABLE login_failures ADD COLUMN device TEXT;
ALTER TABLE login_failures ADD COLUMN cleared INTEGER NOT NULL DEFAULT 0;
CREATE INDEX login_failures_device ON login_failures(email, device, at);
CREATE TABLE login_locks_6 (
    email TEXT NOT NULL,
    device TEXT NOT NULL,
    until TEXT NOT NULL,
    PRIMARY KEY (email, device)
) WITHOUT ROWID;
INSERT INTO login_locks_6(email, device, until) SELECT email, '', until FROM login_locks;
DROP TABLE login_locks;
ALTER TABLE login_locks_6 RENAME TO login_locks;
CREATE TABLE mail_requests (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL,
    source TEXT NOT NULL,
    at TEXT NOT NULL,
    granted INTEGER NOT NULL
);
CREATE INDEX mail_requests_email ON mail_requests(email, granted, at);
CREATE INDEX mail_requests_source ON mail_requests(source, at);
"""

# Parts of words (SPEC 8.4): a trigram index over a folded copy of each article's text
# (storage/fulltext.py: SQLite before 3.45 cannot fold diacritics in a trigram index), kept
# contentless, so the text is not stored twice. The indexer (storage/search.py) fills it
# with the unicode61 index from the same backlog. A contentless index forgets an article
# only when given the text it indexed: the triggers keep an indexed article's old text in
# search_stale when it changes or goes, and the indexer takes it out. The migration empties
# the unicode61 index and puts every article in the backlog: the daemon's indexer fills both
# in the background (a search meanwhile says it was cut short).
GRAMS_SCHEMA = """
CREATE VIRTUAL TABLE article_grams USING fts5(
    subject, people, body, content='', tokenize='trigram'
);
CREATE TABLE search_stale (
    id INTEGER PRIMARY KEY,
    article INTEGER NOT NULL,
    subject TEXT NOT NULL,
    sender TEXT NOT NULL,
    to_json TEXT NOT NULL,
    body_text TEXT NOT NULL
);
DROP TRIGGER articles_search_delete;
DROP TRIGGER articles_search_update;
CREATE TRIGGER articles_search_delete AFTER DELETE ON articles BEGIN
    INSERT INTO article_search(article_search, rowid, subject, sender, to_json, body_text)
    SELECT 'delete', old.id, old.subject, old.sender, old.to_json, old.body_text
    WHERE NOT EXISTS (SELECT 1 FROM search_backlog WHERE article = old.id);
    INSERT INTO search_stale(article, subject, sender, to_json, body_text)
    SELECT old.id, old.subject, old.sender, old.to_json, old.body_text
    WHERE NOT EXISTS (SELECT 1 FROM search_backlog WHERE article = old.id);
    DELETE FROM search_backlog WHERE article = old.id;
END;
CREATE TRIGGER articles_search_update AFTER UPDATE OF subject, sender, to_json, body_text
ON articles BEGIN
    INSERT INTO article_search(article_search, rowid, subject, sender, to_json, body_text)
    SELECT 'delete', old.id, old.subject, old.sender, old.to_json, old.body_text
    WHERE NOT EXISTS (SELECT 1 FROM search_backlog WHERE article = old.id);
    INSERT INTO search_stale(article, subject, sender, to_json, body_text)
    SELECT old.id, old.subject, old.sender, old.to_json, old.body_text
    WHERE NOT EXISTS (SELECT 1 FROM search_backlog WHERE article = old.id);
    INSERT OR IGNORE INTO search_backlog(article) VALUES (new.id);
END;
INSERT INTO article_search(article_search) VALUES ('delete-all');
INSERT OR IGNORE INTO search_backlog(article) SELECT id FROM articles;
"""

# The desk's text modules (SPEC 9.1): canned answers per language, with who wrote and last
# changed them. Their placeholders are checked when saved and filled in by plain substitution.
TEXTS_SCHEMA = """
CREATE TABLE text_modules (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    lang TEXT NOT NULL,
    body TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX text_modules_lang ON text_modules(lang, title);
"""

# Phone numbers and channels (SPEC 9.1): a user's phone number ('' for none), also asked at
# registration; how a ticket came in: 'mail', 'web', 'phone' or 'other' (the last two: taken
# by an agent in the desk). Tickets already there: 'web' when their first article was written
# in the portal (no message, flagged web), else 'mail'.
PHONE_SCHEMA = """
ALTER TABLE users ADD COLUMN phone TEXT NOT NULL DEFAULT '';
ALTER TABLE registrations ADD COLUMN phone TEXT NOT NULL DEFAULT '';
ALTER TABLE tickets ADD COLUMN channel TEXT NOT NULL DEFAULT 'mail';
UPDATE tickets SET channel = 'web' WHERE (
    SELECT a.message IS NULL AND a.flags_json LIKE '%"web"%' FROM articles a
    WHERE a.ticket = tickets.number ORDER BY a.id LIMIT 1
);
"""

# A desk for a team (SPEC 9.1): every change of a ticket raises its `version` (a counter
# per ticket; an article, and a history entry, keep the version they made), so a desk form
# carries the version its page showed and a stale one is refused in the write job that
# would act. `ticket_history`: every change of status, owner, merge and waiting time, with
# who (`actor`: an agent's or customer's address, or 'system') and when. Existing tickets
# and articles start at version 0.
TEAM_SCHEMA = """
ALTER TABLE tickets ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE articles ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
CREATE TABLE ticket_history (
    id INTEGER PRIMARY KEY,
    ticket INTEGER NOT NULL REFERENCES tickets(number),
    version INTEGER NOT NULL,
    what TEXT NOT NULL,
    old TEXT,
    new TEXT,
    actor TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX ticket_history_ticket ON ticket_history(ticket, version);
"""

# Merge (SPEC 9.1): a merged ticket's `merged_into` names the ticket that took its articles
# (its status is 'merged'); a later mail naming it lands there.
MERGE_SCHEMA = """
ALTER TABLE tickets ADD COLUMN merged_into INTEGER REFERENCES tickets(number);
CREATE INDEX tickets_merged_into ON tickets(merged_into) WHERE merged_into IS NOT NULL;
"""

# The trigram index by institution (SPEC 8.4): each row of `article_grams` also holds its
# article's institution as one trigram in the column `customer` (storage/fulltext.py:
# institution_token), so that a search within one institution reads the postings of that
# institution's articles, not of every article. A contentless index forgets a row only when
# given what it indexed, the institution too: search_stale keeps the institution an
# article was indexed for, and an article that moves to another ticket, or a ticket to
# another institution, is indexed again (its old row goes as stale). The migration builds
# the index anew: it empties both indexes and puts every article in the backlog, which the
# daemon's indexer works through in the background (as schema 7 did).
GRAMS_BY_CUSTOMER_SCHEMA = """
DROP TABLE article_grams;
CREATE VIRTUAL TABLE article_grams USING fts5(
    subject, people, body, customer, content='', tokenize='trigram'
);
DELETE FROM search_stale;
ALTER TABLE search_stale ADD COLUMN customer TEXT NOT NULL DEFAULT '';
DROP TRIGGER articles_search_delete;
DROP TRIGGER articles_search_update;
CREATE TRIGGER articles_search_delete AFTER DELETE ON articles BEGIN
    INSERT INTO article_search(article_search, rowid, subject, sender, to_json, body_text)
    SELECT 'delete', old.id, old.subject, old.sender, old.to_json, old.body_text
    WHERE NOT EXISTS (SELECT 1 FROM search_backlog WHERE article = old.id);
    INSERT INTO search_stale(article, subject, sender, to_json, body_text, customer)
    SELECT old.id, old.subject, old.sender, old.to_json, old.body_text,
        coalesce((SELECT customer FROM tickets WHERE number = old.ticket), '')
    WHERE NOT EXISTS (SELECT 1 FROM search_backlog WHERE article = old.id);
    DELETE FROM search_backlog WHERE article = old.id;
END;
CREATE TRIGGER articles_search_update AFTER UPDATE OF subject, sender, to_json, body_text,
ticket ON articles BEGIN
    INSERT INTO article_search(article_search, rowid, subject, sender, to_json, body_text)
    SELECT 'delete', old.id, old.subject, old.sender, old.to_json, old.body_text
    WHERE NOT EXISTS (SELECT 1 FROM search_backlog WHERE article = old.id);
    INSERT INTO search_stale(article, subject, sender, to_json, body_text, customer)
    SELECT old.id, old.subject, old.sender, old.to_json, old.body_text,
        coalesce((SELECT customer FROM tickets WHERE number = old.ticket), '')
    WHERE NOT EXISTS (SELECT 1 FROM search_backlog WHERE article = old.id);
    INSERT OR IGNORE INTO search_backlog(article) VALUES (new.id);
END;
CREATE TRIGGER tickets_grams_customer AFTER UPDATE OF customer ON tickets
WHEN old.customer IS NOT new.customer BEGIN
    INSERT INTO article_search(article_search, rowid, subject, sender, to_json, body_text)
    SELECT 'delete', a.id, a.subject, a.sender, a.to_json, a.body_text FROM articles a
    WHERE a.ticket = old.number
    AND NOT EXISTS (SELECT 1 FROM search_backlog WHERE article = a.id);
    INSERT INTO search_stale(article, subject, sender, to_json, body_text, customer)
    SELECT a.id, a.subject, a.sender, a.to_json, a.body_text, old.customer FROM articles a
    WHERE a.ticket = old.number
    AND NOT EXISTS (SELECT 1 FROM search_backlog WHERE article = a.id);
    INSERT OR IGNORE INTO search_backlog(article)
    SELECT id FROM articles WHERE ticket = new.number;
END;
INSERT INTO article_search(article_search) VALUES ('delete-all');
INSERT OR IGNORE INTO search_backlog(article) SELECT id FROM articles;
"""

# Waiting until a time (SPEC 9.1): a ticket of status 'waiting' is open again at
# `waiting_until` (ISO 8601 UTC, as every timestamp); NULL on every ticket that is not
# waiting. The daemon's scheduler finds the waiting ones by tickets_status_updated.
WAITING_SCHEMA = """
ALTER TABLE tickets ADD COLUMN waiting_until TEXT;
"""

# The outbox claimed, never shared (SPEC 10): before it sends a due entry a node's worker
# claims it in a write job: `claimed_by` its node.name, `lease_until` (ISO 8601 UTC) when
# another node may take it, should this one die mid-send. `lease_until` is NULL once the
# attempt is concluded (sent, failed, deferred) or given back; `claimed_by` keeps who tried last.
OUTBOX_CLAIM_SCHEMA = """
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
ALTER TABLE outbox ADD COLUMN lease_until TEXT;
"""

SCHEMA = (
    """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE customers (
    number TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    support_until TEXT,
    trial_until TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE users (
    email TEXT PRIMARY KEY,
    customer TEXT NOT NULL REFERENCES customers(number),
    name TEXT NOT NULL DEFAULT '',
    lang TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX users_customer ON users(customer);
CREATE TABLE agents (
    email TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE tickets (
    number INTEGER PRIMARY KEY,
    customer TEXT NOT NULL REFERENCES customers(number),
    requester TEXT NOT NULL,
    subject TEXT NOT NULL,
    status TEXT NOT NULL,
    automatic INTEGER NOT NULL DEFAULT 0,
    previous_number INTEGER,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    closed_at TEXT
);
CREATE INDEX tickets_customer ON tickets(customer, status);
CREATE INDEX tickets_updated ON tickets(updated_at);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    received_at TEXT NOT NULL,
    envelope_from TEXT NOT NULL,
    envelope_to TEXT NOT NULL,
    header_from TEXT NOT NULL,
    message_id TEXT NOT NULL,
    raw_sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL,
    ticket INTEGER,
    reply TEXT NOT NULL
);
CREATE UNIQUE INDEX messages_dedup ON messages(message_id, header_from);
CREATE TABLE articles (
    id INTEGER PRIMARY KEY,
    ticket INTEGER NOT NULL REFERENCES tickets(number),
    message INTEGER REFERENCES messages(id),
    direction TEXT NOT NULL,
    automatic INTEGER NOT NULL,
    sender TEXT NOT NULL,
    to_json TEXT NOT NULL,
    cc_json TEXT NOT NULL,
    subject TEXT NOT NULL,
    date TEXT,
    message_id TEXT NOT NULL,
    in_reply_to TEXT NOT NULL,
    references_json TEXT NOT NULL,
    body_text TEXT NOT NULL,
    reply_text TEXT NOT NULL,
    raw_sha256 TEXT,
    note TEXT,
    flags_json TEXT NOT NULL DEFAULT '[]',
    created_at TEXT NOT NULL
);
CREATE INDEX articles_ticket ON articles(ticket);
CREATE INDEX articles_message_id ON articles(message_id);
CREATE TABLE attachments (
    id INTEGER PRIMARY KEY,
    article INTEGER NOT NULL REFERENCES articles(id),
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    content_id TEXT
);
CREATE INDEX attachments_article ON attachments(article);
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    kind TEXT NOT NULL,
    ticket INTEGER,
    recipient TEXT NOT NULL,
    sender TEXT NOT NULL,
    message_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    raw BLOB NOT NULL,
    automatic INTEGER NOT NULL,
    status TEXT NOT NULL,
    queued_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    last_error TEXT NOT NULL DEFAULT '',
    sent_at TEXT
);
CREATE INDEX outbox_due ON outbox(status, next_attempt_at);
CREATE INDEX outbox_message_id ON outbox(message_id);
CREATE INDEX outbox_recipient ON outbox(recipient, automatic, created_at);
CREATE INDEX outbox_ticket ON outbox(ticket, automatic, created_at);
CREATE TABLE suppressions (
    address TEXT PRIMARY KEY,
    until TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE held (
    id INTEGER PRIMARY KEY,
    received_at TEXT NOT NULL,
    envelope_from TEXT NOT NULL,
    envelope_to TEXT NOT NULL,
    sender TEXT NOT NULL,
    raw_sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    reason TEXT NOT NULL,
    status TEXT NOT NULL,
    outcome TEXT NOT NULL DEFAULT '',
    resolved_at TEXT
);
CREATE TABLE quarantine (
    id INTEGER PRIMARY KEY,
    received_at TEXT NOT NULL,
    envelope_from TEXT NOT NULL,
    envelope_to TEXT NOT NULL,
    raw_sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    error TEXT NOT NULL,
    status TEXT NOT NULL,
    outcome TEXT NOT NULL DEFAULT '',
    resolved_at TEXT
);
"""
    + WEB_SCHEMA
    + DESK_SCHEMA
    + QUEUE_SCHEMA
    + LIMITS_SCHEMA
    + GRAMS_SCHEMA
    + TEXTS_SCHEMA
    + PHONE_SCHEMA
    + TEAM_SCHEMA
    + MERGE_SCHEMA
    + GRAMS_BY_CUSTOMER_SCHEMA
    + WAITING_SCHEMA
    + OUTBOX_CLAIM_SCHEMA
)

# What takes a database of version N to N + 1: MIGRATIONS[N - 1]. A new database gets
# SCHEMA, which is always the latest version as a whole.
MIGRATIONS = [
    # 1 -> 2: the auto-reply counts (per address, per ticket) read the index alone.
    """
DROP INDEX outbox_recipient;
CREATE INDEX outbox_recipient ON outbox(recipient, automatic, created_at);
DROP INDEX outbox_ticket;
CREATE INDEX outbox_ticket ON outbox(ticket, automatic, created_at);
""",
    # 2 -> 3: the customer portal's tables.
    WEB_SCHEMA,
    # 3 -> 4: the support desk: owners, agents' settings, notes, full-text search.
    DESK_SCHEMA,
    # 4 -> 5: the desk's counts per status and owner; articles indexed after their commit.
    QUEUE_SCHEMA,
    # 5 -> 6: login limits per device cookie, address and source; mail requests counted.
    LIMITS_SCHEMA,
    # 6 -> 7: parts of words: the trigram index, filled in the background.
    GRAMS_SCHEMA,
    # 7 -> 8: the desk's text modules.
    TEXTS_SCHEMA,
    # 8 -> 9: phone numbers of users and registrations; the channel a ticket came by.
    PHONE_SCHEMA,
    # 9 -> 10: ticket versions for the desk's stale-form check, and the ticket history.
    TEAM_SCHEMA,
    # 10 -> 11: merged tickets name the ticket they were merged into.
    MERGE_SCHEMA,
    # 11 -> 12: the trigram index holds each article's institution, filled in the background.
    GRAMS_BY_CUSTOMER_SCHEMA,
    # 12 -> 13: waiting until a time.
    WAITING_SCHEMA,
    # 13 -> 14: outbox entries claimed by a node for a lease.
    OUTBOX_CLAIM_SCHEMA,
    # 14 -> 15: nothing in SQLite (PostgreSQL: ticket numbers from a sequence, the desk's
    # tally per writer; `_pg_schema.PG_MIGRATIONS`).
    "",
]
assert len(MIGRATIONS) == SCHEMA_VERSION - 1


def _version(conn: Conn) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: Conn) -> None:
    """Bring the database to SCHEMA_VERSION in one transaction (a new one gets SCHEMA).

    Another process may migrate at the same time: the version is read again once this
    connection holds the write lock.
    """
    if _version(conn) >= SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = _version(conn)
        if found < SCHEMA_VERSION:
            steps = [SCHEMA] if found == 0 else MIGRATIONS[found - 1 :]
            for script in steps:
                statement = ""
                for piece in script.split(";"):  # a trigger's body holds ';' of its own
                    statement += piece + ";"
                    if sqlite3.complete_statement(statement):
                        if statement.strip(" \n;"):
                            conn.execute(statement)
                        statement = ""
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
