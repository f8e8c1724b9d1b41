"""The portal's search on the indexes (storage/portal_list.py) against a plain reading of the
rule: it lists exactly the institution's tickets with an article the customer sees (no note,
no automatic article) holding every term, parts of words and folded diacritics included;
never a ticket of another institution (SPEC 8.3, 8.4)."""

from __future__ import annotations

import math
import re
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from search_support import blank_database

from ticketmail.storage import portal_list, search
from ticketmail.storage.fulltext import fold

NOW = "2026-11-22T10:00:00+00:00"
WORDS = ("Zeugnisvorlage", "Schülerausweis", "Drucker", "PC", "Raum12", "Straße", "Tonerkartusche")
INSTITUTIONS = ("10042", "20001")

_ARTICLE = st.tuples(
    st.integers(0, 5),  # ticket (even: 10042, odd: 20001)
    st.sampled_from(("in", "out", "note")),
    st.booleans(),  # automatic
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=3),
)


def _part(word: str, start: int, length: int) -> str:
    """A part of a word of three characters or more (else the word)."""
    part = word[start : start + length]
    return part if len(part) >= 3 else word


_QUERY = st.lists(
    st.one_of(
        st.builds(_part, st.sampled_from(WORDS), st.integers(0, 12), st.integers(3, 14)),
        st.sampled_from(("pc", "PC", "schuler", "STRASSE", "nisvor")),
    ),
    min_size=1,
    max_size=2,
)


def _holds(text: str, term: str) -> bool:
    folded = fold(term)
    if len(folded) >= 3:
        return folded in fold(text)
    return folded in re.findall(r"\w+", fold(text))


@settings(max_examples=60, deadline=None)
@given(articles=st.lists(_ARTICLE, max_size=14), terms=_QUERY, who=st.sampled_from(INSTITUTIONS))
def test_a_search_finds_exactly_what_the_rule_says(
    articles: list[tuple[int, str, bool, list[str]]], terms: list[str], who: str
) -> None:
    """Whatever the articles and the query, the list is exactly the institution's tickets
    with a visible article holding every term: notes, automatic articles and another
    institution's tickets never appear."""
    with tempfile.TemporaryDirectory() as tmp, blank_database(Path(tmp)) as conn:
        for number in INSTITUTIONS:
            conn.execute(
                "INSERT INTO customers(number, name, created_at) VALUES (?, 'S', ?)",
                (number, NOW),
            )
        for t in range(6):
            conn.execute(
                "INSERT INTO tickets(number, customer, requester, subject, status, "
                "created_at, updated_at) VALUES (?, ?, 'a@b.example', 'x', 'open', ?, ?)",
                (100001 + t, INSTITUTIONS[t % 2], NOW, NOW),
            )
        expected: set[int] = set()
        q = " ".join(terms)
        for ticket, direction, automatic, words in articles:
            text = " ".join(words)
            conn.execute(
                "INSERT INTO articles(ticket, direction, automatic, sender, to_json, "
                "cc_json, subject, message_id, in_reply_to, references_json, body_text, "
                "reply_text, created_at) VALUES (?, ?, ?, 'a@b.example', '[]', '[]', "
                "'Frage', '', '', '[]', ?, '', ?)",
                (100001 + ticket, direction, int(automatic), text, NOW),
            )
            mine = INSTITUTIONS[ticket % 2] == who
            visible = direction != "note" and not automatic
            if mine and visible and all(_holds(f"Frage {text}", t) for t in terms):
                expected.add(100001 + ticket)
        while search.index_some(conn):
            pass
        found = portal_list.search_tickets(
            conn, who, q=q, status=None, requester=None, limit=50, offset=0,
            deadline=math.inf,
        )  # fmt: skip
        assert not found.cut
        assert {t.number for t in found.tickets} == expected, q
        assert found.total == len(expected)
