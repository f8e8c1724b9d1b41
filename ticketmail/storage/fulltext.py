"""What a search typed, made into index queries, and a search's time budget (SPEC 8.4).

Two FTS5 indexes serve the portal and the desk. `article_grams` (trigram tokenizer) holds a
folded copy of each article's text (`fold`: no diacritics, case folded), so a term of three
characters or more finds any text containing it, inside words too (`Zeugnis` finds
`Zeugnisvorlage`, `Schuler` finds `Schüler`). SQLite's trigram tokenizer cannot fold
diacritics before 3.45 (Python's bundled SQLite is older), hence the folded copy. It cannot
find a term of one or two characters either: such a term (`PC`, `12`) is looked up as a word
in `article_search` (unicode61, diacritics removed), as before.

The trigram index spans every institution; a common word's postings are those of every
article. So each row also holds its institution as one trigram of its own in the column
`customer` (`institution_token`: three characters of the Private Use Area, from a hash of
the customer number; no typed word holds such characters), and a search within one
institution ANDs it to the words: FTS5 then steps through the words' postings only where
the institution's postings are, instead of reading every article's (a common word in one
institution of 100: 9 ms instead of 179, bench/README.md). The SQL still binds every search
to the institution's tickets: two institutions sharing a token would cost time, not leak.

`Budget` ends a search's SQL at its deadline (SQLite: a progress handler; PostgreSQL: the
connection's `statement_timeout`, set to the time left): a statement cut short raises
`sqlite3.OperationalError` or psycopg's `QueryCanceled`, and the caller keeps what the earlier
ones found. PostgreSQL's index is storage/pg_search.py's.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sqlite3
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from psycopg import errors as pg_errors

from ticketmail.storage.dialect import Conn
from ticketmail.storage.postgres import STATEMENT_TIMEOUT_MS, PgConn

__all__ = [
    "GRAMS_TEXT_CHARS",
    "MAX_QUERY",
    "MAX_TERMS",
    "Budget",
    "Terms",
    "by_ranges",
    "fold",
    "gram_columns",
    "institution_token",
    "terms_of",
]

MAX_QUERY = 200  # SPEC 8.4: what a search reads of `q`
MAX_TERMS = 12
# The trigram index takes at most this much of one article's text (the rest is found by
# whole words in the unicode61 index): indexing is ~5 MB/s, so one huge mail costs the
# writer at most ~50 ms.
GRAMS_TEXT_CHARS = 256 * 1024
FIRST_RANGE = 4096  # article ids the first range of `by_ranges` reads; each next one twice
# PostgreSQL: a budget longer than this (seconds) gets the connection's own
# statement_timeout (storage/postgres.py).
BUDGET_CAP = STATEMENT_TIMEOUT_MS / 1000
# How many SQLite VM steps between two looks at the clock (~0.5 ms of work).
PROGRESS_STEPS = 5000

_WORD = re.compile(r"\w[\w@.+-]*", re.UNICODE)
_MARKS = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


def fold(text: str, /) -> str:
    """Text as the trigram index holds it: compatibility-decomposed, without combining
    marks, case folded (`Schüler` → `schuler`, `Straße` → `strasse`)."""
    if text.isascii():
        return text.lower()
    return _MARKS.sub("", unicodedata.normalize("NFKD", text)).casefold()


# The Private Use Area's first 6,400 code points: an institution's token is three of them.
_TOKEN_BASE = 0xE000
_TOKEN_CHARS = 6400


def institution_token(customer: str, /) -> str:
    """The one trigram that stands for an institution in `article_grams`' column `customer`:
    three Private Use Area characters from a hash of its number (stable, no table to keep)."""
    n = int.from_bytes(hashlib.blake2b(customer.encode(), digest_size=8).digest(), "big")
    chars = []
    for _ in range(3):
        n, k = divmod(n, _TOKEN_CHARS)
        chars.append(chr(_TOKEN_BASE + k))
    return "".join(chars)


def gram_columns(
    subject: str, sender: str, to_json: str, body: str, customer: str
) -> tuple[str, str, str, str]:
    """An article's (subject, people, body, customer) as `article_grams` indexes them."""
    return (
        fold(subject),
        fold(f"{sender} {to_json}"),
        fold(body[:GRAMS_TEXT_CHARS]),
        institution_token(customer),
    )


