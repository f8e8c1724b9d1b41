"""The support desk over real HTTP and SMTP against the real daemon (SPEC 9): agents' login,
the queue and its full-text search, answers, notes, status changes, owners, notifications
to agents and answering them by mail, registrations and institutions."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from conftest import SUPPORT, Env, make_mail
from desk_support import attachments, body, cli_stdin, settle
from web_support import ANNA, PASSWORD, Client, logged_in, mails_to, next_mail_to, text_of

from ticketmail.storage import desk as desk_db

pytestmark = pytest.mark.web  # the daemon serves the portal and the desk

MAX = "max@stueber.de"
MIA = "mia@stueber.de"
TAG = "[Ticket#100001]"


async def agents(env: Env) -> None:
    for email, name, lang in ((MAX, "Max Berger", "en"), (MIA, "Mia Hahn", "de")):
        result = await env.cli("agent", "add", email, "--name", name, "--lang", lang)
        assert result.returncode == 0, result.stderr
        result = await cli_stdin(env, PASSWORD + "\n", "agent", "passwd", email)
        assert result.returncode == 0, result.stderr


async def agent_client(env: Env, email: str = MAX) -> Client:
    client = Client(env, lang="en")
    response = await client.login(email)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/desk"
    await client.get("/desk")
    return client


async def first_ticket(env: Env, text: str = "Der Drucker druckt nicht.\n") -> None:
    mail = make_mail(f"Anna Müller <{ANNA}>", "Drucker druckt nicht", text, message_id="<t1@x>")
    assert await env.send(mail) == (250, "2.0.0 Ok: ticket 100001")


def queued_numbers(response: object) -> list[int]:
    text = getattr(response, "text", "")
    return [int(n) for n in dict.fromkeys(re.findall(r'href="/desk/tickets/(\d+)"', text))]


async def test_agent_logs_in_to_the_desk_and_customers_get_404(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """An agent's login lands on /desk; a customer gets 404 on every /desk path."""
    env = await web_env(env_factory, sink)
    await first_ticket(env)
    client = await agent_client(env)
    desk = await client.get("/desk")
    assert desk.status_code == 200
    assert '<a class="brand" href="/desk">Support desk</a>' in desk.text  # the agent's home
    anna = await logged_in(env, ANNA)
    assert '<a class="brand" href="/">Support-Portal</a>' in (await anna.get("/tickets")).text
    for path in ("/desk", "/desk/tickets/100001", "/desk/customers", "/desk/registrations",
                 "/desk/anything"):  # fmt: skip
        assert (await anna.get(path)).status_code == 404, path
    refused = await anna.post("/desk/tickets/100001/note", {"body": "x"})
    assert refused.status_code == 404


async def web_env(env_factory, sink) -> Env:  # type: ignore[no-untyped-def]
    env: Env = await env_factory(sink)
    await env.customer("10042", "Gymnasium Musterstadt")
    await env.user(ANNA, "10042", name="Anna Müller", lang="de")
    await env.customer("20001", "Realschule Beispielstadt")
    await env.user("carl@real.example", "20001", name="Carl Krause", lang="de")
    await agents(env)
    return env


