"""Dates, times and sizes per language (issue 24): every time on the desk's and the portal's
pages reads in `web.timezone` (Europe/Berlin by default) as its reader's language writes it,
inside a `<time>` carrying the UTC instant; the lists add a relative time from the daemon's
clock; sizes use the language's decimal mark. Real daemon, real SMTP and HTTP; the injected
clock pins the instants. Unit tests of ticketmail/web/locale.py at the end."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import pytest
from conftest import Clock, Env, make_mail
from test_desk import MAX, MIA, agent_client
from test_desk_rules import desk_env
from web_support import ANNA, Client, logged_in, text_of

from ticketmail.localtime import ago, full_when, local_day, local_when, size_text, utc_iso
from ticketmail.web.render import time_html

pytestmark = pytest.mark.web  # the daemon serves the portal and the desk

BERLIN = "Europe/Berlin"
TICKET = "/desk/tickets/100001"


def pin(clock: Clock, moment: datetime) -> None:
    """The daemon's clock reads `moment` now (and runs on from there)."""
    clock.offset = moment - datetime.now(UTC)


async def mail_at(env: Env, moment: datetime, *, attachment: bytes | None = None) -> None:
    """Anna's mail arriving at `moment` (its Date header the same instant): ticket 100001."""
    pin(env.clock, moment)
    mail = make_mail(f"Anna Müller <{ANNA}>", "Drucker druckt nicht", "Er druckt nicht.\n")
    del mail["Date"]
    mail["Date"] = moment.strftime("%a, %d %b %Y %H:%M:%S +0000")
    if attachment is not None:
        mail.add_attachment(attachment, maintype="application", subtype="octet-stream",
                            filename="log.bin")  # fmt: skip
    assert await env.send(mail) == (250, "2.0.0 Ok: ticket 100001")


def times(html: str) -> list[tuple[str, str, str]]:
    """Every `<time datetime title>text</time>` of a page."""
    found = re.findall(r'<time datetime="([^"]+)" title="([^"]+)">([^<]+)</time>', html)
    return [(d, t, x) for d, t, x in found]


async def pages(env: Env) -> dict[str, str]:
    """The queue and the ticket in the desk (Mia German, Max English) and the portal (Anna)."""
    mia, max_ = await agent_client(env, MIA), await agent_client(env, MAX)
    anna: Client = await logged_in(env, ANNA, lang="de")
    shown = {
        "desk-de": (await mia.get("/desk")).text, "desk-ticket-de": (await mia.get(TICKET)).text,
        "desk-en": (await max_.get("/desk")).text, "desk-ticket-en": (await max_.get(TICKET)).text,
        "portal-de": (await anna.get("/tickets")).text,
        "portal-ticket-de": (await anna.get("/tickets/100001")).text,
        "portal-en": (await anna.get("/tickets?lang=en")).text,
        "portal-ticket-en": (await anna.get("/tickets/100001?lang=en")).text,
    }  # fmt: skip
    for client in (mia, max_, anna):
        await client.close()
    return shown


async def test_a_december_mail_reads_in_berlin_winter_time_in_both_languages(
    env_factory, sink
) -> None:  # type: ignore[no-untyped-def]
    """A mail that arrived at 07:31 UTC on 3 December shows as 08:31 (UTC+1) in the desk and
    the portal, German and English, each in a <time> with the UTC instant and the full date,
    time and zone as its title; no page says 'UTC' for it."""
    env = await desk_env(env_factory, sink)
    await mail_at(env, datetime(2026, 12, 3, 7, 31, 2, tzinfo=UTC))
    shown = await pages(env)
    expected = {"de": ("03.12.2026, 08:31", "Donnerstag, 3. Dezember 2026, 08:31"),
                "en": ("3 Dec 2026, 08:31", "Thursday, 3 December 2026, 08:31")}  # fmt: skip
    for name, html in shown.items():
        text, title = expected[name[-2:]]
        mine = [t for t in times(html) if t[0].startswith("2026-12-03T07:31:")]
        assert mine, (name, times(html))
        assert all(shown_text == text for _, _, shown_text in mine), (name, mine)
        assert all(t.startswith(title) and t.endswith("(Europe/Berlin)") for _, t, _ in mine)
        assert "07:31" not in html.replace("T07:31:", ""), name
        assert " UTC" not in html, name


