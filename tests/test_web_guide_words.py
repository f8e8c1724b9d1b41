"""The user guide's words on the portal's buttons and links, and notes that look unlike
answers, in Chromium (Debian's, through Playwright) against the real daemon, German and
English (issue 24): "Registrieren Sie sich jetzt" / "Register now" on the login page,
"Erstellen" / "Create" to register, "Anmelden" / "Log in", "Neues Ticket" / "New ticket";
a confirmation line after a form, without JavaScript."""

from __future__ import annotations

import re

import pytest
from conftest import Env, make_mail
from playwright.async_api import Browser, expect
from test_browser_portal import Watched, new_page
from test_browser_portal import browser as browser  # the fixture: Chromium for this module
from test_desk import MAX, MIA, agents
from web_support import ANNA, BEN, PASSWORD, give_password

pytestmark = pytest.mark.web  # the daemon serves the portal and the desk

TIMEOUT = 10_000  # ms: every wait is bounded
WORDS = {
    "de": {"register_now": "Registrieren Sie sich jetzt", "register": "Registrieren",
           "create": "Erstellen", "login": "Anmelden", "new": "Neues Ticket",
           "note": "Interne Notiz", "noted": "Die interne Notiz wurde gespeichert."},
    "en": {"register_now": "Register now", "register": "Register", "create": "Create",
           "login": "Log in", "new": "New ticket", "note": "Internal note", "answer": "Support",
           "noted": "The internal note was saved."},
}  # fmt: skip


async def open_page(browser: Browser, env: Env, lang: str, *, script: bool = True) -> Watched:
    watched = await new_page(browser, env, lang=lang)
    if not script:  # the same context, without JavaScript
        context = await browser.new_context(
            base_url=f"http://127.0.0.1:{env.daemon.web_port}", java_script_enabled=False,
            extra_http_headers={"Accept-Language": lang},
        )  # fmt: skip
        await watched.page.context.close()
        watched = Watched(await context.new_page())
    return watched


@pytest.mark.parametrize("lang", ["de", "en"])
async def test_login_register_and_new_ticket_carry_the_guides_words(
    env: Env, browser: Browser, lang: str
) -> None:
    """The login page links to registration as the guide says and logs in with its button;
    the registration page creates with its button; neither says "Registrieren" twice (the
    navigation's link is left out where the page offers it); the portal's new-ticket link
    reads as the guide says."""
    words = WORDS[lang]
    watched = await open_page(browser, env, lang)
    page = watched.page
    await page.goto("/login")
    await expect(page.get_by_role("button", name=words["login"], exact=True)).to_have_count(1)
    now = page.get_by_role("link", name=words["register_now"], exact=True)
    await expect(now).to_have_count(1)
    await expect(page.get_by_role("link", name=words["register"], exact=True)).to_have_count(0)
    await now.click(timeout=TIMEOUT)
    await page.wait_for_url("**/register", timeout=TIMEOUT)
    await expect(page.get_by_role("button", name=words["create"], exact=True)).to_have_count(1)
    said = await page.locator("body").inner_text()
    assert len(re.findall(rf"\b{words['register']}\b", said)) == 1, said  # the heading only

    user = ANNA if lang == "de" else BEN  # the portal speaks the user's language
    await give_password(env, user)
    await page.goto("/login")
    await page.get_by_label("E-Mail-Adresse" if lang == "de" else "Email address").fill(user)
    await page.locator("#password").fill(PASSWORD)
    await page.get_by_role("button", name=words["login"], exact=True).click(timeout=TIMEOUT)
    await page.wait_for_url("**/tickets", timeout=TIMEOUT)
    new = page.get_by_role("link", name=words["new"], exact=True)
    await expect(new).to_have_count(1)
    await new.click(timeout=TIMEOUT)
    await page.wait_for_url("**/tickets/new", timeout=TIMEOUT)
    watched.check()


@pytest.mark.parametrize("lang", ["de", "en"])
async def test_a_note_looks_unlike_an_answer_and_is_confirmed_without_javascript(
    env: Env, browser: Browser, lang: str
) -> None:
    """Without JavaScript, an agent's note is confirmed by a line at the top of the page
    it lands on (gone after a reload); on the desk's ticket page the note is labelled
    "Interne Notiz" / "Internal note" in a dashed frame of another colour than an answer's;
    the customer's portal never shows it."""
    words = WORDS[lang]
    await agents(env)  # Mia reads the desk in German, Max in English
    assert (await env.send(make_mail(ANNA, "Drucker", "Er druckt nicht.\n")))[0] == 250
    watched = await open_page(browser, env, lang, script=False)
    page = watched.page
    await page.goto("/login")
    await page.locator("#email").fill(MIA if lang == "de" else MAX)
    await page.locator("#password").fill(PASSWORD)
    await page.locator("form.stack button[type=submit]").click()
    await page.wait_for_url("**/desk", timeout=TIMEOUT)
    await page.goto("/desk/tickets/100001")
    await page.locator("#reply-body").fill("Bitte neu starten.")
    await page.locator("form[action='/desk/tickets/100001/reply'] button[type=submit]").click()
    await page.wait_for_url("**/desk/tickets/100001", timeout=TIMEOUT)
    await page.locator("#note-body").fill("Rückruf Lumo 42")
    await page.locator("form[action='/desk/tickets/100001/note'] button").click()
    await page.wait_for_url("**/desk/tickets/100001", timeout=TIMEOUT)
    await expect(page.locator("p.done[role=status]")).to_have_text(words["noted"], timeout=TIMEOUT)
    note = page.locator("article.article-note")
    await expect(note).to_have_count(1)
    await expect(note.locator("header strong")).to_have_text(words["note"])
    answer = page.locator("article.article-out")
    await expect(answer).to_have_count(1)
    style = "e => [getComputedStyle(e).borderTopStyle, getComputedStyle(e).backgroundColor]"
    note_look = await note.evaluate(style)
    answer_look = await answer.evaluate(style)
    assert note_look[0] == "dashed", note_look
    assert note_look[0] != answer_look[0]
    assert note_look[1] != answer_look[1]
    await page.reload()
    await expect(page.locator("p.done[role=status]")).to_have_count(0)

    await give_password(env, BEN)  # of Anna's institution: sees her ticket
    customer = await open_page(browser, env, lang)
    await customer.page.goto("/login")
    await customer.page.locator("#email").fill(BEN)
    await customer.page.locator("#password").fill(PASSWORD)
    await customer.page.locator("form.stack button[type=submit]").click()
    await customer.page.wait_for_url("**/tickets", timeout=TIMEOUT)
    await customer.page.goto("/tickets/100001")
    shown = await customer.page.locator("main").inner_text()
    assert "Bitte neu starten." in shown
    assert "Lumo 42" not in shown
    assert words["note"] not in shown
    customer.check()