@dataclass(frozen=True, slots=True)
class Terms:
    """A search's words: `grams` (folded, three characters or more) must each occur in the
    trigram index, `words` (shorter) each as a word in the unicode61 index."""

    grams: tuple[str, ...]
    words: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.grams or self.words)

    def grams_match(self, columns: str, customer: str | None = None) -> str:
        """The trigram index's MATCH expression over `columns` (an FTS5 column filter); with
        `customer`, only that institution's articles."""
        match = [f'{columns} : "{g}"' for g in self.grams]
        if customer is not None:
            match.insert(0, f'customer : "{institution_token(customer)}"')
        return " AND ".join(match)

    def words_match(self, columns: str) -> str:
        return " AND ".join(f'{columns} : "{w}"' for w in self.words)


def terms_of(q: str, /) -> Terms:
    """The words of what was typed (the first MAX_TERMS of its first MAX_QUERY characters);
    quotes dropped, so no word is taken for an FTS5 operator."""
    grams: list[str] = []
    words: list[str] = []
    for word in _WORD.findall(q[:MAX_QUERY])[:MAX_TERMS]:
        folded = fold(word).replace('"', "")
        if len(folded) >= 3:
            grams.append(folded)
        elif folded:
            words.append(folded)
    return Terms(tuple(dict.fromkeys(grams)), tuple(dict.fromkeys(words)))


class Budget:
    """A search's time: SQL run under `limit(conn)` ends once `deadline` (time.monotonic)
    has passed; `cut` says it did."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.cut = False

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def _over(self) -> int:
        if time.monotonic() >= self.deadline:
            self.cut = True
            return 1
        return 0

    @contextmanager
    def _progress(self, conn: sqlite3.Connection) -> Iterator[None]:
        conn.set_progress_handler(self._over, PROGRESS_STEPS)
        try:
            yield
        finally:
            conn.set_progress_handler(None, 0)

    def one(self, conn: Conn, sql: str, params: object) -> tuple[object, ...] | None:
        """One row of `sql` within the budget; None when it was cut short (or already
        over)."""
        if self.cut or self.left() <= 0:
            self.cut = True
            return None
        if isinstance(conn, PgConn):
            return self._one_pg(conn, sql, params)
        assert isinstance(conn, sqlite3.Connection)
        with self._progress(conn):
            try:
                row = conn.execute(sql, params).fetchone()  # type: ignore[arg-type]
            except sqlite3.OperationalError:
                if not self.cut:  # not ours: a real error
                    raise
                return None
        return tuple(row) if row is not None else None

    def _one_pg(self, conn: PgConn, sql: str, params: object) -> tuple[object, ...] | None:
        """PostgreSQL: the server cancels the statement at the time left. The connection's
        statement_timeout set to it, the statement, the timeout given back: one round trip
        (a pipeline; in autocommit each is synced on its own, so the RESET runs even after
        a cancel). Custom plans only, on this connection from now on: a plan made once for
        any LIKE pattern (psycopg prepares a statement run five times) knows no term's
        rarity, and reads every row of the index instead of its GIN postings."""
        left = self.left()
        ms = math.ceil(left * 1000) if left < BUDGET_CAP else STATEMENT_TIMEOUT_MS
        try:
            with conn.raw.pipeline():
                conn.execute(
                    "SELECT set_config('statement_timeout', ?, false), "
                    "set_config('plan_cache_mode', 'force_custom_plan', false)",
                    (str(max(1, ms)),),
                )
                cursor = conn.execute(sql, params)  # type: ignore[arg-type]
                conn.execute("RESET statement_timeout")  # the connection's own again
            row = cursor.fetchone()
        except pg_errors.QueryCanceled:  # the deadline (the RESET after it still ran)
            self.cut = True
            return None
        return tuple(row) if row is not None else None


def by_ranges(conn: Conn, select: str, params: dict[str, Any], budget: Budget) -> list[Any]:
    """`select` (one row: a JSON array; `:low` and `:high` bound the article ids it reads)
    over ranges of article ids, newest first, each twice the one before; the arrays' items
    together, as far as the budget reaches. A range cut short is lost, the ranges before it
    are kept: a search cut short has what the newest articles matched."""
    (top,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM articles").fetchone()
    found: list[Any] = []
    size = FIRST_RANGE
    high = int(top)
    while high > 0:
        low = max(1, high - size + 1)
        row = budget.one(conn, select, {**params, "low": low, "high": high})
        if row is None:
            break
        found += json.loads(str(row[0]))
        high = low - 1
        size *= 2
    return found
