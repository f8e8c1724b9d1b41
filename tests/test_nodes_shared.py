"""Two nodes on one PostgreSQL database share what a desk and a portal need (SPEC 10): an
agent present on a ticket on one node is named on the other's page of it (without durable
writes, for 5 minutes), a login and its session hold on every node, login failures on both
nodes add up to one lock (even two at once, at the limit; the rule beneath, two writers'
failures for one address counted one after the other, is test_pg_locks'), and the CSRF key
and the device cookies' key are the same on every node.

Two real daemons, each with a config and data directory of its own, the second's .env
naming the first's database, over real HTTP. Two nodes need PostgreSQL, so these tests run
on it whatever backend the rest of the suite runs on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import Clock, Env, Sink, write_config
from test_desk import MAX, MIA, agent_client, agents, first_ticket
from test_desk_presence import BEAT, PAGE, beat, presence_on
from web_support import ANNA, PASSWORD, Client, give_password

from ticketmail.config import load_config
from ticketmail.daemon import Daemon
from ticketmail.storage import presence as shared
from ticketmail.storage.paths import DB_NAME, DatabaseTarget
from ticketmail.storage.postgres import PgConn, connect
from ticketmail.web.guard import device_cookie_name
from ticketmail.web.presence import PER_AGENT, WINDOW

pytestmark = pytest.mark.web  # the daemons serve the portal and the desk

WRONG = "falsches-passwort"


@pytest.fixture
async def nodes(
    tmp_path: Path, clock: Clock, sink: Sink, pg_url: str
) -> AsyncIterator[tuple[Env, Env]]:
    """Nodes `a` and `b`: two daemons on one PostgreSQL database (the session cluster's,
    whatever backend the run is on), each with its own config, .env and data directory, on
    one injected clock; stopped at the end."""
    url = pg_url
    started: list[Env] = []
    try:
        for name in ("a", "b"):
            home = tmp_path / name
            home.mkdir()
            path = write_config(
                home / "config.toml", home / "var", sink.port, storage={"backend": "postgres"},
                web={"enabled": True}, node={"name": name},
            )  # fmt: skip
            (home / ".env").write_text(f"TICKETMAIL_DATABASE_URL={url}\n", encoding="utf-8")
            config = load_config(path, environ={})
            daemon = Daemon(config, clock=clock)
            await daemon.start()
            started.append(Env(path, config, daemon, clock, sink))
        yield started[0], started[1]
    finally:
        for env in started:
            await env.daemon.stop(grace=5)


def target(env: Env) -> DatabaseTarget:
    return env.daemon.config.database


def rows(env: Env, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Rows of one query on the nodes' database."""
    conn = connect(target(env).url)
    try:
        return [tuple(r) for r in conn.execute(sql, params).fetchall()]
    finally:
        conn.close()


def on_node(client: Client, env: Env) -> Client:
    """The same browser (its cookies, its page's token) now talking to node `env`, as
    behind a balancer that sends each request wherever."""
    client.http.base_url = f"http://127.0.0.1:{env.daemon.web_port}"
    return client


async def desk_on(env: Env) -> None:
    """One institution with Anna, the agents Max and Mia, ticket 100001 (through `env`)."""
    await env.customer("10042", "Gymnasium Musterstadt")
    await env.user(ANNA, "10042", name="Anna Müller", lang="de")
    await agents(env)
    await first_ticket(env)


# --- presence -----------------------------------------------------------------------------------


async def test_an_agent_on_one_node_is_present_on_the_others(nodes: tuple[Env, Env]) -> None:
    """An agent who has a ticket open on node A is named on node B's page of it, typing
    included, and the other way round: presence is shared through the database."""
    a, b = nodes
    await desk_on(a)
    max_a = await agent_client(a, MAX)
    mia_b = await agent_client(b, MIA)
    assert presence_on(await max_a.get(PAGE)) == ""
    assert presence_on(await mia_b.get(PAGE)) == "Auch geöffnet von: Max Berger"
    assert (await beat(max_a, typing=True)).json() == {
        "line": "Also open by: Mia Hahn",
        "others": [{"name": "Mia Hahn", "typing": False}],
    }
    assert presence_on(await mia_b.get(PAGE)) == "Auch geöffnet von: Max Berger (schreibt gerade)"
    head = await max_a.http.head(PAGE)  # a HEAD on A records nothing anywhere
    assert head.status_code == 200
    assert (await beat(mia_b)).json()["line"] == "Auch geöffnet von: Max Berger (schreibt gerade)"


async def test_presence_on_another_node_ends_after_five_minutes(nodes: tuple[Env, Env]) -> None:
    """An agent last seen on node A more than 5 minutes ago is no longer named on node B,
    and their row is deleted by the next note."""
    a, b = nodes
    await desk_on(a)
    max_a = await agent_client(a, MAX)
    mia_b = await agent_client(b, MIA)
    await max_a.get(PAGE)
    a.clock.advance(minutes=4, seconds=50)
    assert presence_on(await mia_b.get(PAGE)) == "Auch geöffnet von: Max Berger"
    a.clock.advance(seconds=11)  # 5 minutes and a second after Max's page view on A
    assert presence_on(await mia_b.get(PAGE)) == ""
    assert rows(a, "SELECT agent FROM desk_presence") == [(MIA,)]
    assert (await max_a.post(BEAT, {"typing": "0"})).json()["line"] == "Also open by: Mia Hahn"


