"""Accessibility in a real browser: axe-core (shipped in axe-playwright-python's wheel) runs
inside Debian's Chromium on every portal and desk page, in German and English, at 1280 px
and 360 px, against the real daemon (SPEC 8.3: every control has a label, 360 px screens)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
from axe_playwright_python.async_playwright import Axe
from conftest import Env, make_mail
from playwright.async_api import Browser, BrowserContext, Page
from test_browser_portal import browser as browser  # the fixture: Chromium for this module
from test_desk import MAX, MIA, agents
from web_support import (
    ANNA,
    BEN,
    PASSWORD,
    Client,
    give_password,
    logged_in,
    mails_to,
    next_mail_to,
    png,
)

pytestmark = pytest.mark.web  # the daemon serves portal and desk

LANGS = ("de", "en")
WIDTHS = (1280, 360)
FAY = "fay@schule.example"  # registered, not yet confirmed: the confirm page
EVE = "eve@schule.example"  # registered and confirmed: the desk's pending registration
CARL = "carl@real.example"  # of an institution whose support has ended
# Who visits, in each language: nobody, a customer, one whose registration is pending, an agent.
USERS = {
    "anon": {},
    "customer": {"de": ANNA, "en": BEN},
    "pending": {"de": EVE, "en": EVE},
    "lapsed": {"de": CARL, "en": CARL},  # their institution's support has ended: the offer
    "agent": {"de": MIA, "en": MAX},
}


@dataclass(frozen=True, slots=True)
class Visit:
    """A page to check: `who` (a key of USERS) opens `path` (its expected
    status); with `form`, that page then posts those fields (its own CSRF token unless
    given) to `action` and the page that answers is the one checked (showing `shows`). `{reset}` and
    `{confirm}` in a path are the tokens mailed to the seeded users, `{lang}` the run's."""

    who: str
    path: str
    status: int = 200
    form: Mapping[str, str] | None = None
    action: str = ""
    shows: str = ""  # a CSS selector on the page: it is the page meant


# Every portal and desk page, in ONE list: the merger adds new pages here.
PAGES: list[Visit] = [
    # the portal, nobody logged in
    Visit("anon", "/login"),
    Visit("anon", "/login", 401, {"email": "zed@schule.example", "password": "x"}, "/login"),
    Visit("anon", "/register"),
    Visit("anon", "/register", 400, {"email": "", "name": ""}, "/register"),
    Visit("anon", "/register/confirm/{confirm}"),
    Visit("anon", "/password/forgot"),
    Visit("anon", "/password/reset/{reset}"),
    Visit("anon", "/nowhere", 404),
    Visit("anon", "/register", 403, {"csrf_token": ""}, "/register"),  # a refused form
    # the portal, a customer
    Visit("customer", "/tickets"),
    Visit("customer", "/tickets?status=open&mine=1"),
    Visit("customer", "/tickets?q=Drucker"),
    Visit("customer", "/tickets?q=Qwxzv"),  # nothing found
    Visit("customer", "/tickets/100001", shows=".files img"),
    Visit("customer", "/tickets/100001/reply", 400, {"body": ""}, "/tickets/100001/reply"),
    Visit("customer", "/tickets/new"),
    Visit("customer", "/tickets/new", 400, {"subject": "", "body": ""}, "/tickets/new"),
    Visit("customer", "/account"),
    Visit("customer", "/account?saved=1"),
    Visit("customer", "/tickets/999999", 404),
    Visit("pending", "/account?lang={lang}", 403, shows="#pending"),  # registered, not yet approved
    Visit("lapsed", "/tickets?lang={lang}", shows="#offer"),
    Visit("lapsed", "/tickets/new?lang={lang}", shows="#offer"),
    # the desk, an agent
    Visit("agent", "/desk"),
    Visit("agent", "/desk?status=open&assignee=me&q=Drucker"),
    Visit("agent", "/desk?q=Qwxzv"),  # nothing found
    Visit("agent", "/desk?status=merged"),
    Visit("agent", "/desk/tickets/100001", shows=".files a"),
    Visit("agent", "/desk/tickets/100001?text=1"),  # a text module filled in
    Visit(
        "agent",
        "/desk/tickets/100001",
        409,
        {"body": "x", "seen": "1"},
        "/desk/tickets/100001/note",
    ),
    Visit("agent", "/desk/tickets/100001", 400, {"body": ""}, "/desk/tickets/100001/note"),
    Visit(
        "agent",
        "/desk/tickets/100001",
        409,
        {"body": "x"},
        "/desk/tickets/100003/note",
        "#merged-into",
    ),  # the merged ticket's page
    Visit("agent", "/desk/tickets/new"),
    Visit(
        "agent", "/desk/tickets/new", 400, {"requester": "lumo", "subject": ""}, "/desk/tickets/new"
    ),
    Visit("agent", "/desk/texts"),
    Visit("agent", "/desk/texts", 400, {"title": "", "lang": "de", "body": "x"}, "/desk/texts"),
    Visit("agent", "/desk/registrations", shows="table.tickets"),
    Visit("agent", "/desk/customers"),
    Visit("agent", "/desk/customers/10042"),
    Visit(
        "agent", "/desk/customers/10042", 400, {"support_until": "lumo"}, "/desk/customers/10042"
    ),
    Visit("agent", "/desk/settings"),
    Visit("agent", "/desk", 400, {"action": "assign", "agent": ""}, "/desk/bulk"),
    Visit(
        "agent",
        "/desk",
        409,
        {"tickets": "100001", "action": "status", "status": "open", "seen_100001": "1"},
        "/desk/bulk",
    ),
    Visit("agent", "/desk/nowhere", 404),
]

