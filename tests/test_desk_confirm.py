"""Every action says it was done (issue 24, behaviours 1 and 6), against the real daemon:
one line at the top of the page a desk or portal action lands on, in the page's language,
gone on the next page; a line only from a cookie signed for that very browser. A confirmed
registration awaiting approval mails the agents once (an unconfirmed one nobody), with
nothing the visitor typed but the address; the desk's navigation counts them."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from conftest import Env, make_mail
from desk_support import body, settle
from test_desk import MAX, MIA, agent_client, first_ticket, web_env
from web_support import ANNA, PASSWORD, Client, link_in, logged_in, mails_to, next_mail_to

from ticketmail.config import default_templates_dir
from ticketmail.outbound.compose import AGENT_TEMPLATE_NAMES, Templates, sample_context
from ticketmail.web.flash import FLASH_COOKIE

pytestmark = pytest.mark.web  # the daemon serves the portal and the desk

_LINE = re.compile(r'<p class="notice done" role="status">([^<]*)</p>')
EVE = "eve@gmail.example"  # no domain of institution 10042: her account awaits approval
OLA = "ola@mail.example"
TYPED_NAME = "Mallory Visit http://evil.example/now"


def line_of(response: httpx.Response) -> str | None:
    """The confirmation line at the top of the page, if any."""
    found = _LINE.findall(response.text)
    assert len(found) <= 1, found
    return found[0] if found else None


async def lands_with(client: Client, response: httpx.Response, line: str) -> None:
    """`response` is a 303 whose page shows `line` at the top; the next page no longer does."""
    assert response.status_code == 303, response.text[:2000]
    landed = await client.get(response.headers["location"])
    assert landed.status_code == 200
    assert line_of(landed) == line
    assert _LINE.search(landed.text).start() < landed.text.index("<h1")  # type: ignore[union-attr]
    again = await client.get(response.headers["location"])
    assert line_of(again) is None


async def test_every_desk_action_confirms_with_a_line_gone_on_the_next_page(
    env_factory: Any, sink: Any
) -> None:
    """After an answer, a note, a status change, a waiting time, an assignment, a merge, a
    phone ticket, an institution saved and settings saved, the page the agent lands on
    says so in one line in the agent's language, and the next page does not; a refused
    form says why in one line of its own."""
    env = await web_env(env_factory, sink)
    await first_ticket(env)
    mail = make_mail(ANNA, "Beamer flackert", message_id="<t2@x>")
    assert await env.send(mail) == (250, "2.0.0 Ok: ticket 100002")
    ticket = "/desk/tickets/100001"
    max_c = await agent_client(env)  # English
    steps = [
        (f"{ticket}/reply", {"body": "Bitte neu starten.", "status": "answered"},
         "The answer was sent."),
        (f"{ticket}/note", {"body": "Rückruf morgen."}, "The internal note was saved."),
        (f"{ticket}/status", {"status": "closed", "note": ""}, "The status was saved."),
        (f"{ticket}/status", {"status": "waiting", "until": "2030-01-01T10:00"},
         "The waiting time was saved."),
        (f"{ticket}/assign", {"agent": MIA}, "The owner was saved."),
        ("/desk/tickets/100002/merge", {"into": "100001"},
         "The tickets were merged; this is the one they were merged into."),
        ("/desk/customers/10042", {"support_until": "2030-12-31", "trial_until": "",
                                   "domains": "schule.example"}, "The institution was saved."),
        ("/desk/settings", {"language": "en", "notify": "1"}, "Your settings were saved."),
    ]  # fmt: skip
    for path, form, line in steps:
        origin = path.rsplit("/", 1)[0] if path.startswith("/desk/tickets/") else path
        await lands_with(max_c, await max_c.post(path, form, form_page=origin), line)
    taken = await max_c.post(
        "/desk/tickets/new",
        {"requester": ANNA, "subject": "Anruf", "body": "Drucker.", "channel": "phone"},
        form_page="/desk/tickets/new",
    )
    await lands_with(max_c, taken, "The ticket was opened.")
    added = await max_c.post(
        "/desk/texts", {"title": "Gruß", "lang": "de", "body": "Hallo."}, form_page="/desk/texts"
    )  # the text modules' own line still shows
    assert "The text module was added." in (await max_c.get(added.headers["location"])).text

    mia = Client(env, lang="en")  # German settings: the line is German
    assert (await mia.login(MIA)).status_code == 303
    noted = await mia.post(f"{ticket}/note", {"body": "Erledigt."}, form_page=ticket)
    await lands_with(mia, noted, "Die interne Notiz wurde gespeichert.")
    refused = await mia.post(f"{ticket}/note", {"body": ""}, form_page=ticket)
    assert refused.status_code == 400
    assert line_of(refused) is None
    assert len(re.findall(r'<p class="error" role="alert">', refused.text)) == 1


async def test_a_confirmation_line_shows_only_in_the_browser_it_was_signed_for(
    env_factory: Any, sink: Any
) -> None:
    """The line comes only from a cookie signed for this browser's session: another
    agent's cookie, or one made up, shows nothing (so no link or planted cookie can make a
    page say an answer was sent), and a page's query never puts words on it."""
    env = await web_env(env_factory, sink)
    await first_ticket(env)
    ticket = "/desk/tickets/100001"
    max_c = await agent_client(env)
    noted = await max_c.post(f"{ticket}/note", {"body": "Rückruf."}, form_page=ticket)
    stolen = noted.cookies.get(FLASH_COOKIE)
    assert stolen is not None
    assert stolen.startswith("note.")
    mia = await agent_client(env, MIA)
    for value in (stolen, "note.", "reply." + stolen.partition(".")[2], "<b>x</b>.0"):
        mia.http.cookies.set(FLASH_COOKIE, value, domain="127.0.0.1")
        page = await mia.get(f"{ticket}?done=reply")
        assert line_of(page) is None, value
        assert "<b>x</b>" not in page.text
    assert line_of(await max_c.get(noted.headers["location"])) == "The internal note was saved."


