"""The search indexes kept up with the articles, outside the intake's transactions.

A new article waits in `search_backlog` (a trigger puts it there, SCHEMA 5). `index_some`
indexes the oldest waiting articles in both indexes (unicode61 `article_search`, trigram
`article_grams` with each article's institution, SCHEMA 6 and 11), a batch at a time, each
batch one write job: at most INDEX_BATCH_ARTICLES articles and about INDEX_BATCH_CHARS of
text, so a job never holds the writer long (~20 ms for 96 KB: the trigram index costs ~10
times the unicode61 one).
`SearchIndexer` runs it in the daemon: whenever the writer was quiet for a look (no COMMIT
but its own since the last), batch after batch BATCH_GAP apart while it stays quiet; else
one batch every TRICKLE_LOOKS looks while mail keeps coming, so that a long storm does not
leave everything to the end; once the backlog is empty it reads its size (never a write)
after each COMMIT of its process, and now and then while idle, for articles another process
stored. `catch_up` indexes the backlog before a search (within a
share of the search's time), so a search finds what was stored a moment ago.

On PostgreSQL the index is one table (storage/pg_search.py) and the backlog is shared: any
node's indexer works it off, one batch at a time (a batch job runs alongside other nodes'
jobs, and indexes nothing while another node's batch holds the key "search-batch"); its
triggers take a changed article out at once, so there is no stale text to forget.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog

from ticketmail.errors import TicketmailError
from ticketmail.storage import pg_search
from ticketmail.storage.database import Database
from ticketmail.storage.dialect import ALONGSIDE, DATABASE_ERRORS, Conn, is_postgres
from ticketmail.storage.fulltext import GRAMS_TEXT_CHARS, gram_columns
from ticketmail.storage.postgres import try_keys

__all__ = ["SearchIndexer", "catch_up", "index_some", "waiting"]

log = structlog.get_logger()

INDEX_BATCH_ARTICLES = 200
INDEX_BATCH_CHARS = 96 * 1024  # ~20 ms of tokenizing (both indexes) on the writer thread
# PostgreSQL's GIN indexes take text at ~1 MB/s (SQLite's FTS5 ~2.5 MB/s, on 10k articles of
# 1.2 KB): a batch holds the write lock about as long as SQLite's with a third of the text.
INDEX_BATCH_CHARS_POSTGRES = 32 * 1024
INDEX_PAUSE = 0.25  # seconds between the indexer's looks
BATCH_GAP = 0.02  # seconds after a batch, while the writer is quiet and articles wait
TRICKLE_LOOKS = 4  # while the writer is busy: one batch every this many looks
OTHERS_LOOKS = 20  # while idle, every this many looks: articles another process stored?


_WAITING = "SELECT COUNT(*) FROM search_backlog"
# What a failed batch raises (the indexer logs it and tries again at its next look).
_BATCH_FAILED: tuple[type[Exception], ...] = (*DATABASE_ERRORS, TicketmailError)


def waiting(conn: Conn) -> int:
    """How many articles wait to be indexed."""
    (count,) = conn.execute(_WAITING).fetchone()
    return int(count)


def _forget_stale(conn: Conn) -> bool:
    """Take the old text of changed, moved or deleted articles out of the trigram index
    (under the institution it was indexed for); whether all of it is out. (PostgreSQL's
    triggers take it out at once.)"""
    if is_postgres(conn):
        return True
    rows = conn.execute(
        "SELECT id, article, subject, sender, to_json, body_text, customer FROM search_stale "
        "ORDER BY id LIMIT ?",
        (INDEX_BATCH_ARTICLES,),
    ).fetchall()
    conn.executemany(
        "INSERT INTO article_grams(article_grams, rowid, subject, people, body, customer) "
        "VALUES ('delete', ?, ?, ?, ?, ?)",
        [(r[1], *gram_columns(r[2], r[3], r[4], r[5], r[6])) for r in rows],
    )
    conn.executemany("DELETE FROM search_stale WHERE id = ?", [(r[0],) for r in rows])
    return len(rows) < INDEX_BATCH_ARTICLES


def index_some(conn: Conn) -> int:
    """Index the oldest waiting articles (a batch) in both indexes; how many still wait.
    A job, alongside other nodes' jobs: while another node indexes a batch, this one
    indexes none (one batch at a time) and says the backlog still waits."""
    if not try_keys(conn, ("search-batch",)):
        return waiting(conn) or 1
    if not _forget_stale(conn):  # an article's old text goes before its new text comes
        return waiting(conn) + 1
    rows = conn.execute(
        "SELECT b.article, a.id, a.subject, a.sender, a.to_json, a.body_text, t.customer "
        "FROM search_backlog b LEFT JOIN articles a ON a.id = b.article "
        "LEFT JOIN tickets t ON t.number = a.ticket ORDER BY b.article LIMIT ?",
        (INDEX_BATCH_ARTICLES,),
    ).fetchall()
    limit = INDEX_BATCH_CHARS_POSTGRES if is_postgres(conn) else INDEX_BATCH_CHARS
    batch: list[tuple[int, str, str, str, str, str]] = []
    done: list[tuple[int]] = []
    size = 0
    for waiting_id, article, subject, sender, to_json, body, customer in rows:
        done.append((waiting_id,))
        if article is not None:  # gone meanwhile (the delete trigger takes it out anyway)
            batch.append((article, subject, sender, to_json, body, customer or ""))
            size += len(subject) + min(len(body or ""), GRAMS_TEXT_CHARS)
        if size >= limit:
            break
    if is_postgres(conn):
        conn.executemany(pg_search.INDEX_ROW, [pg_search.index_row(*row) for row in batch])
    else:
        conn.executemany(
            "INSERT INTO article_search(rowid, subject, sender, to_json, body_text) "
            "VALUES (?, ?, ?, ?, ?)",
            [row[:5] for row in batch],
        )
        conn.executemany(
            "INSERT INTO article_grams(rowid, subject, people, body, customer) "
            "VALUES (?, ?, ?, ?, ?)",
            [(row[0], *gram_columns(*row[1:])) for row in batch],
        )
    conn.executemany("DELETE FROM search_backlog WHERE article = ?", done)
    return waiting(conn)


async def catch_up(db: Database, *, until: float | None = None) -> int:
    """Index every article waiting now (batch by batch, other writes in between); how many
    still wait. Articles stored meanwhile are indexed too, as far as the batches reach: at
    most one batch more than were waiting at the start. With `until` (time.monotonic), no
    batch starts after it (a search's share of its budget)."""
    rounds = 0
    row = await db.fetchone(_WAITING)  # a read: no COMMIT
    left = int(row[0]) if row is not None else 0
    limit = left + 1  # each batch indexes at least one article
    while left and rounds < limit:
        if until is not None and time.monotonic() >= until:
            break
        left = await db.write(index_some, alongside=ALONGSIDE)
        rounds += 1
    return left


class SearchIndexer:
    """The daemon's task indexing the backlog in the background (see the module)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="search-index")

    async def _run(self) -> None:
        left = 1  # not known yet: look once
        mine = seen = -1  # the COMMIT count after our last batch; at the last look
        looks = 0
        gap = INDEX_PAUSE
        while True:
            await asyncio.sleep(gap)
            gap = INDEX_PAUSE
            if not self._db.availability.up:  # the database away: nothing to do till it is back
                continue
            looks += 1
            now = self._db.commits
            if not left:  # emptied: is anything waiting again? (a read, never a write)
                if now == mine and looks % OTHERS_LOOKS:
                    continue  # nothing committed here since; another process's, now and then
                try:
                    row = await self._db.fetchone(_WAITING)
                except TicketmailError as exc:  # the database away: the next look tries again
                    log.warning("search_index_failed", error=f"{type(exc).__name__}: {exc}")
                    continue
                if row is None or not row[0]:  # what was committed meanwhile added nothing
                    mine = now
                    continue
            busy = now != seen
            seen = now
            if busy and looks % TRICKLE_LOOKS:
                continue
            try:
                left = await self._db.write(index_some, alongside=ALONGSIDE)
            except _BATCH_FAILED as exc:  # the next look tries again
                log.warning("search_index_failed", error=f"{type(exc).__name__}: {exc}")
                continue
            mine = seen = self._db.commits
            if left and not busy:  # quiet: the next batch soon, unless others write meanwhile
                gap = BATCH_GAP

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
