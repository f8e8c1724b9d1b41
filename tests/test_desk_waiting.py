"""Waiting until a time (SPEC 9.1) over real HTTP and SMTP against the real daemon: at its
time a waiting ticket is open again (history by `system`) and its owner, else the agents,
reminded by mail, once, however many scheduler passes or daemons run; a customer's mail or
portal answer ends the wait at once; waiting to waiting keeps the new time, open ↔ waiting
mails nobody, customers see open; bad times are refused with a clear message; a stale form
is 409. Times are typed in `web.timezone` and moved with the injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import Env, eventually, make_mail
from desk_schema import undo_schema_13
from desk_support import body, settle
from playwright.async_api import Browser
from test_browser_desk import agent_login, submit
from test_browser_portal import browser as browser  # the fixture: Chromium for this module
from test_desk import MAX, MIA, TAG, agent_client, agents, first_ticket
from test_desk_queue import _database, _ticket
from test_desk_rules import desk_env
from test_desk_team import history_lines, shown
from web_support import ANNA, Client, logged_in, outbox_kinds, text_of

from ticketmail.config import load_config
from ticketmail.errors import ConfigError
from ticketmail.storage._schema import SCHEMA_VERSION, migrate
from ticketmail.storage.tickets import history_of, record_change
from ticketmail.storage.waiting import due_waits, end_due_wait, set_waiting

pytestmark = pytest.mark.web  # the daemon serves the portal and the desk

PAGE = "/desk/tickets/100001"
BERLIN = ZoneInfo("Europe/Berlin")
# The daemon's own scheduler passes: rare, so that a test's passes are the ones that count.
RARE = {"wait_check_seconds": 3600.0}


def typed(moment: datetime) -> str:
    """A time as a datetime-local input sends it, in Europe/Berlin (the default zone)."""
    return moment.astimezone(BERLIN).strftime("%Y-%m-%dT%H:%M")


def utc(text: str) -> str:
    """A typed Berlin time as `ticket show --json` carries it (UTC, ISO 8601)."""
    local = datetime.fromisoformat(text).replace(tzinfo=BERLIN)
    return local.astimezone(UTC).isoformat(timespec="seconds")


async def waiting_team(env_factory, sink, **desk: Any) -> tuple[Env, Client, Client]:  # type: ignore[no-untyped-def]
    """Anna's ticket 100001 (3 mails: her confirmation, both agents notified); Max (desk in
    English) and Mia (in German) logged in; the scheduler's own passes as `desk` says."""
    env = await desk_env(env_factory, sink, desk={**RARE, **desk})
    await first_ticket(env)
    await settle(env, 3)
    return env, await agent_client(env, MAX), await agent_client(env, MIA)


async def wait(client: Client, until: str, **more: str) -> int:
    response = await client.post(
        f"{PAGE}/status", {"status": "waiting", "until": until, **more}, form_page=PAGE
    )
    return response.status_code


def history(found: dict[str, Any]) -> list[tuple[str, Any, Any, str]]:
    return [(h["what"], h["from"], h["to"], h["by"]) for h in found["history"]]