async def test_a_july_mail_reads_in_berlin_summer_time(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """A mail that arrived at 07:31 UTC on 6 July shows as 09:31 (UTC+2, summer time)."""
    env = await desk_env(env_factory, sink)
    await mail_at(env, datetime(2026, 7, 6, 7, 31, 2, tzinfo=UTC))
    shown = await pages(env)
    for name, html in shown.items():
        mine = [t for t in times(html) if t[0].startswith("2026-07-06T07:31:")]
        assert mine, (name, times(html))
        local = "06.07.2026, 09:31" if name.endswith("de") else "6 Jul 2026, 09:31"
        assert {shown_text for _, _, shown_text in mine} == {local}, (name, mine)
        zone = "Sommerzeit" if name.endswith("de") else "Summer Time"
        assert all(zone in title for _, title, _ in mine), (name, mine)


async def test_the_lists_say_how_long_ago_by_the_daemons_clock(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """The desk's queue and the portal's list show the last activity's relative time beside
    it, from the daemon's clock: 'vor 5 Minuten' / '5 minutes ago' after moving it 5 minutes
    (and anew after moving it again: the portal's kept rows are not stale)."""
    env = await desk_env(env_factory, sink)
    await mail_at(env, datetime(2026, 12, 3, 7, 31, 2, tzinfo=UTC))
    env.clock.advance(minutes=5)
    shown = await pages(env)
    for name in ("desk-de", "portal-de"):
        assert '<span class="ago">vor 5 Minuten</span>' in shown[name], name
    for name in ("desk-en", "portal-en"):
        assert '<span class="ago">5 minutes ago</span>' in shown[name], name
    env.clock.advance(hours=2)
    shown = await pages(env)
    assert '<span class="ago">vor 2 Stunden</span>' in shown["portal-de"]
    assert '<span class="ago">2 hours ago</span>' in shown["desk-en"]


async def test_sizes_use_the_languages_decimal_mark(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """The upload limit reads '25,0 MB' in German and '25.0 MB' in English (portal and desk
    forms), a file's size '1,5 KB' / '1.5 KB' on the portal's and the desk's ticket page."""
    env = await desk_env(env_factory, sink)
    await mail_at(env, datetime(2026, 12, 3, 7, 31, 2, tzinfo=UTC), attachment=b"x" * 1536)
    anna = await logged_in(env, ANNA, lang="de")
    mia, max_ = await agent_client(env, MIA), await agent_client(env, MAX)
    assert "25,0 MB" in (await anna.get("/tickets/new")).text
    assert "25.0 MB" in (await anna.get("/tickets/new?lang=en")).text
    assert "1,5 KB" in (await anna.get("/tickets/100001?lang=de")).text
    assert "1.5 KB" in (await anna.get("/tickets/100001?lang=en")).text
    assert "25,0 MB" in (await mia.get("/desk/tickets/new")).text
    assert "25.0 MB" in (await max_.get("/desk/tickets/new")).text
    assert "1,5 KB" in (await mia.get(TICKET)).text
    assert "1.5 KB" in (await max_.get(TICKET)).text
    for client in (anna, mia, max_):
        await client.close()


async def test_the_desks_too_big_answer_names_the_limit_in_the_agents_language(
    env_factory, sink
) -> None:  # type: ignore[no-untyped-def]
    """An agent's answer with files past `smtp.max_message_bytes` (100 000 bytes) is refused
    with the limit written as their language does: '97,7 KB' / '97.7 KB'."""
    env = await desk_env(env_factory, sink, smtp={"max_message_bytes": 100_000})
    await mail_at(env, datetime(2026, 12, 3, 7, 31, 2, tzinfo=UTC))
    big = [("attachments", ("big.bin", b"z" * 150_000, "application/octet-stream"))]
    for email, said in ((MIA, "größer als 97,7 KB"), (MAX, "larger than 97.7 KB")):
        client = await agent_client(env, email)
        refused = await client.post(f"{TICKET}/reply", {"body": "Anbei"}, files=big,
                                    form_page=TICKET)  # fmt: skip
        assert refused.status_code == 413
        assert said in " ".join(text_of(refused).split()), email
        await client.close()


# --- the formatting module ----------------------------------------------------------------------


def test_local_when_is_the_languages_medium_date_and_short_time_in_the_zone() -> None:
    """07:31 UTC reads 08:31 in Berlin's winter, 09:31 in its summer, 16:31 in Tokyo."""
    winter = datetime(2026, 12, 6, 7, 31, tzinfo=UTC)
    summer = datetime(2026, 7, 6, 7, 31, tzinfo=UTC)
    assert local_when(winter, "de", BERLIN) == "06.12.2026, 08:31"
    assert local_when(winter, "en", BERLIN) == "6 Dec 2026, 08:31"
    assert local_when(summer, "de", BERLIN) == "06.07.2026, 09:31"
    assert local_when(summer.isoformat(), "en", "Asia/Tokyo") == "6 Jul 2026, 16:31"
    assert full_when(winter, "de", BERLIN) == (
        "Sonntag, 6. Dezember 2026, 08:31 Mitteleuropäische Normalzeit (Europe/Berlin)"
    )
    assert full_when(summer, "en", BERLIN) == (
        "Monday, 6 July 2026, 09:31 Central European Summer Time (Europe/Berlin)"
    )
    assert local_day(date(2026, 12, 31), "de") == "31.12.2026"
    assert local_day(date(2026, 12, 31), "en") == "31 Dec 2026"


def test_time_html_carries_the_utc_instant_and_escapes_nothing_unsafe() -> None:
    """The <time> element: datetime is the UTC instant (Z), title the full local text."""
    html = str(time_html(datetime(2026, 12, 6, 8, 31, tzinfo=UTC).astimezone(), "en", BERLIN))
    assert html == (
        '<time datetime="2026-12-06T08:31:00Z" title="Sunday, 6 December 2026, 09:31 Central'
        ' European Standard Time (Europe/Berlin)">6 Dec 2026, 09:31</time>'
    )
    assert utc_iso("2026-07-06T09:31:00+02:00") == "2026-07-06T07:31:00Z"


def test_ago_reads_both_ways_in_each_language() -> None:
    """Before the clock: 'vor 5 Minuten' / '5 minutes ago'; after it: 'in 2 Tagen'."""
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    assert ago(now - timedelta(minutes=5), now, "de") == "vor 5 Minuten"
    assert ago(now - timedelta(minutes=5), now, "en") == "5 minutes ago"
    assert ago(now + timedelta(days=2), now, "de") == "in 2 Tagen"
    assert ago((now - timedelta(hours=3)).isoformat(), now, "en") == "3 hours ago"


def test_sizes_step_by_1024_with_the_languages_decimal_mark() -> None:
    """25 MiB is '25,0 MB' / '25.0 MB'; bytes are whole; past a thousand MB, grouped."""
    assert size_text(25 * 1024 * 1024, "de") == "25,0 MB"
    assert size_text(25 * 1024 * 1024, "en") == "25.0 MB"
    assert size_text(1536, "de") == "1,5 KB"
    assert size_text(512, "en") == "512 B"
    assert size_text(2048 * 1024 * 1024, "de") == "2.048,0 MB"
    assert size_text(2048 * 1024 * 1024, "en") == "2,048.0 MB"