_POST = """([action, fields]) => {
  const form = document.createElement("form");
  form.method = "post";
  form.action = action;
  const token = document.querySelector("input[name=csrf_token]");
  const seen = document.querySelector("input[name=seen]");
  const all = Object.assign({csrf_token: token ? token.value : ""},
                            seen ? {seen: seen.value} : {}, fields);
  for (const [name, value] of Object.entries(all)) {
    const input = document.createElement("input");
    input.type = "hidden";
    input.name = name;
    input.value = value;
    form.appendChild(input);
  }
  document.body.appendChild(form);
  form.submit();
}"""


async def seed(env: Env) -> dict[str, str]:
    """Everything a page can show: a ticket with an image, a note, an answer, history, a
    merged ticket, a text module, a pending registration; the mailed tokens."""
    sink = env.sink
    assert sink is not None
    await agents(env)
    await env.customer("20001", "Realschule Beispielstadt", support_until=date(2020, 1, 1))
    await env.user(CARL, "20001", name="Carl Krause", lang="de")
    for email in (ANNA, BEN, CARL):
        await give_password(env, email)
    mail = make_mail(f"Anna Müller <{ANNA}>", "Drucker druckt nicht", "Nur leere Seiten.\n")
    mail.add_attachment(png(64, 48, seed=3), maintype="image", subtype="png", filename="s.png")
    for message in (mail, make_mail(BEN, "Beamer flackert"), make_mail(ANNA, "Drucker 2")):
        assert (await env.send(message))[0] == 250
        env.clock.advance(seconds=5)
    desk = await logged_in(env, MAX, lang="en")
    for path, fields in (
        ("/desk/tickets/100001/assign", {"agent": MAX}),
        ("/desk/tickets/100001/note", {"body": "Toner bestellt."}),
        ("/desk/tickets/100001/reply", {"body": "Bitte neu starten.", "status": "answered"}),
        ("/desk/tickets/100003/merge", {"into": "100001"}),
    ):
        response = await desk.post(path, fields, form_page=path.rsplit("/", 1)[0])
        assert response.status_code == 303, (path, response.text)
    for lang in LANGS:
        response = await desk.post(
            "/desk/texts", {"title": "Erledigt", "lang": lang, "body": "Erledigt."},
            form_page="/desk/texts",
        )  # fmt: skip
        assert response.status_code == 303, response.text
    tokens = {}
    for email, name in ((EVE, "Eva Beispiel"), (FAY, "Fay Beispiel")):
        anon = Client(env)
        response = await anon.post("/register", {
            "email": email, "name": name, "customer_number": "10042", "password": PASSWORD,
            "language": "de",
        }, form_page="/register")  # fmt: skip
        assert response.status_code == 200, response.text
        found = re.search(r"/register/confirm/(\S+)", (await next_mail_to(sink, email, after=0))
                          .message.get_content())  # fmt: skip
        assert found
        tokens[email] = found.group(1)
    eve = f"/register/confirm/{tokens.pop(EVE)}"
    confirmed = await Client(env).post(eve, {"password": PASSWORD}, form_page=eve)
    assert confirmed.status_code == 200, confirmed.text
    tokens["confirm"] = tokens.pop(FAY)  # her confirm page stays
    before = len(mails_to(sink, ANNA))
    anon = Client(env)
    response = await anon.post("/password/forgot", {"email": ANNA}, form_page="/password/forgot")
    assert response.status_code == 200, response.text
    found = re.search(r"/password/reset/(\S+)", (await next_mail_to(sink, ANNA, after=before))
                      .message.get_content())  # fmt: skip
    assert found
    tokens["reset"] = found.group(1)
    return tokens


