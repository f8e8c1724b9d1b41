"""Tickets taken by phone and users' phone numbers over real HTTP and SMTP against the real
daemon (SPEC 9.1): the desk's new ticket for a registered user or a caller not yet
registered, its confirmation, the institution seeing it, the requester's phone and the
channel on the desk's page; phone numbers at registration, on /account; bad input refused
with what was typed; customers kept out."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from conftest import Env, make_mail
from desk_support import cli_stdin, settle
from web_support import (
    ANNA,
    BEN,
    PASSWORD,
    Client,
    link_in,
    logged_in,
    mails_to,
    next_mail_to,
    png,
    text_of,
)

pytestmark = pytest.mark.web  # the daemon serves the portal and the desk

MAX = "max@stueber.de"  # English desk
MIA = "mia@stueber.de"  # German desk
NORA = "nora@schule.example"
ANNAS_PHONE = "+49 (0)30 / 123 45-6"


async def phone_env(env_factory: Any, sink: Any) -> Env:
    """Institution 10042 with Anna (a phone number) and Ben, institution 30001 whose
    contract lapsed, and two agents with passwords."""
    env: Env = await env_factory(sink)
    await env.customer("10042", "Gymnasium Musterstadt")
    past = env.clock().date() - timedelta(days=10)
    await env.customer("30001", "Grundschule Ohnevertrag", support_until=past)
    result = await env.cli("user", "add", ANNA, "--customer", "10042", "--name", "Anna Müller",
                           "--lang", "de", "--phone", ANNAS_PHONE)  # fmt: skip
    assert result.returncode == 0, result.stderr
    await env.user(BEN, "10042", name="Ben Meyer", lang="en")
    for email, name, lang in ((MAX, "Max Berger", "en"), (MIA, "Mia Hahn", "de")):
        result = await env.cli("agent", "add", email, "--name", name, "--lang", lang)
        assert result.returncode == 0, result.stderr
        result = await cli_stdin(env, PASSWORD + "\n", "agent", "passwd", email)
        assert result.returncode == 0, result.stderr
    return env


async def agent_client(env: Env, email: str = MAX, lang: str = "en") -> Client:
    client = Client(env, lang=lang)
    response = await client.login(email)
    assert response.status_code == 303, response.text
    await client.get("/desk")
    return client


def call(requester: str = ANNA, **fields: str | None) -> dict[str, str]:
    """The new-ticket form as an agent fills it in; a field given as None is left out."""
    form: dict[str, str | None] = {"requester": requester, "subject": "Drucker im Lehrerzimmer",
            "body": "Frau Müller ruft an: der Drucker druckt nur leere Seiten.",
            "channel": "phone", "confirm": "on"}  # fmt: skip
    form.update(fields)
    return {k: v for k, v in form.items() if v is not None}


async def take(client: Client, form: dict[str, str], **kwargs: Any) -> Any:
    return await client.post("/desk/tickets/new", form, form_page="/desk/tickets/new", **kwargs)


async def tickets(env: Env) -> list[Any]:
    listed: list[Any] = await env.cli_json("ticket", "list")
    return listed


async def test_a_phone_ticket_for_a_user_is_numbered_confirmed_and_the_institutions(
    env_factory: Any, sink: Any
) -> None:
    """A ticket the desk takes for a registered user gets the next number, the user gets
    ticket_created (an answer to it lands on the ticket), the institution's other users see
    it in the portal with its channel, the other agents are told (not the one who took it),
    and the desk shows the requester's name, phone (a tel: link) and the channel."""
    env = await phone_env(env_factory, sink)
    code, _ = await env.send(make_mail(BEN, "Beamer flackert"))
    assert code == 250
    await settle(env, 3)  # Ben's confirmation, both agents told
    desk = await agent_client(env)
    menu = await desk.get("/desk")
    assert '<a href="/desk/tickets/new">New ticket</a>' in menu.text
    shot = png(seed=3)
    answered = await take(desk, call(), files=[("attachments", ("foto.png", shot, "image/png"))])
    assert answered.status_code == 303, answered.text
    assert answered.headers["location"] == "/desk/tickets/100002"

    confirmation = await next_mail_to(sink, ANNA, after=0)
    assert "[Ticket#100002]" in str(confirmation.message["Subject"])
    assert confirmation.message["Auto-Submitted"] == "auto-replied"
    assert link_in(confirmation) == "/tickets/100002"
    await settle(env, 5)  # and Anna's confirmation, and the other agent told of the call
    assert (len(mails_to(sink, MAX)), len(mails_to(sink, MIA))) == (1, 2)
    message = confirmation.message
    answer = make_mail(ANNA, "Re: " + str(message["Subject"]), "Jetzt geht es.\n",
                       headers={"In-Reply-To": str(message["Message-ID"])})  # fmt: skip
    assert await env.send(answer) == (250, "2.0.0 Ok: ticket 100002")

    shown = await env.cli_json("ticket", "show", "100002")
    assert shown["requester"] == ANNA
    first = shown["articles"][0]
    assert (first["direction"], first["from"]) == ("in", MAX)  # the agent, for Anna
    assert [f["filename"] for f in first["attachments"]] == ["foto.png"]

    ben = await logged_in(env, BEN, lang="en")
    assert "100002" in (await ben.get("/tickets")).text
    portal = await ben.get("/tickets/100002")
    assert portal.status_code == 200
    assert "der Drucker druckt nur leere Seiten" in portal.text
    assert 'Channel: <span id="ticket-channel">phone</span>' in portal.text

    page = await desk.get("/desk/tickets/100002")
    assert "Anna Müller" in page.text
    assert f'<a href="tel:+4930123456" id="requester-phone">{ANNAS_PHONE}</a>' in page.text
    assert 'Channel: <span id="ticket-channel">phone</span>' in page.text
    assert "taken for anna@schule.example" in page.text
    mailed = await desk.get("/desk/tickets/100001")
    assert '<span id="ticket-channel">email</span>' in mailed.text
    institution = await desk.get("/desk/customers/10042")
    assert f'<a href="tel:+4930123456">{ANNAS_PHONE}</a>' in institution.text