def test_the_shared_table_is_bounded_per_agent_and_in_time(tmp_path: Path, pg_url: str) -> None:
    """In the shared table one agent keeps only their `PER_AGENT` latest tickets, the other
    agents' rows stay, and every note deletes the rows older than 5 minutes."""
    where = DatabaseTarget("postgres", tmp_path / DB_NAME, pg_url)
    conn = shared.open_presence(where)
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    try:

        def note(ticket: int, agent: str, at: datetime) -> None:
            shared.note(conn, ticket, agent, agent.upper(), typing=False, now=at,
                        since=at - WINDOW, per_agent=PER_AGENT)  # fmt: skip

        note(1, "mia@x", now)
        for ticket in range(1, PER_AGENT + 20):
            note(ticket, "max@x", now + timedelta(seconds=ticket))
        (count,) = conn.execute(
            "SELECT COUNT(*) FROM desk_presence WHERE agent = 'max@x'"
        ).fetchone()
        assert count == PER_AGENT
        later = now + timedelta(minutes=1)
        assert [p.agent for p in shared.others(conn, 1, "x", since=later - WINDOW)] == ["mia@x"]
        kept = [p.ticket for t in range(1, 60) for p in shared.others(conn, t, "mia@x", since=now)]
        assert kept == list(range(20, PER_AGENT + 20))
        note(7, "eve@x", now + WINDOW + timedelta(seconds=30))  # 5 minutes after max's 30
        left = conn.execute(
            "SELECT agent, MIN(ticket), COUNT(*) FROM desk_presence GROUP BY agent ORDER BY agent"
        ).fetchall()
        assert [tuple(r) for r in left] == [("eve@x", 7, 1), ("max@x", 31, PER_AGENT - 11)]
    finally:
        conn.close()


# --- sessions, the CSRF key, the device cookies' key --------------------------------------------


async def test_a_login_on_one_node_holds_on_every_node(nodes: tuple[Env, Env]) -> None:
    """A form's token from node A is good on node B (one CSRF key); the session B makes is
    valid on A; logging out on A ends it on B too."""
    a, b = nodes
    await a.customer("10042", "Gymnasium Musterstadt")
    await a.user(ANNA, "10042", name="Anna Müller", lang="de")
    await give_password(a, ANNA)
    browser = Client(a)
    await browser.get("/login")  # the form and its token from A
    on_node(browser, b)
    logged = await browser.post("/login", {"email": ANNA, "password": PASSWORD})
    assert logged.status_code == 303, logged.text[:500]  # not 403: B knows A's token
    on_node(browser, a)
    page = await browser.get("/tickets")
    assert page.status_code == 200  # not 303 to /login: A knows B's session
    assert 'action="/logout"' in page.text  # her own page, logged in
    assert (await browser.post("/logout", {})).status_code == 303
    on_node(browser, b)
    assert (await browser.get("/tickets")).headers.get("location") == "/login"


async def test_a_device_cookie_from_one_node_counts_on_every_node(nodes: tuple[Env, Env]) -> None:
    """Anna's browser got its device cookie on node A; strangers' failures, some on each
    node, lock her address on both, but on node B her own browser still gets in."""
    a, b = nodes
    await a.customer("10042", "Gymnasium Musterstadt")
    await a.user(ANNA, "10042", name="Anna Müller", lang="de")
    await give_password(a, ANNA)
    anna = Client(a)
    assert (await anna.login(ANNA)).status_code == 303
    assert (await anna.post("/logout", {})).status_code == 303
    assert device_cookie_name(ANNA) in anna.http.cookies
    stranger_a, stranger_b = Client(a, source="127.0.0.3"), Client(b, source="127.0.0.3")
    assert [(await stranger_a.login(ANNA, WRONG)).status_code for _ in range(3)] == [401] * 3
    assert [(await stranger_b.login(ANNA, WRONG)).status_code for _ in range(2)] == [401] * 2
    assert (await Client(a).login(ANNA)).status_code == 429  # 3 on A + 2 on B: locked
    assert (await Client(b).login(ANNA)).status_code == 429
    assert (await on_node(anna, b).login(ANNA)).status_code == 303  # B knows A's device cookie


# --- login limits --------------------------------------------------------------------------------


async def test_two_failures_at_once_on_two_nodes_reach_the_lock(nodes: tuple[Env, Env]) -> None:
    """After three failures (A, B, A), two more at the same moment, one on each node, make
    five: the address is locked on both nodes, the fifth failure having locked it."""
    a, b = nodes
    await a.customer("10042", "Gymnasium Musterstadt")
    await a.user(ANNA, "10042", name="Anna Müller", lang="de")
    await give_password(a, ANNA)
    for env in (a, b, a):
        assert (await Client(env).login(ANNA, WRONG)).status_code == 401
    on_a, on_b = Client(a), Client(b)
    await on_a.get("/login")
    await on_b.get("/login")
    both = await asyncio.gather(
        on_a.post("/login", {"email": ANNA, "password": WRONG}),
        on_b.post("/login", {"email": ANNA, "password": WRONG}),
    )
    assert [r.status_code for r in both] == [401, 401]
    assert rows(a, "SELECT COUNT(*) FROM login_failures WHERE email = ?", (ANNA,)) == [(5,)]
    assert len(rows(a, "SELECT until FROM login_locks WHERE email = ?", (ANNA,))) == 1
    assert (await Client(a).login(ANNA)).status_code == 429
    assert (await Client(b).login(ANNA)).status_code == 429


def waits_for_a_lock(watcher: PgConn, waiting: PgConn) -> bool:
    """`waiting`'s backend waits for a lock, as `watcher` (outside any transaction, which
    would keep one view of pg_stat_activity) sees it."""
    row = watcher.execute(
        "SELECT wait_event_type FROM pg_stat_activity WHERE pid = ?",
        (waiting.raw.info.backend_pid,),
    ).fetchone()
    return row is not None and row[0] == "Lock"
