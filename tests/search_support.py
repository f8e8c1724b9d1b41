"""A database of the backend under test for the search's storage tests (no daemon), and the
search index read as either backend holds it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from conftest import fresh_database, on_postgres

from ticketmail.storage import pg_search, postgres
from ticketmail.storage._schema import migrate
from ticketmail.storage.dialect import Conn
from ticketmail.storage.fulltext import institution_token, terms_of


@contextmanager
def blank_database(directory: Path) -> Iterator[Any]:
    """A new database at the current schema: SQLite in `directory`, or a fresh PostgreSQL
    database (autocommit) when the suite runs on PostgreSQL."""
    conn: Any
    if on_postgres():
        conn = postgres.connect(fresh_database())
    else:
        conn = sqlite3.connect(directory / "t.sqlite3", isolation_level=None)
        conn.row_factory = sqlite3.Row
        migrate(conn)
    try:
        yield conn
    finally:
        conn.close()


def another(conn: Any) -> Any:
    """A second connection to the same database (another node's writer; SQLite: another
    process's, waiting for the write lock up to 10 s)."""
    if on_postgres():
        return postgres.connect(conn.raw.info.dsn)
    (path,) = [r[2] for r in conn.execute("PRAGMA database_list") if r[1] == "main"]
    other = sqlite3.connect(path, isolation_level=None, timeout=10, check_same_thread=False)
    other.row_factory = sqlite3.Row
    return other


def rows_of(conn: Conn, customer: str) -> list[int]:
    """The index's articles under an institution (SQLite: its token's rows)."""
    if on_postgres():
        sql = "SELECT article FROM search_index WHERE customer = ? ORDER BY article"
        return [r[0] for r in conn.execute(sql, (customer,))]
    match = f'customer : "{institution_token(customer)}"'
    return [r[0] for r in conn.execute(
        "SELECT rowid FROM article_grams WHERE article_grams MATCH ? ORDER BY rowid", (match,)
    )]  # fmt: skip


def index_matches(conn: Conn, q: str, customer: str | None) -> list[int]:
    """The articles the index itself gives for `q`'s parts of words (within an institution)."""
    terms = terms_of(q)
    if on_postgres():
        params: dict[str, Any] = {"c": customer}
        where = pg_search.matches(terms, params, people=True)
        if customer is not None:
            where += " AND p.customer = :c"
        sql = f"SELECT p.article FROM search_index p WHERE {where} ORDER BY p.article"  # noqa: S608
        return [r[0] for r in conn.execute(sql, params)]
    match = terms.grams_match("{subject people body}", customer)
    return [r[0] for r in conn.execute(
        "SELECT rowid FROM article_grams WHERE article_grams MATCH ? ORDER BY rowid", (match,)
    )]  # fmt: skip


def found_word(conn: Conn, word: str) -> list[int]:
    """The articles holding `word` as a whole word (SQLite: the unicode61 index; PostgreSQL's
    index keeps words of one or two characters only, and finds longer ones in its text)."""
    if on_postgres():
        return index_matches(conn, word, None)
    return [r[0] for r in conn.execute(
        "SELECT rowid FROM article_search WHERE article_search MATCH ? ORDER BY rowid",
        (f'"{word}"',),
    )]  # fmt: skip


def found_part(conn: Conn, part: str) -> list[int]:
    """The articles whose folded text holds `part` (three characters or more)."""
    if on_postgres():
        return index_matches(conn, part, None)
    return [r[0] for r in conn.execute(
        "SELECT rowid FROM article_grams WHERE article_grams MATCH ? ORDER BY rowid",
        (f'"{part}"',),
    )]  # fmt: skip


def integrity_check(conn: Conn) -> None:
    """FTS5's own check of both indexes against the articles (SQLite only: PostgreSQL's index
    is a table with nothing of its own to check)."""
    if not on_postgres():
        conn.execute("INSERT INTO article_search(article_search) VALUES ('integrity-check')")
        conn.execute("INSERT INTO article_grams(article_grams) VALUES ('integrity-check')")
