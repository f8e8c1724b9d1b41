"""Presence on a desk ticket over real HTTP against the real daemon (SPEC 9.1): the page names
the other agents who have the ticket open (within 5 minutes) and whether their answer form
holds text, as of loading; the heartbeat is agent-only, CSRF-checked and bounded; a HEAD
records nothing; nothing of it reaches the database. And the registry's own bounds."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from conftest import Env, on_postgres, read_rows
from desk_support import cli_stdin, settle
from test_desk import MAX, MIA, agent_client, first_ticket
from test_desk_rules import desk_env
from web_support import ANNA, PASSWORD, Client, logged_in, text_of

from ticketmail.storage.paths import DB_NAME
from ticketmail.web.limits import PRESENCE_LIMIT
from ticketmail.web.presence import WINDOW, Presence

pytestmark = pytest.mark.web  # the daemon serves the portal and the desk

PAGE = "/desk/tickets/100001"
BEAT = f"{PAGE}/presence"
_SHOWN = re.compile(r'<p id="presence"[^>]*>(.*?)</p>', re.S)


def presence_on(response: httpx.Response) -> str:
    """The presence line of a desk ticket page, as read ('' when it names nobody)."""
    found = _SHOWN.search(response.text)
    assert found, response.text[:2000]
    return text_of(httpx.Response(200, text=found.group(1))).strip()


async def team(env_factory, sink) -> tuple[Env, Client, Client]:  # type: ignore[no-untyped-def]
    """Ticket 100001; Max (desk in English) and Mia (in German) logged in; mail settled."""
    env = await desk_env(env_factory, sink)
    await first_ticket(env)
    await settle(env, 3)
    return env, await agent_client(env, MAX), await agent_client(env, MIA)


async def beat(client: Client, *, typing: bool = False, csrf: str | None = None) -> httpx.Response:
    return await client.post(BEAT, {"typing": "1" if typing else "0"}, csrf=csrf)


async def test_the_page_names_the_other_agents_as_of_loading(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """A ticket page names the other agents who opened it (never the viewer), in the
    viewer's language, with 'typing' while their answer form holds text."""
    _, max_c, mia = await team(env_factory, sink)
    first = await max_c.get(PAGE)
    assert presence_on(first) == ""
    assert 'id="presence" class="presence" role="status"' in first.text
    assert presence_on(await mia.get(PAGE)) == "Auch geöffnet von: Max Berger"
    assert presence_on(await max_c.get(PAGE)) == "Also open by: Mia Hahn"
    answered = await beat(max_c, typing=True)
    assert answered.status_code == 200
    assert answered.headers["content-type"] == "application/json"
    assert answered.json() == {
        "line": "Also open by: Mia Hahn",
        "others": [{"name": "Mia Hahn", "typing": False}],
    }
    assert presence_on(await mia.get(PAGE)) == "Auch geöffnet von: Max Berger (schreibt gerade)"
    assert (await beat(max_c, typing=False)).status_code == 200
    assert presence_on(await mia.get(PAGE)) == "Auch geöffnet von: Max Berger"
    assert (await beat(mia, typing=True)).json()["line"] == "Auch geöffnet von: Max Berger"
    assert presence_on(await max_c.get(PAGE)) == "Also open by: Mia Hahn (typing)"