async def test_at_its_time_a_waiting_ticket_is_open_again_and_its_owner_reminded_once(
    env_factory, sink
) -> None:  # type: ignore[no-untyped-def]
    """A ticket waiting until a few minutes ahead stays waiting before, is open at that time
    with history by `system`, its owner alone reminded by mail in the owner's language
    (with the tag and the desk link); further passes remind nobody again."""
    env, max_c, _ = await waiting_team(env_factory, sink)
    assert (await max_c.post(f"{PAGE}/assign", {"agent": MAX}, form_page=PAGE)).status_code == 303
    until = typed(env.clock() + timedelta(minutes=5))
    assert await wait(max_c, until) == 303
    received = await settle(env, 4)  # new → waiting: Anna sees new → open
    assert received[3].rcpt_tos == [ANNA]
    assert "in Bearbeitung" in str(received[3].message["Subject"])
    assert "wartet" not in body(received[3])
    found = await shown(env)
    assert (found["status"], found["waiting_until"]) == ("waiting", utc(until))
    scheduler = env.daemon.waits
    assert scheduler is not None
    env.clock.advance(minutes=3)
    assert await scheduler.run_once() == 0  # not yet
    assert (await shown(env))["status"] == "waiting"
    env.clock.advance(minutes=3)
    assert await scheduler.run_once() == 1
    assert await scheduler.run_once() == 0  # a second pass: nothing more
    received = await settle(env, 5)
    reminder = received[4]
    assert reminder.rcpt_tos == [MAX]
    assert str(reminder.message["Subject"]) == f"{TAG} Waiting time over: Drucker druckt nicht"
    text = body(reminder)
    at = datetime.fromisoformat(until)  # the mail writes it as its English reader reads it
    assert f"was waiting\nuntil {at.day} {at:%b %Y, %H:%M} and" in text
    assert "/desk/tickets/100001" in text
    found = await shown(env)
    assert (found["status"], found["waiting_until"]) == ("open", None)
    assert history(found)[-1] == ("status", "waiting", "open", "system")
    line = history_lines(await max_c.get(PAGE))[-1]
    assert line.startswith("Status: waiting → in progress · automatic · ")
    assert [k for k, _ in await outbox_kinds(env)].count("agent_wait_over") == 1


async def test_two_daemons_on_one_database_reopen_and_remind_the_agents_once(
    env_factory, sink
) -> None:  # type: ignore[no-untyped-def]
    """With two daemons on one database file, each with its own scheduler running every
    0.1 s, a due wait of a ticket without owner is ended once: every agent reminded once,
    each in their language, one history entry."""
    env, max_c, _ = await waiting_team(env_factory, sink, wait_check_seconds=0.1)
    other = await env_factory(sink, desk={"wait_check_seconds": 0.1})
    until = typed(env.clock() + timedelta(minutes=5))
    assert await wait(max_c, until) == 303
    await settle(env, 4)
    env.clock.advance(minutes=6)
    # The daemons' own schedulers act; then nothing more comes.
    await eventually(lambda: len(sink.received) >= 6, what="the reminders")
    received = await settle(env, 6)
    reminders = {r.rcpt_tos[0]: str(r.message["Subject"]) for r in received[4:]}
    assert reminders == {
        MAX: f"{TAG} Waiting time over: Drucker druckt nicht",
        MIA: f"{TAG} Wartezeit abgelaufen: Drucker druckt nicht",
    }
    for daemon in (env.daemon, other.daemon):
        assert daemon.waits is not None
        assert await daemon.waits.run_once() == 0
    await settle(env, 6)
    found = await shown(env)
    assert found["status"] == "open"
    assert [h for h in history(found) if h[3] == "system"] == [
        ("status", "waiting", "open", "system")
    ]