async def context_for(
    browser: Browser, env: Env, who: str, lang: str, width: int
) -> BrowserContext:
    context = await browser.new_context(
        base_url=f"http://127.0.0.1:{env.daemon.web_port}",
        locale="de-DE" if lang == "de" else "en-US",
        viewport={"width": width, "height": 800},
        extra_http_headers={"Accept-Language": lang},
    )
    if USERS[who]:
        page = await context.new_page()
        await page.goto("/login")
        await page.locator("#email").fill(USERS[who][lang])
        await page.locator("#password").fill(PASSWORD)
        async with page.expect_navigation():
            await page.locator("form.stack button[type=submit]").click()
        await page.close()
    return context


async def open_visit(page: Page, visit: Visit, tokens: Mapping[str, str], lang: str) -> int:
    """The page of `visit` in `page`; its HTTP status."""
    response = await page.goto(visit.path.format(**tokens, lang=lang))
    assert response is not None
    if visit.form is None:
        return response.status
    async with page.expect_navigation() as answered:
        await page.evaluate(_POST, [visit.action, dict(visit.form)])
    response = await answered.value
    assert response is not None
    return response.status


def described(violations: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"  {v['id']} ({v['impact']}): {v['help']}\n"
        + "\n".join(f"    {', '.join(map(str, n['target']))}" for n in v["nodes"])
        for v in violations
    )


async def test_axe_finds_no_violation_on_any_page(env: Env, browser: Browser) -> None:
    """axe-core finds no violation on any portal or desk page, in German and English, at
    1280 px and 360 px (SPEC 8.3)."""
    tokens = await seed(env)
    axe = Axe()
    found: list[str] = []
    for lang in LANGS:
        for width in WIDTHS:
            contexts = {w: await context_for(browser, env, w, lang, width) for w in USERS}
            pages = {w: await c.new_page() for w, c in contexts.items()}
            for visit in PAGES:
                page = pages[visit.who]
                status = await open_visit(page, visit, tokens, lang)
                where = f"{visit.who} {visit.path} -> {visit.action or '-'} [{lang} {width}px]"
                assert status == visit.status, (where, status)
                assert await page.get_attribute("html", "lang") == lang, where
                assert not visit.shows or await page.locator(visit.shows).count(), where
                results = await axe.run(page)
                violations = results.response["violations"]
                if violations:
                    found.append(f"{where}:\n{described(violations)}")
            for context in contexts.values():
                await context.close()
    assert found == [], "axe-core violations:\n" + "\n".join(found)