async def test_new_ticket_notifies_every_agent_then_only_the_owner(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """A new ticket notifies every agent (number, subject, institution, desk link); after
    assign, a follow-up notifies the owner only; an agent answering it by mail answers the
    customer."""
    env = await web_env(env_factory, sink)
    await first_ticket(env)
    await sink.wait_for(3)
    to_max = await next_mail_to(sink, MAX, after=0)
    to_mia = await next_mail_to(sink, MIA, after=0)
    for mail in (to_max, to_mia):
        text = body(mail)
        assert TAG in str(mail.message["Subject"])
        assert "Drucker druckt nicht" in text
        assert "Gymnasium Musterstadt" in text
        assert "http://127.0.0.1:8080/desk/tickets/100001" in text
        assert re.fullmatch(
            r"<tm\.100001\.[0-9a-f.]+@stueber\.de>", str(mail.message["Message-ID"])
        )
    assert "Customer" in body(to_max) or "opened" in body(to_max)  # Max reads English
    assert "eröffnet" in body(to_mia)  # Mia reads German
    client = await agent_client(env)
    assigned = await client.post("/desk/tickets/100001/assign", {"agent": MAX},
                                 form_page="/desk/tickets/100001")  # fmt: skip
    assert assigned.status_code == 303
    before = len(sink.received)
    follow = make_mail(ANNA, f"Re: {TAG} Drucker druckt nicht", "Immer noch kaputt.\n")
    assert (await env.send(follow))[0] == 250
    received = await settle(env, before + 1)
    assert [r.rcpt_tos for r in received[before:]] == [[MAX]]
    # Max answers the notification by mail: Anna gets the answer, the ticket keeps it.
    notice = received[-1]
    answer = make_mail(
        MAX, f"Re: {notice.message['Subject']}", "Bitte den Treiber neu installieren.\n",
        headers={"In-Reply-To": str(notice.message["Message-ID"])},
    )  # fmt: skip
    assert (await env.send(answer))[0] == 250
    reply = await next_mail_to(sink, ANNA, after=len(mails_to(sink, ANNA)))
    assert "Bitte den Treiber neu installieren." in body(reply)
    shown = await env.cli_json("ticket", "show", "100001")
    assert any(a["direction"] == "out" and "Treiber" in a["body_text"] for a in shown["articles"])


async def test_the_queue_filters_and_searches_every_article(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """The queue finds a ticket by status, institution, owner and by a word only in its
    second article; a word that occurs nowhere finds nothing."""
    env = await web_env(env_factory, sink)
    await first_ticket(env)
    other = make_mail("carl@real.example", "Beamer flackert", "Der Beamer flackert.\n")
    assert (await env.send(other))[1] == "2.0.0 Ok: ticket 100002"
    env.clock.advance(seconds=2)  # newest activity first: the follow-up comes later
    follow = make_mail(ANNA, f"Re: {TAG} Drucker", "Fehlercode Zylinderkopfdichtung 42.\n")
    assert (await env.send(follow))[0] == 250
    client = await agent_client(env)
    assert queued_numbers(await client.get("/desk")) == [100001, 100002]
    assert queued_numbers(await client.get("/desk?customer=20001")) == [100002]
    assert queued_numbers(await client.get("/desk?q=zylinderkopfdichtung")) == [100001]
    assert queued_numbers(await client.get("/desk?q=Beamer")) == [100002]
    assert queued_numbers(await client.get("/desk?q=100002")) == [100002]
    assert queued_numbers(await client.get("/desk?q=carl@real.example")) == [100002]
    assert queued_numbers(await client.get("/desk?q=Quarkstrudel")) == []
    assert queued_numbers(await client.get("/desk?assignee=me")) == []
    await client.post(
        "/desk/tickets/100002/assign", {"agent": MAX}, form_page="/desk/tickets/100002"
    )
    assert queued_numbers(await client.get("/desk?assignee=me")) == [100002]
    assert queued_numbers(await client.get(f"/desk?assignee={MAX}")) == [100002]
    assert queued_numbers(await client.get("/desk?assignee=none")) == [100001]
    await client.post("/desk/tickets/100002/status", {"status": "closed"},
                      form_page="/desk/tickets/100002")  # fmt: skip
    assert queued_numbers(await client.get("/desk?status=closed")) == [100002]
    assert queued_numbers(await client.get("/desk?status=new")) == [100001]


async def test_a_search_in_too_many_articles_says_so(env_factory, sink, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A word in more articles than a search reads: the page lists the tickets of the newest
    and tells the agent how to narrow the search; an institution's search is whole."""
    monkeypatch.setattr(desk_db, "SEARCH_BOUND", 1)
    env = await web_env(env_factory, sink)
    await first_ticket(env, "Der Toner ist leer.\n")
    other = make_mail("carl@real.example", "Toner", "Auch bei uns ist der Toner leer.\n")
    assert (await env.send(other))[1] == "2.0.0 Ok: ticket 100002"
    client = await agent_client(env)
    page = await client.get("/desk?q=toner")
    assert queued_numbers(page) == [100002]
    assert "More than 1 articles contain these words" in text_of(page)
    page = await client.get("/desk?q=toner&customer=10042")
    assert queued_numbers(page) == [100001]
    assert "More than" not in text_of(page)


async def test_an_answer_from_the_desk_reaches_the_customer(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """An answer from the desk reaches the customer with the tag, threaded, with its file;
    the status is the one chosen; the answering agent gets no mail about it."""
    env = await web_env(env_factory, sink)
    await first_ticket(env)
    await sink.wait_for(3)
    client = await agent_client(env)
    before = len(sink.received)
    response = await client.post(
        "/desk/tickets/100001/reply", {"body": "Bitte neu starten.", "status": "closed"},
        files=[("attachments", ("anleitung.pdf", b"%PDF-1.4 test", "application/pdf"))],
        form_page="/desk/tickets/100001",
    )  # fmt: skip
    assert response.status_code == 303, response.text
    received = await settle(env, before + 1)
    mail = received[-1]
    assert mail.rcpt_tos == [ANNA]
    assert TAG in str(mail.message["Subject"])
    assert "<t1@x>" in str(mail.message["References"])
    assert "Bitte neu starten." in body(mail)
    assert attachments(mail) == [("anleitung.pdf", "application/pdf", b"%PDF-1.4 test")]
    shown = await env.cli_json("ticket", "show", "100001")
    assert shown["status"] == "closed"


async def test_an_internal_note_stays_inside_the_desk(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """An internal note is mailed to nobody and absent from the portal and its downloads."""
    env = await web_env(env_factory, sink)
    await first_ticket(env)
    await sink.wait_for(3)
    client = await agent_client(env)
    before = len(sink.received)
    response = await client.post("/desk/tickets/100001/note", {"body": "Geheimnotiz Kundendrama"},
                                 form_page="/desk/tickets/100001")  # fmt: skip
    assert response.status_code == 303
    await settle(env, before)
    assert "Geheimnotiz Kundendrama" in text_of(await client.get("/desk/tickets/100001"))
    anna = await logged_in(env, ANNA)
    page = await anna.get("/tickets/100001")
    assert page.status_code == 200
    assert "Geheimnotiz" not in page.text
    listing = await anna.get("/tickets?q=Geheimnotiz")  # the portal's search: no hit
    assert 'href="/tickets/100001"' not in listing.text
    assert 'href="/tickets/100001"' in (await anna.get("/tickets?q=Drucker")).text


async def test_a_status_change_with_a_note_tells_the_customer(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """A status change with a note from the desk mails the customer like `ticket status`."""
    env = await web_env(env_factory, sink)
    await first_ticket(env)
    await sink.wait_for(3)
    client = await agent_client(env)
    before = len(sink.received)
    response = await client.post(
        "/desk/tickets/100001/status", {"status": "closed", "note": "Treiber installiert."},
        form_page="/desk/tickets/100001",
    )  # fmt: skip
    assert response.status_code == 303
    received = await settle(env, before + 1)
    assert received[-1].rcpt_tos == [ANNA]
    assert "Treiber installiert." in body(received[-1])
    assert (await env.cli_json("ticket", "show", "100001"))["status"] == "closed"


async def test_registrations_are_approved_or_rejected_in_the_desk(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """An approved registration sees its institution's tickets, a rejected one nothing; each
    applicant is told by mail."""
    env = await web_env(env_factory, sink)
    await first_ticket(env)
    client = await agent_client(env)
    decided = {}
    for email, decision in (("eva@gmail.example", "approve"), ("udo@gmail.example", "reject")):
        visitor = Client(env)
        await visitor.post("/register", {"email": email, "name": "X Y", "customer_number": "10042",
                                         "password": PASSWORD, "language": "de"},
                           form_page="/register")  # fmt: skip
        confirm = await next_mail_to(sink, email, after=0)
        path = re.search(r"http://127\.0\.0\.1:8080(/register/confirm/\S+)", body(confirm))
        assert path is not None
        await visitor.post(path.group(1), {"password": PASSWORD}, form_page=path.group(1))
        page = await client.get("/desk/registrations")
        found = re.search(rf'id="registration-(\d+)">\s*<td[^>]*>{re.escape(email)}', page.text)
        assert found, page.text
        response = await client.post(f"/desk/registrations/{found.group(1)}/{decision}", {})
        assert response.status_code == 303
        told = await next_mail_to(sink, email, after=1)
        decided[email] = body(told)
        visitor2 = Client(env)
        login = await visitor2.login(email)
        if decision == "approve":
            assert login.status_code == 303
            assert 'href="/tickets/100001"' in (await visitor2.get("/tickets")).text
        else:
            assert login.status_code == 401
    assert "freigegeben" in decided["eva@gmail.example"]
    assert "nicht freigegeben" in decided["udo@gmail.example"]


async def test_a_lapsed_contract_set_in_the_desk_changes_the_intake(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """Editing an institution's contract in the desk: its next mail gets no_contract."""
    env = await web_env(env_factory, sink)
    client = await agent_client(env)
    past = (env.clock().date() - timedelta(days=3)).isoformat()
    response = await client.post(
        "/desk/customers/10042",
        {"support_until": past, "trial_until": "", "domains": "schule.example"},
        form_page="/desk/customers/10042",
    )  # fmt: skip
    assert response.status_code == 303
    page = await client.get("/desk/customers/10042")
    assert past in page.text
    assert "schule.example" in page.text
    mail = make_mail(ANNA, "Neue Frage")
    code, reply = await env.send(mail)
    assert code == 250
    assert "ticket" not in reply
    kinds = [e["kind"] for e in await env.cli_json("outbox", "list")]
    assert kinds == ["no_contract"]
    assert SUPPORT  # the address mail goes to
