"""The desk's full-text index outside the intake's transactions (storage/search.py): a new
article waits in the backlog, the daemon indexes it in the background, a desk search first
indexes whatever still waits; whatever happens to the articles meanwhile, the index ends up
exactly theirs."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from conftest import eventually, make_mail, read_rows
from hypothesis import example, given, settings
from hypothesis import strategies as st
from search_support import blank_database, found_part, found_word, integrity_check, rows_of
from test_desk import agent_client, first_ticket, queued_numbers, web_env

from ticketmail.storage import search
from ticketmail.storage.dialect import insert_id

pytestmark = pytest.mark.web

NOW = "2026-11-22T10:00:00+00:00"


def _waiting(data_dir: Path) -> int:
    return int(read_rows(data_dir, "SELECT COUNT(*) FROM search_backlog")[0][0])


def _found(conn: Any, word: str) -> list[int]:
    return found_word(conn, word)


def _found_part(conn: Any, part: str) -> list[int]:
    return found_part(conn, part)


# Each article's text is a word of its own ("wortN"), so what the index finds is checkable.
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), st.integers(0, 30)),
        st.tuples(st.just("change"), st.integers(0, 30)),  # its text (an indexed column)
        st.tuples(st.just("note"), st.integers(0, 30)),  # a column not indexed
        st.tuples(st.just("delete"), st.integers(0, 30)),
        st.tuples(st.just("index"), st.integers(0, 0)),  # a batch, as the indexer would
        st.tuples(st.just("move"), st.integers(0, 30)),  # to the other ticket
        st.tuples(st.just("regroup"), st.integers(0, 0)),  # ticket 100002 to the other school
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(ops=_OPS, batch=st.integers(1, 4))
@example(ops=[("insert", 0), ("index", 0), ("move", 0)], batch=1)
@example(ops=[("insert", 0), ("move", 0), ("index", 0), ("regroup", 0)], batch=1)
def test_the_index_ends_up_exactly_the_articles_whatever_happens(
    ops: list[tuple[str, int]], batch: int
) -> None:
    """Articles stored, changed, moved (to another ticket, with their ticket to another
    institution), deleted, some indexed between, others while waiting: once
    the backlog is indexed, the index passes FTS5's integrity check against the articles,
    each article's word finds exactly it, and a deleted or replaced word finds nothing; in
    the trigram index too (a part of the word, folded), old texts taken out, each article
    under its institution's token only."""
    with tempfile.TemporaryDirectory() as tmp, blank_database(Path(tmp)) as conn:
        for number in ("10042", "20001"):
            conn.execute(
                "INSERT INTO customers(number, name, created_at) VALUES (?, 'G', ?)",
                (number, NOW),
            )
        conn.execute(
            "INSERT INTO tickets(number, customer, requester, subject, status, created_at, "
            "updated_at) VALUES (100001, '10042', 'a@b.example', 'x', 'new', ?, ?), "
            "(100002, '20001', 'a@b.example', 'x', 'new', ?, ?)",
            (NOW, NOW, NOW, NOW),
        )
        words: dict[int, str] = {}  # article id -> its word now
        gone: set[str] = set()
        counter = 0
        original = search.INDEX_BATCH_ARTICLES
        search.INDEX_BATCH_ARTICLES = batch
        try:
            for op, n in ops:
                ids = sorted(words)
                if op == "insert":
                    counter += 1
                    word = f"Wört{counter}x"
                    article = insert_id(
                        conn,
                        "INSERT INTO articles(ticket, direction, automatic, sender, to_json, "
                        "cc_json, subject, message_id, in_reply_to, references_json, "
                        "body_text, reply_text, created_at) VALUES (100001, 'in', 0, "
                        "'a@b.example', '[]', '[]', 'x', '', '', '[]', ?, ?, ?)",
                        (word, word, NOW),
                    )
                    words[article] = word
                elif op == "index":
                    search.index_some(conn)
                elif op == "regroup":
                    conn.execute(
                        "UPDATE tickets SET customer = CASE customer WHEN '10042' THEN "
                        "'20001' ELSE '10042' END WHERE number = 100002"
                    )
                elif ids:
                    article = ids[n % len(ids)]
                    if op == "change":
                        counter += 1
                        gone.add(words[article])
                        words[article] = f"Wört{counter}x"
                        conn.execute("UPDATE articles SET body_text = ? WHERE id = ?",
                                     (words[article], article))  # fmt: skip
                    elif op == "move":
                        conn.execute(
                            "UPDATE articles SET ticket = 200003 - ticket WHERE id = ?",
                            (article,),
                        )
                    elif op == "note":
                        conn.execute("UPDATE articles SET note = 'n' WHERE id = ?", (article,))
                    else:
                        conn.execute("DELETE FROM articles WHERE id = ?", (article,))
                        gone.add(words.pop(article))
            while search.index_some(conn):
                pass
        finally:
            search.INDEX_BATCH_ARTICLES = original
        integrity_check(conn)
        for article, word in words.items():
            assert _found(conn, word) == [article]
            assert _found_part(conn, word.casefold().replace("ö", "o")[1:]) == [article]
        for word in gone - set(words.values()):
            assert _found(conn, word) == []
            assert _found_part(conn, word.casefold().replace("ö", "o")[1:]) == []
        for customer in ("10042", "20001"):  # each article under its school's token only
            theirs = [r[0] for r in conn.execute(
                "SELECT a.id FROM articles a JOIN tickets t ON t.number = a.ticket "
                "WHERE t.customer = ? ORDER BY a.id", (customer,)
            )]  # fmt: skip
            assert rows_of(conn, customer) == theirs
        assert conn.execute("SELECT COUNT(*) FROM search_stale").fetchone()[0] == 0
        assert search.waiting(conn) == 0


async def test_the_daemon_indexes_new_articles_by_itself(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """A mail's articles (the customer's and the confirmation) wait only until the writer
    is quiet: the backlog empties with no search asking for it."""
    env = await web_env(env_factory, sink)
    await first_ticket(env)
    await eventually(
        lambda: _waiting(env.data_dir) == 0,
        what=lambda: f"{_waiting(env.data_dir)} articles still wait to be indexed",
    )


async def test_a_desk_search_indexes_what_still_waits(env_factory, sink, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """With the background indexer held back, a word of a mail that just came is found all
    the same: the search indexes the backlog first."""
    monkeypatch.setattr(search, "INDEX_PAUSE", 3600.0)
    env = await web_env(env_factory, sink)
    await first_ticket(env, "Fehlercode Zylinderkopfdichtung 42.\n")
    other = make_mail("carl@real.example", "Beamer flackert", "Der Beamer flackert.\n")
    assert (await env.send(other))[1] == "2.0.0 Ok: ticket 100002"
    assert _waiting(env.data_dir) > 0  # nobody indexed them yet
    client = await agent_client(env)
    assert queued_numbers(await client.get("/desk?q=zylinderkopfdichtung")) == [100001]
    assert queued_numbers(await client.get("/desk?q=beamer")) == [100002]
    assert _waiting(env.data_dir) == 0
