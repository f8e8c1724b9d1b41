"""Bulk actions on the desk's queue in a real browser (Debian's Chromium driven by
Playwright) on a 360 px phone, against the real daemon (SPEC 9.1). A JavaScript error in
the console or a dialog fails the test."""

from __future__ import annotations

import pytest
from conftest import Env
from playwright.async_api import Browser
from test_browser_desk import agent_login, desk_tickets
from test_browser_portal import browser as browser  # the fixture: Chromium for this module
from test_browser_portal import fits
from test_desk import MAX, MIA

pytestmark = pytest.mark.web  # the daemon serves the desk


async def test_an_agent_ticks_two_tickets_and_assigns_them_at_360_px(
    env: Env, browser: Browser
) -> None:
    """On a 360 px screen an agent ticks two tickets in the queue, assigns them to a
    colleague in one go, and sees them assigned (the third not); the queue fits the width
    and its search form still works beside the bulk form."""
    await desk_tickets(env)
    watched = await agent_login(browser, env, MAX, "en", width=360)
    page = watched.page
    await fits(page)
    await page.locator("#pick-100001").check()
    await page.locator("#pick-100002").check()
    await page.locator("#bulk-assign").check()
    await page.locator("#bulk-agent").select_option(MIA)
    async with page.expect_navigation():
        await page.locator("form.bulk button[type=submit]").click()
    assert "2 tickets were changed." in await page.inner_text("main")
    await fits(page)
    for number, owner in ((100001, "Mia Hahn"), (100002, "Mia Hahn"), (100003, "nobody")):
        row = page.locator("table.tickets tbody tr", has=page.locator(f"#pick-{number}"))
        assert owner in await row.inner_text(), number
    for number in (100001, 100002):
        shown = await env.cli_json("ticket", "show", str(number))
        assert [(h["what"], h["to"]) for h in shown["history"]] == [("owner", MIA)]
    await page.locator("#q").fill("Beamer")
    async with page.expect_navigation():
        await page.locator("form.filters button[type=submit]").click()
    assert await page.locator("table.tickets tbody tr").count() == 1
    watched.check()