async def test_without_confirm_the_customer_gets_no_mail(env_factory: Any, sink: Any) -> None:
    """`confirm` unchecked: the ticket is opened and the customer is sent nothing."""
    env = await phone_env(env_factory, sink)
    desk = await agent_client(env)
    answered = await take(desk, call(confirm=None, channel="other"))
    assert answered.status_code == 303
    await settle(env, 1)  # Mia's notification, nothing else
    assert mails_to(sink, ANNA) == []
    assert [t["number"] for t in await tickets(env)] == ["100001"]
    page = await desk.get("/desk/tickets/100001")
    assert '<span id="ticket-channel">other</span>' in page.text


async def test_a_caller_not_yet_registered_becomes_an_active_user_without_a_password(
    env_factory: Any, sink: Any
) -> None:
    """For a caller not yet registered the desk makes a user of the chosen institution,
    active, without a password (login refused), with the phone given; /password/forgot gives
    them one, and they then see the ticket in the portal."""
    env = await phone_env(env_factory, sink)
    desk = await agent_client(env)
    form = call(NORA, customer="10042", name="Nora Neumann", phone="0176 / 555 12 34",
                confirm=None)  # fmt: skip
    answered = await take(desk, form)
    assert answered.status_code == 303, answered.text
    users = {u["email"]: u for u in await env.cli_json("user", "list")}
    assert users[NORA] == {"email": NORA, "name": "Nora Neumann", "lang": None,
                           "customer": "10042", "phone": "0176 / 555 12 34"}  # fmt: skip
    page = await desk.get("/desk/tickets/100001")
    assert '<a href="tel:01765551234" id="requester-phone">' in page.text

    nora = Client(env)
    refused = await nora.login(NORA)
    assert refused.status_code == 401  # no password yet
    await nora.post("/password/forgot", {"email": NORA}, form_page="/password/forgot")
    link = link_in(await next_mail_to(sink, NORA, after=0))
    await nora.get(link)
    done = await nora.post(link, {"password": PASSWORD})
    assert done.status_code == 200, done.text
    assert (await nora.login(NORA)).status_code == 303
    assert "Drucker im Lehrerzimmer" in (await nora.get("/tickets")).text


async def test_bad_input_comes_back_with_the_typed_text_and_one_line(
    env_factory: Any, sink: Any
) -> None:
    """An unknown requester without customer and name, an unknown customer number, an empty
    subject or body, a bad phone number: 400, the form with what was typed and a line saying
    why (in the agent's language); nothing is created."""
    env = await phone_env(env_factory, sink)
    english = await agent_client(env)
    german = await agent_client(env, MIA, "de")
    cases = [
        (english, call(NORA), "Nobody is registered at this address."),
        (german, call(NORA), "Unter dieser Adresse ist niemand registriert."),
        (english, call(NORA, customer="77777", name="Nora"), "There is no such customer number."),
        (german, call(NORA, customer="77777", name="Nora"), "Diese Kundennummer gibt es nicht."),
        (english, call(subject=""), "Subject and request must not be empty."),
        (german, call(body="  "), "Betreff und Anliegen dürfen nicht leer sein."),
        (english, call(NORA, customer="10042", name="Nora", phone="call me maybe"),
         "That is not a phone number"),
        (german, call(phone="0" * 31), "Das ist keine Telefonnummer"),
        (english, call(requester="nobody"), "Please give the customer's email address."),
        (english, call(MIA, customer="10042", name="Mia"), "That is an agent's address"),
        (german, call(ANNA, customer="30001"), "Diese Adresse gehört zu einer anderen Einrichtung"),
    ]  # fmt: skip
    for client, form, line in cases:
        answered = await take(client, form)
        assert answered.status_code == 400, (form, answered.status_code)
        text = text_of(answered)
        assert line in text, (form, text)
        assert form["subject"] in answered.text
        assert form["requester"] in answered.text
        if form["body"].strip():
            assert form["body"] in answered.text
    assert await tickets(env) == []
    assert NORA not in {u["email"] for u in await env.cli_json("user", "list")}
    assert (await env.cli_json("user", "list", "--customer", "10042"))[0]["phone"] == ANNAS_PHONE


