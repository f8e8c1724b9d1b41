"""A ticket taken by phone in a real browser: Debian's Chromium driven by Playwright, against
the real daemon (SPEC 9.1). A JavaScript error in the console or a dialog fails the test."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Env
from playwright.async_api import Browser
from test_browser_desk import agent_login
from test_browser_portal import browser as browser  # the fixture: Chromium for this module
from test_browser_portal import fits
from test_desk import MIA, agents
from web_support import next_mail_to, png

pytestmark = pytest.mark.web  # the daemon serves the desk

NORA = "nora@schule.example"


async def test_an_agent_takes_a_call_from_a_new_caller_in_chromium(
    env: Env, browser: Browser, tmp_path: Path
) -> None:
    """In Chromium at 360 px an agent opens the new-ticket form from the desk's menu, takes a
    call from a caller not yet registered with a screenshot, lands on the new ticket's page
    with the caller's phone as a tel: link; the caller gets the confirmation."""
    sink = env.sink
    assert sink is not None
    await agents(env)
    watched = await agent_login(browser, env, MIA, "de")
    page = watched.page
    await page.set_viewport_size({"width": 360, "height": 800})
    async with page.expect_navigation():
        await page.get_by_role("link", name="Neues Ticket").click()
    assert page.url.endswith("/desk/tickets/new")
    await fits(page)
    await page.get_by_label("E-Mail-Adresse des Kunden").fill(NORA)
    await page.get_by_label("Kanal").select_option("phone")
    await page.get_by_label("Betreff").fill("Beamer in Raum 12")
    await page.get_by_label("Anliegen des Kunden").fill("Frau Neumann ruft an: kein Bild.")
    shot = tmp_path / "beamer.png"
    shot.write_bytes(png(seed=5))
    await page.locator("#attachments").set_input_files(str(shot))
    assert await page.locator("#confirm").is_checked()
    await page.get_by_label("Einrichtung (Kundennummer)").fill("10042")
    await page.get_by_label("Name", exact=True).fill("Nora Neumann")
    await page.get_by_label("Telefon", exact=True).fill("+49 (0)30 / 555 12 34")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Ticket anlegen").click()
    assert page.url.endswith("/desk/tickets/100001")
    link = page.locator("#requester-phone")
    assert await link.get_attribute("href") == "tel:+49305551234"
    assert await link.inner_text() == "+49 (0)30 / 555 12 34"
    assert await page.locator("#ticket-channel").inner_text() == "Telefon"
    assert "beamer.png" in await page.inner_text("main")
    await fits(page)
    confirmation = await next_mail_to(sink, NORA, after=0)
    assert "[Ticket#100001]" in str(confirmation.message["Subject"])
    watched.check()