async def test_every_portal_action_confirms_with_a_line_gone_on_the_next_page(env: Env) -> None:
    """A new ticket, an answer, closing, reopening and saving the account each land on a
    page that says so in one line in the user's language; the next page does not."""
    anna = await logged_in(env, ANNA)  # German
    created = await anna.post(
        "/tickets/new", {"subject": "Drucker", "body": "Er druckt nicht."}, form_page="/tickets/new"
    )
    await lands_with(anna, created, "Ihr Ticket wurde eröffnet.")
    ticket = created.headers["location"]
    steps = [
        (f"{ticket}/reply", {"body": "Noch eine Frage."}, "Ihre Antwort wurde gesendet."),
        (f"{ticket}/close", {}, "Das Ticket wurde geschlossen."),
        (f"{ticket}/reopen", {}, "Das Ticket wurde wieder geöffnet."),
    ]
    for path, form, line in steps:
        await lands_with(anna, await anna.post(path, form, form_page=ticket), line)
    saved = await anna.post(
        "/account", {"name": "Anna Müller", "language": "en", "phone": ""}, form_page="/account"
    )
    await lands_with(anna, saved, "Your details were saved.")  # her new language


async def register(visitor: Client, email: str) -> None:
    typed = {"email": email, "name": TYPED_NAME, "customer_number": "10042",
             "password": PASSWORD, "language": "en", "phone": "+49 30 1234"}  # fmt: skip
    response = await visitor.post("/register", typed, form_page="/register")
    assert response.status_code == 200, response.text


async def confirm(env: Env, visitor: Client, email: str, *, after: int = 0) -> str:
    assert env.sink is not None
    link = link_in(await next_mail_to(env.sink, email, after=after))
    await visitor.get(link)
    response = await visitor.post(link, {"password": PASSWORD})
    assert response.status_code == 200, response.text
    return link