async def test_a_head_of_the_page_records_nobody(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """HEAD of a desk ticket page answers like GET but never records the agent as present."""
    _, max_c, mia = await team(env_factory, sink)
    head = await max_c.http.head(PAGE)
    assert head.status_code == 200
    assert head.content == b""
    assert presence_on(await mia.get(PAGE)) == ""
    await max_c.get(PAGE)
    assert presence_on(await mia.get(PAGE)) == "Auch geöffnet von: Max Berger"


async def test_the_heartbeat_is_for_agents_with_a_token_only(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """The heartbeat is 404 for a customer (with her own valid token), sends anonymous
    visitors to log in, is 403 without the page's CSRF token, 404 for a ticket that does
    not exist, 413 past its small body limit, and records nobody in any of these cases."""
    env, max_c, mia = await team(env_factory, sink)
    anna = await logged_in(env, ANNA)
    await anna.get("/tickets/100001")  # a valid token of Anna's session
    customer = await anna.post(BEAT, {"typing": "1"})
    assert customer.status_code == 404
    assert "application/json" not in customer.headers["content-type"]
    anonymous = await Client(env).post(BEAT, {"typing": "1"})
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/login"
    await max_c.get("/desk")
    assert (await beat(max_c, typing=True, csrf="0" * 64)).status_code == 403
    assert (await beat(max_c, typing=True, csrf="")).status_code == 403
    assert (await max_c.post("/desk/tickets/100002/presence", {"typing": "1"})).status_code == 404
    too_big = await max_c.post(BEAT, {"typing": "1", "pad": "x" * PRESENCE_LIMIT})
    assert too_big.status_code == 413
    big_number = await max_c.post(f"/desk/tickets/{2**63}/presence", {"typing": "1"})
    assert big_number.status_code == 404
    assert presence_on(await mia.get(PAGE)) == ""  # none of these recorded Max
    assert (await beat(max_c, typing=True)).status_code == 200
    assert presence_on(await mia.get(PAGE)) == "Auch geöffnet von: Max Berger (schreibt gerade)"


async def test_presence_ends_five_minutes_after_the_last_sign(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """An agent counts as present for 5 minutes after their last page view or heartbeat."""
    env, max_c, mia = await team(env_factory, sink)
    await max_c.get(PAGE)
    env.clock.advance(minutes=4, seconds=50)
    assert presence_on(await mia.get(PAGE)) == "Auch geöffnet von: Max Berger"
    assert (await beat(max_c)).status_code == 200  # Max's page is still open
    env.clock.advance(minutes=4, seconds=50)
    assert presence_on(await mia.get(PAGE)) == "Auch geöffnet von: Max Berger"
    env.clock.advance(seconds=11)  # 5 minutes and a second after Max's heartbeat
    assert presence_on(await mia.get(PAGE)) == ""
    assert (await beat(mia)).json() == {"line": "", "others": []}


@contextmanager
def database_watched(env: Env) -> Iterator[Callable[[], tuple[int, ...]]]:
    """What changes with every durable commit to the daemon's database: the writer's count
    of commits, and on SQLite the file's `PRAGMA data_version` (read on a connection of its
    own, it changes whenever any other connection commits a change)."""
    store = env.daemon.store
    assert store is not None
    if on_postgres():
        yield lambda: (store.db.commits,)
        return
    db = sqlite3.connect(env.data_dir / DB_NAME, timeout=10)
    try:
        yield lambda: (int(db.execute("PRAGMA data_version").fetchone()[0]), store.db.commits)
    finally:
        db.close()


async def test_presence_is_never_written_to_the_database(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """Page views and heartbeats, typing or not, commit nothing durable: the writer runs no
    job and (SQLite) the file's data_version is unchanged; on PostgreSQL they are rows of
    the UNLOGGED presence table only, shared without WAL (SPEC 10)."""
    env, max_c, mia = await team(env_factory, sink)
    await max_c.get(PAGE)
    await mia.get(PAGE)
    with database_watched(env) as durable:
        before = durable()
        for client in (max_c, mia, max_c):
            assert (await beat(client, typing=True)).status_code == 200
            assert (await client.get(PAGE)).status_code == 200
            assert (await beat(client, typing=False)).status_code == 200
        assert presence_on(await mia.get(PAGE)) == "Auch geöffnet von: Max Berger"
        assert durable() == before
        if on_postgres():
            rows = read_rows(env.data_dir, "SELECT agent FROM desk_presence ORDER BY agent")
            assert [r[0] for r in rows] == [MAX, MIA]
            kind = read_rows(env.data_dir, "SELECT relpersistence FROM pg_class "
                             "WHERE relname = 'desk_presence'")  # fmt: skip
            assert kind == [("u",)]  # UNLOGGED: no WAL, no fsync
        await max_c.post(f"{PAGE}/note", {"body": "Toner bestellt."})  # a real change shows
        after = durable()
        assert all(a > b for a, b in zip(after, before, strict=True))


async def test_agent_names_are_shown_as_text(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """An agent's name is escaped on the page and given as plain text in the heartbeat."""
    env, max_c, _ = await team(env_factory, sink)
    name = 'Eve <img src=x onerror="alert(1)">'
    assert (await env.cli("agent", "add", "eve@stueber.de", "--name", name)).returncode == 0
    given = await cli_stdin(env, PASSWORD + "\n", "agent", "passwd", "eve@stueber.de")
    assert given.returncode == 0
    eve = await agent_client(env, "eve@stueber.de")
    await eve.get(PAGE)
    page = await max_c.get(PAGE)
    assert "<img" not in page.text.split('id="presence"')[1].split("</p>")[0]
    assert "Also open by: Eve &lt;img" in page.text
    assert (await beat(max_c)).json()["others"] == [{"name": name, "typing": False}]


# --- the registry itself -----------------------------------------------------------------------

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def test_one_agent_cannot_grow_the_registry_past_their_share() -> None:
    """An agent present on more tickets than `per_agent` keeps only the latest ones; the
    other agents' entries stay."""
    presence = Presence(limit=100, per_agent=3)
    presence.note(1, "mia@x", "Mia", typing=False, now=NOW)
    for ticket in range(1, 50):
        presence.note(ticket, "max@x", "Max", typing=True, now=NOW + timedelta(seconds=ticket))
    assert len(presence) == 4
    later = NOW + timedelta(minutes=1)
    assert [p.ticket for t in range(1, 50) for p in presence.others(t, "mia@x", now=later)] == [
        47, 48, 49,
    ]  # fmt: skip
    assert [p.agent for p in presence.others(1, "anyone", now=later)] == ["mia@x"]


def test_the_registry_is_bounded_and_forgets_the_old() -> None:
    """Past `limit` entries the least recently seen goes; entries older than the window
    are dropped as new ones come."""
    presence = Presence(limit=10, per_agent=100)
    for n in range(25):
        presence.note(1, f"a{n}@x", f"A{n:02}", typing=False, now=NOW + timedelta(seconds=n))
    assert len(presence) == 10
    names = [p.name for p in presence.others(1, "me", now=NOW + timedelta(seconds=30))]
    assert names == [f"A{n:02}" for n in range(15, 25)]
    presence.note(2, "late@x", "Late", typing=False, now=NOW + WINDOW + timedelta(seconds=20))
    assert len(presence) == 5  # a15..a20 were last seen 5 minutes (or more) before
    names = [p.name for p in presence.others(1, "me", now=NOW + WINDOW + timedelta(seconds=20))]
    assert names == ["A21", "A22", "A23", "A24"]
