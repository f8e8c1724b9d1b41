"""The search on PostgreSQL (SPEC 8.4, 10): what SQLite's two FTS5 indexes do, in one table.

`search_index` (PG_SCHEMA's last block) holds each indexed article's text folded as
`fulltext.fold` folds it: `sb`, its subject and body (the body's first GRAMS_TEXT_CHARS)
joined by chr(1), `people`, its sender and recipients, and `words`, its words of one or two
characters. A term of three characters or more (`Terms.grams`) must occur in the folded text
(LIKE '%term%', answered by pg_trgm's GIN index and checked on the row: a part of a word is
found as FTS5's trigram index finds it); a shorter term (`Terms.words`) must be one of the
article's words, as unicode61 splits them (letters and digits; an empty one finds nothing).
Each GIN index has the institution as its first column (btree_gin): a search within one
institution names it, and the index steps through a term's postings only where the
institution's are. The indexer (storage/search.py) writes the rows; the triggers take a
changed or moved article out at once (it waits in the backlog to come back) and move a
ticket's rows along with the ticket to another institution.

A search's budget is the connection's `statement_timeout` (fulltext.Budget): a statement
past the deadline is cancelled by the server.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from ticketmail.storage.fulltext import GRAMS_TEXT_CHARS, Terms, fold

__all__ = [
    "INDEX_ROW",
    "index_row",
    "json_list",
    "matches",
    "word_tokens",
]

# Words as unicode61 splits them: runs of letters and digits.
_TOKEN = re.compile(r"[^\W_]+")
_SHORT = 2  # a term of this many characters or fewer is looked up as a word
_JOIN = "\x01"  # between subject and body in `sb`: no search term holds it

INDEX_ROW = (
    "INSERT INTO search_index(article, customer, sb, people, words) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (article) DO UPDATE SET customer = excluded.customer, sb = excluded.sb, "
    "people = excluded.people, words = excluded.words"
)


def word_tokens(folded: str, /) -> list[str]:
    """The words of folded text, as unicode61 would split them."""
    return _TOKEN.findall(folded)


def _short_words(prefix: str, texts: Iterable[str]) -> set[str]:
    return {prefix + w for t in texts for w in word_tokens(fold(t)) if len(w) <= _SHORT}


def index_row(
    article: int, subject: str, sender: str, to_json: str, body: str, customer: str
) -> tuple[int, str, str, str, list[str]]:
    """An article's row of `search_index` (INDEX_ROW's parameters)."""
    body = body or ""
    words = _short_words("s:", (subject, body)) | _short_words("p:", (sender, to_json))
    return (
        article,
        customer,
        f"{fold(subject)}{_JOIN}{fold(body[:GRAMS_TEXT_CHARS])}",
        fold(f"{sender} {to_json}"),
        sorted(words),
    )


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def matches(terms: Terms, params: dict[str, Any], *, people: bool) -> str:
    """SQL true for a row `p` of search_index holding every term: in the subject or body,
    with `people` in the sender and recipients too (the desk); parameters into `params`."""
    parts: list[str] = []
    for i, gram in enumerate(terms.grams):
        params[f"pg_g{i}"] = _like(gram)
        if people:
            parts.append(f"(p.sb LIKE :pg_g{i} OR p.people LIKE :pg_g{i})")
        else:
            parts.append(f"p.sb LIKE :pg_g{i}")
    for i, word in enumerate(terms.words):
        tokens = word_tokens(word)
        if not tokens:  # nothing of a word in it (`_`): as FTS5, an empty phrase finds nothing
            parts.append("FALSE")
            continue
        for j, token in enumerate(tokens):
            name = f"pg_w{i}_{j}"
            if people:
                params[name] = [f"s:{token}", f"p:{token}"]
                parts.append(f"p.words && CAST(:{name} AS TEXT[])")
            else:
                params[name] = [f"s:{token}"]
                parts.append(f"p.words @> CAST(:{name} AS TEXT[])")
    return " AND ".join(parts) or "TRUE"


def json_list(expression: str, *, distinct: bool = False) -> str:
    """PostgreSQL's `json_group_array([DISTINCT] expression)`: a JSON array as text, `[]`
    for no rows."""
    inner = f"DISTINCT {expression}" if distinct else expression
    return f"CAST(COALESCE(json_agg({inner}), '[]') AS TEXT)"
