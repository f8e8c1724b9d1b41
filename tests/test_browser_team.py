"""Two agents on one ticket in a real browser (SPEC 9.1): Debian's Chromium driven by Playwright,
two browser contexts (two agents' sessions) against the real daemon. Each sees the other on
the ticket within seconds, and that the other is typing; the one who answers second is
stopped (409) with the typed text kept and sends it from there. A JavaScript error in the
console (a refused script, CSP) or a dialog fails the test. TICKETMAIL_SCREENSHOTS=1 writes
the README's screenshots of it to docs/."""

from __future__ import annotations

import pytest
from conftest import REPO, Env, make_mail
from desk_support import body
from playwright.async_api import Browser, Page, expect
from test_browser_desk import agent_login
from test_browser_portal import SCREENSHOTS
from test_browser_portal import browser as browser  # the fixture: Chromium for this module
from test_desk import MAX, MIA, agents
from web_support import ANNA, next_mail_to

pytestmark = pytest.mark.web  # the daemon serves the desk

PAGE = "/desk/tickets/100001"
SOON = 15_000  # ms: heartbeats come every 4 seconds


async def send_answer(page: Page) -> int:
    """Send the page's answer form; the status of the page it leads to."""
    async with page.expect_navigation() as navigation:
        await page.locator(f"form[action='{PAGE}/reply'] button[type=submit]").click()
    response = await navigation.value
    assert response is not None
    return response.status


async def test_two_agents_see_each_other_and_the_second_answer_is_stopped(
    env: Env, browser: Browser
) -> None:
    """Two agents on one ticket see each other within seconds, and 'typing' while the other's
    answer field holds text; the second answer is 409 with its text kept, then sent."""
    sink = env.sink
    assert sink is not None
    await agents(env)
    mail = make_mail(f"Anna Müller <{ANNA}>", "Drucker druckt nicht", "Er druckt nichts.\n")
    assert (await env.send(mail))[0] == 250
    target = REPO / "docs" if SCREENSHOTS else env.data_dir / "screenshots"
    target.mkdir(parents=True, exist_ok=True)
    max_w = await agent_login(browser, env, MAX, "en")
    mia_w = await agent_login(browser, env, MIA, "de")
    max_p, mia_p = max_w.page, mia_w.page
    await max_p.goto(PAGE)
    await mia_p.goto(PAGE)
    await expect(mia_p.locator("#presence")).to_have_text("Auch geöffnet von: Max Berger")
    await expect(max_p.locator("#presence")).to_have_text(
        "Also open by: Mia Hahn", timeout=SOON
    )  # live: Max's page showed nobody when it loaded

    await mia_p.locator("#reply-body").fill("Bitte den Treiber neu installieren.")
    await expect(max_p.locator("#presence")).to_have_text(
        "Also open by: Mia Hahn (typing)", timeout=SOON
    )
    assert await max_p.locator("#presence *").count() == 0  # plain text, no markup
    await max_p.screenshot(path=str(target / "desk-presence-en.png"))

    await max_p.locator("#reply-body").fill("Bitte den Drucker neu starten.")
    assert await send_answer(max_p) == 200
    first = await next_mail_to(sink, ANNA, after=1)  # after her confirmation
    assert "Bitte den Drucker neu starten." in body(first)

    assert await send_answer(mia_p) == 409
    main = await mia_p.inner_text("main")
    assert "Das Ticket hat sich geändert, seit Sie die Seite geladen haben." in main
    assert "Bitte den Drucker neu starten." in main.split("Seitdem geändert")[1]
    await expect(mia_p.locator("#reply-body")).to_have_value("Bitte den Treiber neu installieren.")
    await mia_p.screenshot(path=str(target / "desk-409-de.png"), full_page=True)
    assert await send_answer(mia_p) == 200  # sent again from the page that showed the change
    second = await next_mail_to(sink, ANNA, after=2)
    assert "Bitte den Treiber neu installieren." in body(second)
    for name in ("desk-presence-en.png", "desk-409-de.png"):
        assert (target / name).stat().st_size > 1000
    refused = f"status of 409 (Conflict) at http://127.0.0.1:{env.daemon.web_port}{PAGE}/reply"
    mia_w.problems = [p for p in mia_w.problems if not p.endswith(refused)]  # the browser's note
    max_w.check()
    mia_w.check()
