"""More of the desk's rules over real HTTP and SMTP against the real daemon (SPEC 9): who is
notified (an agent's own switch, desk.notify_to, never for automatic mail or bounces, a
customer's answer in the portal), the raw message for agents only, internal notes never
reaching a customer, and every /desk path 404 for a logged-in customer."""

from __future__ import annotations

import email.policy
import re

import pytest
from conftest import Env, Sink, make_mail
from desk_support import attachments, body, settle
from test_desk import MAX, MIA, TAG, agent_client, agents, first_ticket
from test_loops import dsn
from web_support import ANNA, logged_in, text_of

pytestmark = pytest.mark.web  # the daemon serves the portal and the desk


async def desk_env(env_factory, sink: Sink, **sections: dict[str, object]) -> Env:  # type: ignore[no-untyped-def]
    env: Env = await env_factory(sink, **sections)
    await env.customer("10042", "Gymnasium Musterstadt")
    await env.user(ANNA, "10042", name="Anna Müller", lang="de")
    await agents(env)
    return env


def recipients(sink: Sink, since: int) -> list[str]:
    return sorted(r for mail in sink.received[since:] for r in mail.rcpt_tos)


async def test_an_agent_who_switched_notifications_off_gets_none(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """An agent who unticks notifications under /desk/settings hears of no new ticket; the
    other agent still does."""
    env = await desk_env(env_factory, sink)
    client = await agent_client(env, MAX)
    page = await client.get("/desk/settings")
    assert 'name="notify" type="checkbox" value="1" checked' in page.text
    saved = await client.post("/desk/settings", {"language": "en"}, form_page="/desk/settings")
    assert saved.status_code == 303
    assert (
        " checked" not in (await client.get("/desk/settings")).text.split('name="notify"')[1][:40]
    )
    await first_ticket(env)
    await settle(env, 2)
    assert recipients(sink, 0) == sorted([ANNA, MIA])


async def test_notify_to_replaces_every_agent(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """With desk.notify_to = [Mia], a ticket without owner notifies Mia only, not Max."""
    env = await desk_env(env_factory, sink, desk={"notify_to": [MIA]})
    await first_ticket(env)
    await settle(env, 2)
    assert recipients(sink, 0) == sorted([ANNA, MIA])
    follow = make_mail(ANNA, f"Re: {TAG} Drucker druckt nicht", "Immer noch kaputt.\n")
    assert (await env.send(follow))[0] == 250
    await settle(env, 3)
    assert recipients(sink, 2) == [MIA]


async def test_out_of_office_and_bounce_notify_no_agent(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """An out-of-office on a ticket and a bounce of its confirmation notify no agent."""
    env = await desk_env(env_factory, sink)
    await first_ticket(env)
    received = await settle(env, 3)  # Anna's confirmation, Max's and Mia's notifications
    confirmation = next(r for r in received if r.rcpt_tos == [ANNA])
    away = make_mail(
        ANNA, f"Automatische Antwort: {TAG} Drucker druckt nicht",
        "Ich bin bis Montag nicht im Haus.\n",
        headers={"Auto-Submitted": "auto-replied", "In-Reply-To": "<t1@x>"},
    )  # fmt: skip
    assert (await env.send(away))[0] == 250
    bounce = dsn(str(confirmation.message["Message-ID"]))
    assert await env.send(bounce, mail_from="") == (250, "2.0.0 Ok")
    await settle(env, 3)  # nothing more went out
    shown = await env.cli_json("ticket", "show", "100001")
    assert any("nicht im Haus" in a["body_text"] for a in shown["articles"])  # it was kept
    kinds = [e["kind"] for e in await env.cli_json("outbox", "list")]
    assert kinds.count("agent_follow_up") == 0


async def test_a_follow_up_in_the_portal_notifies_the_owner(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """A customer's answer written in the portal notifies the ticket's owner only (and
    every agent while it has none)."""
    env = await desk_env(env_factory, sink)
    await first_ticket(env)
    await settle(env, 3)
    anna = await logged_in(env, ANNA)
    sent = await anna.post("/tickets/100001/reply", {"body": "Im Portal: noch kaputt."},
                           form_page="/tickets/100001")  # fmt: skip
    assert sent.status_code == 303, sent.text
    received = await settle(env, 5)
    assert recipients(sink, 3) == sorted([MAX, MIA])
    assert all("Im Portal: noch kaputt." in body(r) for r in received[3:])
    client = await agent_client(env, MIA)
    await client.post("/desk/tickets/100001/assign", {"agent": MIA},
                      form_page="/desk/tickets/100001")  # fmt: skip
    again = await anna.post("/tickets/100001/reply", {"body": "Und jetzt?"},
                            form_page="/tickets/100001")  # fmt: skip
    assert again.status_code == 303
    await settle(env, 6)
    assert recipients(sink, 5) == [MIA]


async def test_raw_message_for_agents_and_404_for_customers(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """/desk/tickets/N/raw/{article} gives an agent the message as received; a customer
    gets 404, and so does an article of another ticket."""
    env = await desk_env(env_factory, sink)
    mail = make_mail(f"Anna Müller <{ANNA}>", "Drucker druckt nicht", "Roh und echt.\n",
                     message_id="<t1@x>")  # fmt: skip
    assert (await env.send(mail))[0] == 250
    other = make_mail(ANNA, "Beamer", "Zweites Ticket.\n")
    assert (await env.send(other))[0] == 250
    shown = await env.cli_json("ticket", "show", "100001")
    article = shown["articles"][0]["id"]
    second = (await env.cli_json("ticket", "show", "100002"))["articles"][0]["id"]
    client = await agent_client(env)
    raw = await client.get(f"/desk/tickets/100001/raw/{article}")
    assert raw.status_code == 200
    assert raw.headers["content-type"].startswith("message/rfc822")
    assert raw.content == mail.as_bytes(policy=email.policy.SMTP)
    assert (await client.get(f"/desk/tickets/100001/raw/{second}")).status_code == 404
    anna = await logged_in(env, ANNA)
    refused = await anna.get(f"/desk/tickets/100001/raw/{article}")
    assert refused.status_code == 404
    assert b"Roh und echt" not in refused.content


async def test_an_internal_note_reaches_no_customer_anywhere(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """A note is in no mail, no portal page or search, and no file a customer downloads,
    even after an answer with a file and a status change that follow it."""
    env = await desk_env(env_factory, sink)
    await first_ticket(env)
    await settle(env, 3)
    client = await agent_client(env)
    secret = "Geheimnotiz Kundendrama"
    noted = await client.post("/desk/tickets/100001/note", {"body": secret},
                              form_page="/desk/tickets/100001")  # fmt: skip
    assert noted.status_code == 303
    answered = await client.post(
        "/desk/tickets/100001/reply", {"body": "Bitte neu starten.", "status": "answered"},
        files=[("attachments", ("anleitung.txt", b"Schritt 1", "text/plain"))],
        form_page="/desk/tickets/100001",
    )  # fmt: skip
    assert answered.status_code == 303
    await client.post("/desk/tickets/100001/status", {"status": "closed", "note": "Erledigt."},
                      form_page="/desk/tickets/100001")  # fmt: skip
    received = await settle(env, 5)
    assert secret in text_of(await client.get("/desk/tickets/100001"))
    for mail in received:
        assert secret.encode() not in mail.raw
        assert all(secret.encode() not in data for _, _, data in attachments(mail))
    anna = await logged_in(env, ANNA)
    page = await anna.get("/tickets/100001")
    assert page.status_code == 200
    assert "Bitte neu starten." in page.text
    assert "Geheimnotiz" not in page.text
    links = sorted(set(re.findall(r'href="(/tickets/100001/files/\d+)"', page.text)))
    assert links, page.text
    for link in links:
        download = await anna.get(link)
        assert download.status_code == 200
        assert b"Geheimnotiz" not in download.content
    assert "Geheimnotiz" not in (await anna.get("/tickets")).text
    assert 'href="/tickets/100001"' not in (await anna.get("/tickets?q=Kundendrama")).text


DESK_PATHS = [
    ("GET", "/desk"),
    ("GET", "/desk?q=Drucker"),
    ("GET", "/desk/tickets/100001"),
    ("POST", "/desk/tickets/100001/reply"),
    ("POST", "/desk/tickets/100001/note"),
    ("POST", "/desk/tickets/100001/status"),
    ("POST", "/desk/tickets/100001/assign"),
    ("GET", "/desk/tickets/100001/raw/1"),
    ("GET", "/desk/tickets/100001/files/1"),
    ("GET", "/desk/registrations"),
    ("POST", "/desk/registrations/1/approve"),
    ("POST", "/desk/registrations/1/reject"),
    ("GET", "/desk/customers"),
    ("GET", "/desk/customers/10042"),
    ("POST", "/desk/customers/10042"),
    ("GET", "/desk/settings"),
    ("POST", "/desk/settings"),
    ("GET", "/desk/nothing/here"),
    ("POST", "/desk/nothing/here"),
]
FIELDS = {"body": "Hallo", "status": "closed", "agent": MAX, "note": "x", "language": "en",
          "support_until": "2020-01-01", "trial_until": "", "domains": "evil.example"}  # fmt: skip


@pytest.mark.parametrize(("method", "path"), DESK_PATHS)
async def test_every_desk_path_is_404_for_a_customer(env_factory, sink, method: str,
                                                     path: str) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    """Every /desk path of SPEC 9, GET and POST (with a valid CSRF token), is 404 for a
    logged-in customer, and a POST changes nothing."""
    env = await desk_env(env_factory, sink)
    await first_ticket(env)
    anna = await logged_in(env, ANNA)
    await anna.get("/tickets/100001")  # a valid token of Anna's session
    if method == "GET":
        response = await anna.get(path)
    else:
        response = await anna.post(path, FIELDS)
    assert response.status_code == 404, response.text
    await settle(env, 3)  # Anna's confirmation and the two agents' notifications, no more
    shown = await env.cli_json("ticket", "show", "100001")
    assert shown["status"] == "new"
    assert [a["direction"] for a in shown["articles"]] == ["in"]
    agent = await agent_client(env)
    contract = await agent.get("/desk/customers/10042")
    assert "evil.example" not in contract.text
    assert "2020-01-01" not in contract.text
    assert 'href="/desk/tickets/100001"' in (await agent.get("/desk?assignee=none")).text
    assert 'value="1" checked' in (await agent.get("/desk/settings")).text
