"""The support desk in a real browser: Debian's Chromium driven by Playwright (never a browser
of Playwright's own), against the real daemon. A JavaScript error in the console or a dialog
fails the test."""

from __future__ import annotations

import re

import pytest
from conftest import REPO, Env, make_mail
from desk_support import body
from playwright.async_api import Browser, Page
from test_browser_portal import SCREENSHOTS, Watched, new_page
from test_browser_portal import browser as browser  # the fixture: Chromium for this module
from test_desk import MAX, MIA, agents
from web_support import ANNA, PASSWORD, mails_to, next_mail_to

pytestmark = pytest.mark.web  # the daemon serves the desk


async def desk_tickets(env: Env) -> None:
    """Two institutions, two agents, four tickets; the one to find says 'Zylinderkopf'."""
    await env.customer("20001", "Realschule Beispielstadt")
    await env.user("carl@real.example", "20001", name="Carl Krause", lang="de")
    await agents(env)
    for sender, subject, text in (
        (ANNA, "Drucker im Lehrerzimmer", "Er druckt nur leere Seiten.\n"),
        ("ben@schule.example", "Beamer Raum 12 flackert", "Seit Montag flackert er.\n"),
        ("carl@real.example", "WLAN im Neubau", "Kein Empfang im zweiten Stock.\n"),
        (ANNA, "Tablet-Wagen", "Fehlercode Zylinderkopf 42 beim Laden.\n"),
    ):
        assert (await env.send(make_mail(sender, subject, text)))[0] == 250
        env.clock.advance(seconds=5)


async def agent_login(
    browser: Browser, env: Env, email: str, lang: str, *, width: int = 1024
) -> Watched:
    watched = await new_page(browser, env, lang=lang, width=width)
    await log_in(watched.page, email, lands="**/desk")
    return watched


async def log_in(page: Page, email: str, *, lands: str) -> None:
    """Log in through the real form and wait for the page it lands on (`lands`, a glob)."""
    await page.goto("/login")
    await page.locator("#email").fill(email)
    await page.locator("#password").fill(PASSWORD)
    await page.locator("form.stack button[type=submit]").click()
    await page.wait_for_url(lands)


async def submit(page: Page, action: str, number: int) -> None:
    """Send the ticket page's form `action` and wait for the page it leads back to."""
    async with page.expect_navigation():
        await page.locator(f"form[action='/desk/tickets/{number}/{action}'] button").click()
    assert page.url.endswith(f"/desk/tickets/{number}")


async def test_agent_finds_assigns_notes_answers_and_closes_in_chromium(
    env: Env, browser: Browser
) -> None:
    """In Chromium an agent logs in, finds the ticket by a word of its text, assigns it to
    himself, writes a note and an answer (which reaches the customer), and closes it."""
    sink = env.sink
    assert sink is not None
    await desk_tickets(env)
    watched = await agent_login(browser, env, MAX, "en")
    page = watched.page
    await page.locator("#q").fill("zylinderkopf")
    async with page.expect_navigation():
        await page.locator("form.filters button[type=submit]").click()
    rows = page.locator("table.tickets tbody tr")
    assert await rows.count() == 1
    assert "Tablet-Wagen" in await rows.inner_text()
    async with page.expect_navigation():
        await rows.locator("a").first.click()
    number = int(page.url.rsplit("/", 1)[1])
    assert number == 100004

    await page.locator("#assign-agent").select_option(MAX)
    await submit(page, "assign", number)
    assert MAX in await page.locator("#ticket-owner").inner_text()

    await page.locator("#note-body").fill("Ladegerät Typ B bestellt, intern.")
    await submit(page, "note", number)
    assert "Ladegerät Typ B bestellt, intern." in await page.inner_text("main")

    before = len(mails_to(sink, ANNA))
    await page.locator("#reply-body").fill("Bitte das Ladegerät tauschen.")
    await page.locator("#reply-status").select_option("answered")
    await submit(page, "reply", number)
    assert "Bitte das Ladegerät tauschen." in await page.inner_text("main")
    answer = await next_mail_to(sink, ANNA, after=before)
    assert "Bitte das Ladegerät tauschen." in body(answer)
    assert "Ladegerät Typ B" not in body(answer)  # the note stays inside

    await page.locator("#status-new").select_option("closed")
    await submit(page, "status", number)
    assert await page.locator("#ticket-status").get_attribute("class") == "status status-closed"
    shown = await env.cli_json("ticket", "show", str(number))
    assert shown["status"] == "closed"
    await page.goto("/desk?status=closed")
    assert re.search(rf"\b{number}\b", await page.inner_text("table.tickets"))
    watched.check()


@pytest.mark.parametrize(("email", "lang"), [(MIA, "de"), (MAX, "en")])
async def test_desk_screenshots(env: Env, browser: Browser, email: str, lang: str) -> None:
    """The queue and a ticket page render without script errors in German and English;
    the README's screenshots are taken here (TICKETMAIL_SCREENSHOTS=1 writes them to docs/)."""
    await desk_tickets(env)
    target = REPO / "docs" if SCREENSHOTS else env.data_dir / "screenshots"
    target.mkdir(parents=True, exist_ok=True)
    watched = await agent_login(browser, env, email, lang, width=1280)  # the desk's width
    page = watched.page
    heading = {"de": "Warteschlange", "en": "Queue"}[lang]
    assert heading in await page.inner_text("h1")
    assert await page.locator("table.tickets tbody tr").count() == 4
    await page.screenshot(path=str(target / f"desk-queue-{lang}.png"), full_page=True)
    await page.set_viewport_size({"width": 1024, "height": 800})  # the ticket as before
    await page.goto("/desk/tickets/100001")
    await page.locator("#note-body").fill("Toner ist bestellt.")
    await submit(page, "note", 100001)
    await page.screenshot(path=str(target / f"desk-ticket-{lang}.png"), full_page=True)
    for name in ("queue", "ticket"):
        assert (target / f"desk-{name}-{lang}.png").stat().st_size > 1000
    watched.check()
