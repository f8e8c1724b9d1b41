"""The desk's text modules in a real browser (SPEC 9.1): Debian's Chromium driven by
Playwright against the real daemon. With JavaScript a chosen module goes into the answer
without leaving the page and keeps what was typed; without it, the form's GET fills it in.
A JavaScript error in the console (a refused script, CSP) or a dialog fails the test."""

from __future__ import annotations

import re

import pytest
from conftest import Env, make_mail
from playwright.async_api import Browser, expect
from test_browser_desk import agent_login
from test_browser_portal import browser as browser  # the fixture: Chromium for this module
from test_desk import MAX, agents
from web_support import ANNA, PASSWORD

pytestmark = pytest.mark.web  # the daemon serves the desk

MODULE = (
    "Hallo {{ requester.name }},\ndas Ticket {{ ticket.number }} ist erledigt.\n{{ agent.name }}"
)
FILLED = "Hallo Anna Müller,\ndas Ticket 100001 ist erledigt.\nMax Berger"


async def _setup(env: Env) -> None:
    await agents(env)
    mail = make_mail(f"Anna Müller <{ANNA}>", "Drucker druckt nicht")
    assert (await env.send(mail))[0] == 250


async def test_a_module_goes_into_the_answer_at_the_cursor_with_javascript(
    env: Env, browser: Browser
) -> None:
    """With JavaScript, choosing a module adds it, filled in, to what the answer field
    holds, without leaving the page; the page's own script runs under the CSP."""
    await _setup(env)
    watched = await agent_login(browser, env, MAX, "en")
    page = watched.page
    await page.goto("/desk/texts")
    await page.locator("#new-title").fill("Erledigt")
    await page.locator("#new-lang").select_option("de")
    await page.locator("#new-body").fill(MODULE)
    async with page.expect_navigation():
        await page.locator("form[action='/desk/texts'] button[type=submit]").click()
    assert "The text module was added." in await page.inner_text("main")
    await page.goto("/desk/tickets/100001")
    await page.locator("#reply-body").fill("Vorweg: danke.")
    await page.locator("form.texts button[type=submit]").click()
    # expect() polls from Playwright's own script: a string predicate (wait_for_function)
    # needs eval in the page, which the page's CSP forbids once it has to poll.
    await expect(page.locator("#reply-body")).to_have_value(re.compile("Max Berger"))
    assert await page.locator("#reply-body").input_value() == "Vorweg: danke.\n" + FILLED
    assert page.url.endswith("/desk/tickets/100001")  # the page was never left
    watched.check()


async def test_without_javascript_the_forms_get_fills_the_answer(
    env: Env, browser: Browser
) -> None:
    """Without JavaScript the module form's GET shows the ticket with the module filled in."""
    await _setup(env)
    context = await browser.new_context(
        base_url=f"http://127.0.0.1:{env.daemon.web_port}", java_script_enabled=False
    )
    page = await context.new_page()
    await page.goto("/login")
    await page.locator("#email").fill(MAX)
    await page.locator("#password").fill(PASSWORD)
    async with page.expect_navigation():
        await page.locator("form.stack button[type=submit]").click()
    await page.goto("/desk/texts")
    await page.locator("#new-title").fill("Erledigt")
    await page.locator("#new-lang").select_option("de")
    await page.locator("#new-body").fill(MODULE)
    async with page.expect_navigation():
        await page.locator("form[action='/desk/texts'] button[type=submit]").click()
    await page.goto("/desk/tickets/100001")
    async with page.expect_navigation():
        await page.locator("form.texts button[type=submit]").click()
    assert "text=" in page.url
    assert await page.locator("#reply-body").input_value() == FILLED
    await context.close()
