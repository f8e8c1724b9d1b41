"""The desk's queue in a real browser (Debian's Chromium driven by Playwright) against the real
daemon (issue 24): it fills a 1280 px screen with one line per ticket, stays cards without
sideways scrolling at 360 px, and the keys j, k, Enter, r, n and ? work, never while typing.
A JavaScript error in the console or a dialog fails the test."""

from __future__ import annotations

import pytest
from conftest import Env, make_mail
from playwright.async_api import Browser, Page, expect
from test_browser_desk import agent_login
from test_browser_portal import browser as browser  # the fixture: Chromium for this module
from test_browser_portal import fits
from test_desk import MAX, MIA, agents
from web_support import ANNA, BEN

pytestmark = pytest.mark.web  # the daemon serves the desk

TICKETS = 30
LONG = "Der Beamer im Raum 12 flackert seit dem Update auf die neue Firmware bei jedem Start"
WAIT = 10_000  # ms: the longest a page takes to answer on a busy machine


async def thirty_tickets(env: Env) -> None:
    """30 tickets by Anna and Ben, every third with a long subject, one a minute apart."""
    await env.customer("20001", "Staatliche Realschule Beispielstadt am Ufer der Beispiel")
    await agents(env)
    for n in range(TICKETS):
        subject = f"{LONG} ({n})" if n % 3 == 0 else f"Drucker {n}"
        sender = ANNA if n % 2 else BEN
        assert (await env.send(make_mail(sender, subject, "Bitte helfen.\n")))[0] == 250
        env.clock.advance(seconds=60)


async def fully_visible_rows(page: Page) -> list[dict[str, float]]:
    """The queue's rows wholly inside the window, with each row's and its cells' heights."""
    found: list[dict[str, float]] = await page.evaluate(
        """() => Array.from(document.querySelectorAll("table.queue tbody tr")).map(row => {
            const box = row.getBoundingClientRect();
            const cell = row.querySelector("td");
            const line = parseFloat(getComputedStyle(cell).lineHeight);
            return {top: box.top, bottom: box.bottom, height: box.height, line: line};
        }).filter(r => r.top >= 0 && r.bottom <= window.innerHeight)"""
    )
    return found


@pytest.mark.parametrize(("email", "lang"), [(MIA, "de"), (MAX, "en")])
async def test_the_queue_fills_a_1280_px_screen_one_line_per_ticket(
    env: Env, browser: Browser, email: str, lang: str
) -> None:
    """At 1280x800 the desk's queue is wider than the portal's column, at least 12 of 30
    tickets are fully visible (in either language), each one line high, a long subject cut
    with an ellipsis and whole in its title."""
    await thirty_tickets(env)
    watched = await agent_login(browser, env, email, lang, width=1280)
    page = watched.page
    assert await page.locator("table.queue tbody tr").count() == TICKETS
    table = await page.locator("table.queue").bounding_box()
    assert table is not None
    assert table["width"] > 1200  # the portal's column is 60rem (960 px)
    rows = await fully_visible_rows(page)
    assert len(rows) >= 12, rows
    for row in rows:
        assert row["height"] < 1.6 * row["line"], row  # one line (and its padding)
    cut = page.locator("table.queue tbody a[title^='Der Beamer']").first
    assert await cut.evaluate("a => getComputedStyle(a.parentElement).textOverflow") == "ellipsis"
    assert await cut.evaluate("a => a.parentElement.scrollWidth > a.parentElement.clientWidth")
    assert (await cut.get_attribute("title") or "").startswith(LONG)
    await fits(page)
    watched.check()


async def test_the_queue_is_cards_at_360_px(env: Env, browser: Browser) -> None:
    """At 360 px the queue is cards (a cell a line, long subjects wrapped) without sideways
    scrolling."""
    await thirty_tickets(env)
    watched = await agent_login(browser, env, MAX, "de", width=360)
    page = watched.page
    await fits(page)
    cell = page.locator("table.queue tbody tr").first.locator("td").nth(2)
    assert await cell.evaluate("td => getComputedStyle(td).display") == "block"
    long_cell = page.locator("table.queue tbody td", has=page.locator("a[title^='Der Beamer']"))
    box = await long_cell.first.bounding_box()
    assert box is not None
    assert box["height"] > 40  # wrapped over lines, not cut
    watched.check()


async def test_keys_move_open_and_focus_but_never_while_typing(env: Env, browser: Browser) -> None:
    """j and k move a visible highlight through the queue and Enter opens the highlighted
    ticket; r focuses the answer and n the note without typing the letter; ? lists the
    keys in the page's language; typing j or k in the search field (or with Alt) moves
    nothing."""
    await thirty_tickets(env)
    watched = await agent_login(browser, env, MIA, "de", width=1280)
    page = watched.page
    rows = page.locator("table.queue tbody tr")
    first = await rows.nth(0).locator("a").first.inner_text()
    await page.locator("#q").click()
    await page.keyboard.type("jk")
    await expect(page.locator("#q")).to_have_value("jk", timeout=WAIT)
    await page.keyboard.press("Alt+j")
    await page.locator("#q").evaluate("q => q.blur()")
    assert await page.locator("table.queue tr.current").count() == 0
    assert page.url.endswith("/desk")

    await page.keyboard.press("Alt+j")
    assert await page.locator("table.queue tr.current").count() == 0
    await page.keyboard.press("j")
    await page.keyboard.press("j")
    await expect(rows.nth(1)).to_have_class("current", timeout=WAIT)
    await page.keyboard.press("k")
    await expect(rows.nth(0)).to_have_class("current", timeout=WAIT)
    await expect(rows.nth(1)).not_to_have_class("current", timeout=WAIT)
    assert await rows.nth(0).evaluate("tr => tr.contains(document.activeElement)")
    assert await page.locator("table.queue tr.current").count() == 1
    async with page.expect_navigation():
        await page.keyboard.press("Enter")
    assert page.url.endswith(f"/desk/tickets/{first}")

    await page.keyboard.press("r")
    await expect(page.locator("#reply-body")).to_be_focused(timeout=WAIT)
    assert await page.locator("#reply-body").input_value() == ""  # the r was not typed
    await page.keyboard.type("n")  # typing in the answer: n is a letter, not a key
    await expect(page.locator("#reply-body")).to_have_value("n", timeout=WAIT)
    await page.locator("#reply-body").evaluate("t => t.blur()")
    await page.keyboard.press("n")
    await expect(page.locator("#note-body")).to_be_focused(timeout=WAIT)
    assert await page.locator("#note-body").input_value() == ""
    await page.locator("#note-body").evaluate("t => t.blur()")
    await page.keyboard.press("?")
    listed = page.locator("dialog#keys")
    await expect(listed).to_be_visible(timeout=WAIT)
    assert "Tasten im Desk" in await listed.inner_text()
    await page.keyboard.press("Escape")
    await expect(listed).to_be_hidden(timeout=WAIT)
    watched.check()