async def test_an_expired_token_keeps_the_typed_text(env_factory: Any, sink: Any) -> None:
    """The form posted with a stale CSRF token: 403, nothing opened, the form again with
    what was typed (SPEC 8.4)."""
    env = await phone_env(env_factory, sink)
    desk = await agent_client(env)
    answered = await desk.post("/desk/tickets/new", call(subject="Kein Ton im Saal"), csrf="0")
    assert answered.status_code == 403
    assert 'value="Kein Ton im Saal"' in answered.text
    assert 'name="requester"' in answered.text
    assert await tickets(env) == []


async def test_customers_get_404_and_the_lapsed_contract_does_not_stop_an_agent(
    env_factory: Any, sink: Any
) -> None:
    """A customer gets 404 on GET and POST /desk/tickets/new (nothing opened); an agent may
    take a call from an institution whose contract lapsed (its own writes stay 403)."""
    env = await phone_env(env_factory, sink)
    anna = await logged_in(env, ANNA)
    assert (await anna.get("/desk/tickets/new")).status_code == 404
    assert (await anna.post("/desk/tickets/new", call(BEN))).status_code == 404
    assert await tickets(env) == []

    desk = await agent_client(env)
    form = call("olga@grundschule.example", customer="30001", name="Olga Ohne")
    answered = await take(desk, form)
    assert answered.status_code == 303, answered.text
    olga = await logged_in(env, "olga@grundschule.example")
    own = await olga.post("/tickets/new", {"subject": "Noch eine Frage", "body": "Bitte"},
                          form_page="/tickets/new")  # fmt: skip
    assert own.status_code == 403
    assert [t["number"] for t in await tickets(env)] == ["100001"]


async def test_phone_at_registration_and_on_the_account_page(env_factory: Any, sink: Any) -> None:
    """A phone number given at registration is the confirmed account's; /account changes it;
    a bad one is refused with a clear line and what was typed (registration: no mail)."""
    env = await phone_env(env_factory, sink)
    result = await env.cli("customer", "add", "10042", "Gymnasium Musterstadt",
                           "--support-until", str(env.clock().date() + timedelta(days=30)),
                           "--domains", "schule.example")  # fmt: skip
    assert result.returncode == 0, result.stderr
    visitor = Client(env, lang="en")
    form = {"email": NORA, "name": "Nora Neumann", "customer_number": "10042",
            "password": PASSWORD, "language": "de", "phone": "12 ab 34"}  # fmt: skip
    refused = await visitor.post("/register", form, form_page="/register")
    assert refused.status_code == 400
    assert "That is not a phone number" in text_of(refused)
    assert 'value="12 ab 34"' in refused.text
    assert 'value="Nora Neumann"' in refused.text
    form["phone"] = "+43 1 234 56 78"
    assert (await visitor.post("/register", form, form_page="/register")).status_code == 200
    link = link_in(await next_mail_to(sink, NORA, after=0))
    await visitor.get(link)
    confirmed = await visitor.post(link, {"password": PASSWORD})
    assert confirmed.status_code == 200, confirmed.text
    users = {u["email"]: u for u in await env.cli_json("user", "list")}
    assert users[NORA]["phone"] == "+43 1 234 56 78"

    anna = await logged_in(env, ANNA)
    bad = await anna.post("/account", {"name": "Anna M.", "language": "de", "phone": "0800-TICKET"},
                          form_page="/account")  # fmt: skip
    assert bad.status_code == 400
    assert "Das ist keine Telefonnummer" in text_of(bad)
    assert 'value="0800-TICKET"' in bad.text
    assert 'value="Anna M."' in bad.text
    users = {u["email"]: u for u in await env.cli_json("user", "list")}
    assert (users[ANNA]["name"], users[ANNA]["phone"]) == ("Anna Müller", ANNAS_PHONE)
    saved = await anna.post("/account", {"name": "Anna M.", "language": "de",
                                         "phone": "030 987 65"})  # fmt: skip
    assert saved.status_code == 303
    users = {u["email"]: u for u in await env.cli_json("user", "list")}
    assert (users[ANNA]["name"], users[ANNA]["phone"]) == ("Anna M.", "030 987 65")
    assert 'value="030 987 65"' in (await anna.get("/account")).text