async def test_a_confirmed_registration_tells_the_agents_once_an_unconfirmed_one_nobody(
    env_factory: Any, sink: Any
) -> None:
    """A registration tells no agent until it is confirmed; confirmed and awaiting approval,
    it mails every agent with notifications on once, each in their language, naming the
    address and the institution as stored and nothing else the visitor typed; the desk's
    navigation counts what awaits approval, and approving and rejecting say so."""
    env = await web_env(env_factory, sink)  # Max (English), Mia (German)
    eve = Client(env, source="127.0.0.2")
    await register(eve, EVE)
    await settle(env, 1)  # her confirmation link only: no agent is told
    assert mails_to(sink, MAX) == mails_to(sink, MIA) == []
    max_c = await agent_client(env)
    assert '<a href="/desk/registrations">Registrations</a>' in (await max_c.get("/desk")).text

    link = await confirm(env, eve, EVE)
    await settle(env, 3)  # and one mail to each agent
    for agent, subject, words in (
        (MAX, "Registration awaiting approval", "has confirmed a registration"),
        (MIA, "Registrierung wartet auf Freigabe", "hat die Registrierung"),
    ):
        (mail,) = mails_to(sink, agent)
        assert str(mail.message["Subject"]) == f"{subject}: Gymnasium Musterstadt (10042)"
        text = body(mail)
        assert words in text
        assert EVE in text
        assert "/desk/registrations" in text
        raw = mail.raw.decode("utf-8", "replace")
        for typed in ("Mallory", "evil.example", "1234"):
            assert typed not in raw, typed
    assert (await eve.post(link, {"password": PASSWORD})).status_code == 404  # used
    await settle(env, 3)  # once only

    queue = await max_c.get("/desk")
    assert '<a href="/desk/registrations">Registrations (1)</a>' in queue.text
    mia = await agent_client(env, MIA)
    assert '<a href="/desk/registrations">Registrierungen (1)</a>' in (await mia.get("/desk")).text
    off = await mia.post("/desk/settings", {"language": "de"}, form_page="/desk/settings")
    assert off.status_code == 303  # Mia switches notifications off

    ola = Client(env, source="127.0.0.3")
    await register(ola, OLA)
    await confirm(env, ola, OLA)
    await settle(env, 5)  # Ola's link, then Max only
    assert (len(mails_to(sink, MAX)), len(mails_to(sink, MIA))) == (2, 1)
    page = await max_c.get("/desk/registrations")
    assert '<a href="/desk/registrations">Registrations (2)</a>' in page.text
    first, second = re.findall(r'action="(/desk/registrations/\d+/approve)"', page.text)
    approved = await max_c.post(first, {}, form_page="/desk/registrations")
    await lands_with(max_c, approved, "The registration was approved.")
    rejected = await max_c.post(second.replace("approve", "reject"), {},
                                form_page="/desk/registrations")  # fmt: skip
    await lands_with(max_c, rejected, "The registration was rejected.")
    assert '<a href="/desk/registrations">Registrations</a>' in (await max_c.get("/desk")).text


@pytest.mark.parametrize("lang", ["de", "en"])
def test_the_registration_mail_renders_and_names_only_what_it_is_given(lang: str) -> None:
    """The agents' registration mail is one of the checked agent templates and renders in
    de and en with a one-line subject naming the institution, the address and the desk's
    registrations page."""
    assert "agent_registration" in AGENT_TEMPLATE_NAMES
    context = sample_context(text=EVE, link="http://127.0.0.1:8080/desk/registrations")
    subject, text = Templates(default_templates_dir()).render(
        "agent_registration", lang=lang, context=context
    )
    assert "\n" not in subject
    assert "Gymnasium Musterstadt (10042)" in subject
    assert EVE in text
    assert "http://127.0.0.1:8080/desk/registrations" in text