async def test_a_customer_mail_or_portal_answer_ends_the_wait_at_once(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """A customer's mail on a waiting ticket opens it at once (history by the customer,
    waiting time cleared, the agents told of the answer); so does an answer in the portal;
    the time passing later reminds nobody."""
    env, max_c, _ = await waiting_team(env_factory, sink)
    assert await wait(max_c, typed(env.clock() + timedelta(minutes=5))) == 303
    await settle(env, 4)
    follow = make_mail(ANNA, f"Re: {TAG} Drucker druckt nicht", "Geht wieder nicht.\n")
    assert (await env.send(follow))[0] == 250
    found = await shown(env)
    assert (found["status"], found["waiting_until"]) == ("open", None)
    assert history(found)[-1] == ("status", "waiting", "open", ANNA)
    await settle(env, 6)  # both agents told of Anna's answer
    assert await wait(max_c, typed(env.clock() + timedelta(minutes=5))) == 303
    await settle(env, 6)  # open → waiting: nobody
    anna = await logged_in(env, ANNA)
    answered = await anna.post(
        "/tickets/100001/reply", {"body": "Noch eine Frage."}, form_page="/tickets/100001"
    )
    assert answered.status_code == 303
    found = await shown(env)
    assert (found["status"], found["waiting_until"]) == ("open", None)
    assert history(found)[-1] == ("status", "waiting", "open", ANNA)
    count = len(sink.received)
    env.clock.advance(minutes=10)
    assert env.daemon.waits is not None
    assert await env.daemon.waits.run_once() == 0
    await settle(env, count)
    assert "agent_wait_over" not in [k for k, _ in await outbox_kinds(env)]


async def test_waiting_to_waiting_keeps_the_new_time_and_open_waiting_mail_nobody(
    env_factory, sink
) -> None:  # type: ignore[no-untyped-def]
    """open → waiting, waiting → waiting with a new time, and waiting → open mail nobody
    and are each kept in the history (the new time in Europe/Berlin as the reader's language
    writes it in the desk, in UTC in `ticket show --json`); the same time again changes
    nothing; the queue shows the time; a note with it goes to the customer as an answer that
    says open."""
    env, max_c, mia = await waiting_team(env_factory, sink)
    opened = await max_c.post(f"{PAGE}/status", {"status": "open"}, form_page=PAGE)
    assert opened.status_code == 303
    await settle(env, 4)  # new → open: Anna is told
    year = env.clock().year + 1
    first, second = f"{year}-12-24T09:30", f"{year}-07-01T18:00"  # winter, summer time
    assert await wait(max_c, first) == 303
    assert await wait(mia, second) == 303
    assert await wait(mia, second) == 303  # the same time: nothing changes
    found = await shown(env)
    assert found["waiting_until"] == f"{year}-07-01T16:00:00+00:00"
    assert history(found)[-3:] == [
        ("status", "open", "waiting", MAX),
        ("waiting", None, f"{year}-12-24T08:30:00+00:00", MAX),
        ("waiting", f"{year}-12-24T08:30:00+00:00", f"{year}-07-01T16:00:00+00:00", MIA),
    ]
    german = [line.rsplit(" · ", 1)[0] for line in history_lines(await mia.get(PAGE))]
    assert german[-3:] == [
        f"Status: in Bearbeitung → wartet · {MAX}",
        f"Wartet bis: – → 24.12.{year}, 09:30 · {MAX}",
        f"Wartet bis: 24.12.{year}, 09:30 → 01.07.{year}, 18:00 · {MIA}",
    ]
    page = await mia.get(PAGE)
    assert f'name="until" type="datetime-local" value="{second}"' in page.text
    assert f"bis 01.07.{year}, 18:00" in text_of(page)
    queue = text_of(await max_c.get("/desk?status=waiting"))
    assert f"waiting until 1 Jul {year}, 18:00" in " ".join(queue.split())
    reopened = await mia.post(f"{PAGE}/status", {"status": "open"}, form_page=PAGE)
    assert reopened.status_code == 303
    found = await shown(env)
    assert (found["status"], found["waiting_until"]) == ("open", None)
    assert history(found)[-1] == ("status", "waiting", "open", MIA)
    await settle(env, 4)  # none of it mailed
    assert await wait(max_c, first, note="Wir melden uns nach Weihnachten.") == 303
    received = await settle(env, 5)
    assert received[4].rcpt_tos == [ANNA]
    assert "Wir melden uns nach Weihnachten." in body(received[4])
    assert "in Bearbeitung" in body(received[4])
    assert "wartet" not in body(received[4])
    assert (await outbox_kinds(env))[-1] == ("agent_reply", ANNA)


async def test_customers_see_a_waiting_ticket_as_open(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """In the portal a waiting ticket is open: on its page, in the list, under the filter
    `open`; `waiting` is no filter there and no word of the portal."""
    env, max_c, _ = await waiting_team(env_factory, sink)
    assert await wait(max_c, typed(env.clock() + timedelta(days=2))) == 303
    await settle(env, 4)
    anna = await logged_in(env, ANNA)
    page = await anna.get("/tickets/100001")
    assert '<span class="status status-open" id="status">in Bearbeitung</span>' in page.text
    listed = await anna.get("/tickets?status=open")
    assert 'href="/tickets/100001"' in listed.text
    assert 'class="status status-open"' in listed.text
    assert 'value="waiting"' not in listed.text
    for path in ("/tickets", "/tickets/100001", "/tickets?status=waiting"):
        shown_text = (await anna.get(path)).text
        assert "wartet" not in shown_text
        assert "status-waiting" not in shown_text
    closed_list = await anna.get("/tickets?status=closed")
    assert 'href="/tickets/100001"' not in closed_list.text


@pytest.mark.parametrize(
    ("until", "german", "english"),
    [
        ("", "Bis wann soll das Ticket warten?", "Until when should the ticket wait?"),
        ("morgen", "Das ist keine Zeitangabe", "That is not a time"),
        ("2026-13-01T10:00", "Das ist keine Zeitangabe", "That is not a time"),
        ("0001-01-01T00:30", "Das ist keine Zeitangabe", "That is not a time"),
        ("２０２６-12-24T09:30", "Das ist keine Zeitangabe", "That is not a time"),
        ("2020-01-01T10:00", "Diese Zeit ist schon vorbei", "That time has passed"),
        ("2999-01-01T10:00", "mehr als fünf Jahre voraus", "more than five years ahead"),
    ],
)
async def test_a_bad_waiting_time_is_refused_with_a_clear_message(
    env_factory, sink, until: str, german: str, english: str
) -> None:  # type: ignore[no-untyped-def]
    """Waiting without a time, with no time, a past one or one years ahead: 400 with a clear
    message in the desk's language, the typed note and time kept, nothing changed."""
    env, max_c, mia = await waiting_team(env_factory, sink)
    before = await shown(env)
    for client, message in ((mia, german), (max_c, english)):
        response = await client.post(
            f"{PAGE}/status", {"status": "waiting", "until": until, "note": "Bis bald."},
            form_page=PAGE,
        )  # fmt: skip
        assert response.status_code == 400, until
        assert message in text_of(response)
        assert ">Bis bald.</textarea>" in response.text
        assert f'name="until" type="datetime-local" value="{until}"' in response.text
        assert '<option value="waiting" selected>' in response.text
    assert await shown(env) == before
    await settle(env, 3)


async def test_a_stale_waiting_form_is_409_and_acts_with_force(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """A waiting form made on a page older than another agent's note is 409, changes
    nothing and keeps the note and time; with force=1 it acts."""
    env, max_c, mia = await waiting_team(env_factory, sink)
    await mia.get(PAGE)
    old = mia.seen
    assert (
        await max_c.post(f"{PAGE}/note", {"body": "Rückruf morgen"}, form_page=PAGE)
    ).status_code == 303
    until = typed(env.clock() + timedelta(hours=3))
    data = {"status": "waiting", "until": until, "note": "Wir warten."}
    stale = await mia.post(f"{PAGE}/status", data)
    assert stale.status_code == 409
    assert "Rückruf morgen" in text_of(stale).split("Seitdem geändert")[1]
    assert ">Wir warten.</textarea>" in stale.text
    assert f'value="{until}"' in stale.text
    assert (await shown(env))["status"] == "new"
    forced = await mia.post(f"{PAGE}/status", {**data, "seen": old, "force": "1"})
    assert forced.status_code == 303
    found = await shown(env)
    assert (found["status"], found["waiting_until"]) == ("waiting", utc(until))


async def test_waiting_needs_the_desk_and_the_cli_lists_it(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """Waiting needs a time, so neither `ticket status` nor an agent's `#status waiting` mail
    sets it (refused, nothing changed); `ticket list --status waiting` lists waiting tickets,
    `ticket show` names the time."""
    env, max_c, _ = await waiting_team(env_factory, sink)
    refused = await env.cli("ticket", "status", "100001", "waiting")
    assert refused.returncode == 2
    mail = make_mail(MAX, f"Re: {TAG} Drucker druckt nicht", "#status waiting\nBis morgen.\n")
    code, reply = await env.send(mail)
    assert code == 550
    assert "Unknown status 'waiting'" in reply
    assert (await shown(env))["status"] == "new"
    assert await wait(max_c, typed(env.clock() + timedelta(hours=1))) == 303
    listed = await env.cli_json("ticket", "list", "--status", "waiting")
    assert [t["number"] for t in listed] == ["100001"]
    plain = await env.cli("ticket", "show", "100001")
    until = (await shown(env))["waiting_until"]
    assert f"Status:    waiting until {until}\n" in plain.stdout


@pytest.mark.sqlite_only  # SQLite's schema migration from version 12
def test_a_version_12_database_gets_waiting_times(tmp_path: Path) -> None:
    """The migration to the waiting schema keeps a version 12 database's tickets, none of
    them waiting; a waiting time can then be kept."""
    conn = _database(tmp_path)
    try:
        undo_schema_13(conn)
        _ticket(conn, 100001)
        migrate(conn)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        row = conn.execute("SELECT status, waiting_until FROM tickets").fetchone()
        assert tuple(row) == ("new", None)
        conn.execute("UPDATE tickets SET status = 'waiting', waiting_until = 'x'")
    finally:
        conn.close()


def test_an_unknown_time_zone_stops_start_up_with_one_line(tmp_path: Path) -> None:
    """web.timezone must name a known time zone: else start-up stops naming the key."""
    path = tmp_path / "config.toml"
    path.write_text('[web]\ntimezone = "Mars/Olympus"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"web\.timezone: 'Mars/Olympus' is no known time zone"):
        load_config(path, environ={})
    path.write_text('[web]\ntimezone = "America/New_York"\n', encoding="utf-8")
    assert load_config(path, environ={}).web.timezone == "America/New_York"


async def test_the_waiting_time_field_shows_for_waiting_in_chromium(
    env: Env, browser: Browser
) -> None:
    """In Chromium the status form's datetime-local field is hidden until `waiting` is
    chosen; filled and sent, the ticket waits until that time."""
    await agents(env)
    await first_ticket(env)
    watched = await agent_login(browser, env, MIA, "de")
    page = watched.page
    await page.goto(PAGE)
    until = page.locator("#status-until")
    assert not await until.is_visible()
    await page.locator("#status-new").select_option("waiting")
    assert await until.is_visible()
    assert await until.get_attribute("type") == "datetime-local"
    chosen = typed(env.clock() + timedelta(days=1))
    await until.fill(chosen)
    await submit(page, "status", 100001)
    assert await page.locator("#ticket-status").inner_text() == "wartet"
    at = datetime.fromisoformat(chosen)  # shown as Mia's German reads it
    assert f"bis {at:%d.%m.%Y, %H:%M}" in await page.locator("#ticket-waiting").inner_text()
    assert (await shown(env))["waiting_until"] == utc(chosen)
    await page.locator("#status-new").select_option("closed")
    assert not await until.is_visible()
    watched.check()


def test_ending_a_wait_rechecks_status_time_and_version(tmp_path: Path) -> None:
    """A due wait found by two nodes is ended by the first only; one found before the
    ticket changed (its version), or before its time, is not ended (storage, real file)."""
    conn = _database(tmp_path)
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    try:
        _ticket(conn, 100001)
        _ticket(conn, 100002)
        for number in (100001, 100002):
            assert set_waiting(conn, number, now + timedelta(minutes=5), by=MAX, now=now)
        later = now + timedelta(minutes=6)
        first, second = due_waits(conn, now=later)
        assert due_waits(conn, now=now) == ()  # not yet due
        assert not end_due_wait(conn, first, now=now)  # found due, but not at this time
        assert end_due_wait(conn, first, now=later)
        assert not end_due_wait(conn, first, now=later)  # another node found it too
        record_change(conn, 100002, "owner", None, MAX, by=MAX, now=later)  # a change since
        assert not end_due_wait(conn, second, now=later)
        assert [w.ticket for w in due_waits(conn, now=later)] == [100002]
        rows = conn.execute("SELECT number, status, waiting_until FROM tickets ORDER BY 1")
        assert [tuple(r) for r in rows] == [
            (100001, "open", None),
            (100002, "waiting", "2026-12-06T12:05:00+00:00"),
        ]
        ended = [(h.what, h.old, h.new, h.by) for h in history_of(conn, 100001)][-1]
        assert ended == ("status", "waiting", "open", "system")
    finally:
        conn.close()
