"""Agents racing on one ticket (SPEC 9.1), on a real database (either backend) through the
store's writer thread: two or three agents' interleaved and simultaneous desk actions (answer, note,
status, owner) and a customer's mails, each action checked with the version its page
showed (`desk.refusal`) in the write job that acts, as the desk's endpoints do; and the
migration that brings ticket versions."""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from conftest import database_target
from desk_schema import insert_article as raw_article
from desk_schema import undo_schema_10
from hypothesis import given, settings
from hypothesis import strategies as st
from test_desk_queue import _database, _ticket

from ticketmail.config import Config, default_templates_dir
from ticketmail.mail.msgid import MessageIds
from ticketmail.outbound.actions import Desk, Origin
from ticketmail.outbound.compose import Templates
from ticketmail.storage import desk as desk_db
from ticketmail.storage._schema import SCHEMA_VERSION, migrate
from ticketmail.storage.dialect import Conn
from ticketmail.storage.records import ArticleRecord, CustomerRow, NewTicket, UserRow
from ticketmail.storage.store import Store
from ticketmail.storage.tickets import (
    history_of,
    insert_article,
    insert_ticket,
    ticket_ref,
    version_of,
)

NUMBER = 100001
ANNA = "anna@schule.example"
AGENTS = ("max@stueber.de", "mia@stueber.de", "ole@stueber.de")
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
ACTIONS = ("load", "reply", "note", "status", "assign", "customer")


@dataclass(frozen=True, slots=True)
class Change:
    """A change that was carried out: by whom, on which page (None: a customer's mail, which
    carries no page), and the ticket's version after it."""

    by: str
    seen: int | None
    after: int


def _article(sender: str, text: str) -> ArticleRecord:
    return ArticleRecord(
        direction="in", automatic=False, sender=sender, to=("support@stueber.de",), cc=(),
        subject="Drucker", date=NOW, message_id="", in_reply_to=(), references=(),
        body_text=text, reply_text=text, raw_sha256=None, attachments=(),
    )  # fmt: skip


async def _setup(store: Store) -> None:
    await store.add_customers([CustomerRow("10042", "Gymnasium", date(2030, 1, 1), None)], now=NOW)
    await store.add_users([UserRow(ANNA, "10042", "Anna", "de")], now=NOW)
    for agent in AGENTS:
        await store.add_agent(agent, agent.split("@")[0], now=NOW)

    def ticket(conn: Conn) -> None:
        insert_ticket(conn, NewTicket(NUMBER, "10042", ANNA, "Drucker", False, None), now=NOW)
        insert_article(conn, NUMBER, _article(ANNA, "Kaputt."), message=None, now=NOW)

    await store.write(ticket)


def _act(desk: Desk, kind: str, agent: str, token: int) -> object:
    """What an agent's form does in its write job (the Desk and storage calls the desk's
    endpoints make)."""

    def act(conn: Conn) -> None:
        ticket = ticket_ref(conn, NUMBER, since=NOW)
        assert ticket is not None
        origin = Origin(actor=agent, agent_name=agent)
        if kind == "reply":
            desk.reply(conn, ticket, text=f"Antwort {token}\n", files=(), status="answered",
                       origin=origin, now=NOW)  # fmt: skip
        elif kind == "note":
            desk_db.add_note(conn, NUMBER, agent=agent, body=f"Notiz {token}", now=NOW)
        elif kind == "status":
            status = ("open", "closed")[token % 2]
            desk.change_status(conn, ticket, status=status, note="", origin=origin, now=NOW)
        else:
            desk_db.set_owner(conn, NUMBER, AGENTS[token % 3], by=agent, now=NOW)

    return act


async def _run(steps: list[tuple[str, int, bool]], agents: int) -> list[Change]:
    changes: list[Change] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = await Store.open(Path(tmp), database_target(Path(tmp)))
        try:
            await _setup(store)
            config = Config()
            desk = Desk(config, Templates(default_templates_dir()), MessageIds("stueber.de", b"k"))
            pages: dict[str, int] = {}

            async def load(agent: str) -> None:
                version = await store.write(lambda conn: version_of(conn, NUMBER))
                assert version is not None
                pages[agent] = version

            async def submit(kind: str, agent: str, token: int) -> None:
                act = _act(desk, kind, agent, token)
                seen = pages[agent]

                def job(conn: Conn) -> None:
                    before = version_of(conn, NUMBER)
                    if desk_db.refusal(conn, NUMBER, seen=seen, force=False) is None:
                        act(conn)  # type: ignore[operator]
                        after = version_of(conn, NUMBER)
                        assert after is not None
                        changes.append(Change(agent, seen, after))
                    else:  # refused: nothing changed
                        assert version_of(conn, NUMBER) == before

                await store.write(job)
                await load(agent)  # the page after the answer (redirect or 409)

            async def customer(token: int) -> None:
                def job(conn: Conn) -> None:
                    insert_article(conn, NUMBER, _article(ANNA, f"Mail {token}"), message=None,
                                   now=NOW)  # fmt: skip
                    after = version_of(conn, NUMBER)
                    assert after is not None
                    changes.append(Change(ANNA, None, after))

                await store.write(job)

            for agent in AGENTS[:agents]:
                await load(agent)
            group: list[object] = []
            for token, (kind, who, together) in enumerate(steps):
                agent = AGENTS[who % agents]
                if kind == "load":
                    group.append(load(agent))
                elif kind == "customer":
                    group.append(customer(token))
                else:
                    group.append(submit(kind, agent, token))
                if not together:  # the group's submissions race each other
                    await asyncio.gather(*group)  # type: ignore[arg-type]
                    group = []
            await asyncio.gather(*group)  # type: ignore[arg-type]
        finally:
            await store.close()
    return changes


@settings(max_examples=25, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(ACTIONS), st.integers(0, 2), st.booleans()),
        min_size=1,
        max_size=12,
    ),
    agents=st.integers(2, 3),
)
def test_every_action_carried_out_was_made_on_a_page_showing_every_earlier_one(
    steps: list[tuple[str, int, bool]], agents: int
) -> None:
    """Whatever agents do in whatever order, alone or at once: an agent's action is carried
    out only if the page it was made on showed every change carried out before it."""
    changes = asyncio.run(_run(steps, agents))
    latest = 0
    for change in changes:
        if change.seen is not None:
            assert change.seen >= latest, (change, changes)
        latest = max(latest, change.after)


@pytest.mark.sqlite_only
def test_a_version_9_database_gets_ticket_versions_and_an_empty_history(tmp_path: Path) -> None:
    """The migration to schema 10 keeps a version 9 database's tickets and articles (at
    version 0, history empty); the next article then raises its ticket's version. (SQLite
    only: a migration of SQLite's schema; PostgreSQL has none before version 13.)"""
    conn = _database(tmp_path)
    try:
        undo_schema_10(conn)
        _ticket(conn, NUMBER)
        raw_article(conn, NUMBER, "Kaputt.")
        migrate(conn)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert version_of(conn, NUMBER) == 0
        assert history_of(conn, NUMBER) == ()
        assert desk_db.refusal(conn, NUMBER, seen=0, force=False) is None
        insert_article(conn, NUMBER, _article(ANNA, "Noch da."), message=None, now=NOW)
        assert version_of(conn, NUMBER) == 1
        assert desk_db.refusal(conn, NUMBER, seen=0, force=False) == "stale"
    finally:
        conn.close()
