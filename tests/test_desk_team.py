"""A desk for a team over real HTTP and SMTP against the real daemon (SPEC 9.1): a desk form
made on a page that no longer shows the ticket answers 409 and does nothing (force=1 acts),
the ticket's history in both languages and in `ticket show --json`, the mail to an agent a
ticket is assigned to, the owner told of a customer's close and reopen in the portal, and a
status change to the status a ticket has."""

from __future__ import annotations

import html
import re

import pytest
from conftest import Env, eventually, make_mail, queued_in_outbox
from desk_support import body, settle
from test_desk import MAX, MIA, TAG, agent_client, first_ticket
from test_desk_rules import desk_env, recipients
from web_support import ANNA, Client, logged_in, outbox_kinds, text_of

pytestmark = pytest.mark.web  # the daemon serves the portal and the desk

PAGE = "/desk/tickets/100001"
_CHANGE = re.compile(r'<p class="change change-\w+" id="change-\d+">(.*?)</p>', re.S)


async def team(env_factory, sink) -> tuple[Env, Client, Client]:  # type: ignore[no-untyped-def]
    """Anna's ticket 100001 (3 mails: her confirmation, both agents notified); Max (desk in
    English) and Mia (in German) logged in."""
    env = await desk_env(env_factory, sink)
    await first_ticket(env)
    await settle(env, 3)
    return env, await agent_client(env, MAX), await agent_client(env, MIA)


def history_lines(response: object) -> list[str]:
    """The history entries of a desk ticket page, as read: 'what: from → to · by · when'."""
    found = _CHANGE.findall(getattr(response, "text", ""))
    return [" ".join(html.unescape(re.sub(r"<[^>]+>", " ", f)).split()) for f in found]


async def shown(env: Env) -> dict[str, object]:
    found: dict[str, object] = await env.cli_json("ticket", "show", "100001")
    return found


async def test_a_stale_answer_is_refused_kept_and_sent_with_force(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """Two agents load a ticket, one answers: the other's answer is 409, sends nothing, shows
    the first answer and keeps the typed text and status; with force=1 it is sent."""
    env, max_c, mia = await team(env_factory, sink)
    await max_c.get(PAGE)
    await mia.get(PAGE)
    old = mia.seen
    first = await max_c.post(f"{PAGE}/reply", {"body": "Bitte neu starten.", "status": "answered"})
    assert first.status_code == 303
    stale = await mia.post(
        f"{PAGE}/reply", {"body": "Treiber neu installieren.", "status": "closed"}
    )
    assert stale.status_code == 409
    assert ">Treiber neu installieren.</textarea>" in stale.text  # the typed text is kept
    assert '<option value="closed" selected>' in stale.text
    text = text_of(stale)
    assert "Das Ticket hat sich geändert, seit Sie die Seite geladen haben." in text
    changed = text.split("Seitdem geändert")[1].split("Kunde")[0]
    assert "Bitte neu starten." in changed  # what changed since is named
    received = await settle(env, 4)  # Max's answer only
    assert "Bitte neu starten." in body(received[3])
    assert (await shown(env))["status"] == "answered"
    again = {"body": "Treiber neu installieren.", "status": "closed", "seen": old, "force": "1"}
    forced = await mia.post(f"{PAGE}/reply", again)
    assert forced.status_code == 303
    received = await settle(env, 5)
    assert received[4].rcpt_tos == [ANNA]
    assert "Treiber neu installieren." in body(received[4])
    assert (await shown(env))["status"] == "closed"


async def test_stale_note_status_assign_and_a_customer_mail_in_between(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """A note, status change or assignment made on a page older than another agent's note,
    or an answer made before a customer's mail arrived, is 409, changes nothing and keeps
    what was typed; force=1 acts; a form without `seen`, or with no number, is refused
    too (409, not an error page)."""
    env, max_c, mia = await team(env_factory, sink)
    forms = (
        ("note", {"body": "Kunde anrufen"}, ">Kunde anrufen</textarea>"),
        ("status", {"status": "closed", "note": "Erledigt."}, ">Erledigt.</textarea>"),
        ("assign", {"agent": MIA}, f'<option value="{MIA}" selected>'),
    )
    for form, data, kept in forms:
        await max_c.get(PAGE)
        await mia.get(PAGE)
        old = mia.seen
        noted = await max_c.post(f"{PAGE}/note", {"body": f"Zwischenstand {form}"})
        assert noted.status_code == 303
        before = await shown(env)
        stale = await mia.post(f"{PAGE}/{form}", data)
        assert stale.status_code == 409, form
        assert kept in stale.text, form
        assert f"Zwischenstand {form}" in text_of(stale).split("Seitdem geändert")[1]
        assert await shown(env) == before, form  # nothing changed
        bad = "" if form == "note" else "²"  # none, or no number (a digit, not 0-9)
        unseen = await mia.post(f"{PAGE}/{form}", {**data, "seen": bad})
        assert unseen.status_code == 409, form
        assert "Das Formular nannte keinen Stand des Tickets." in text_of(unseen)
        forced = await mia.post(f"{PAGE}/{form}", {**data, "seen": old, "force": "1"})
        assert forced.status_code == 303, form
    await settle(env, 4)  # the status change's mail to Anna; Mia assigned herself: no mail
    after = await shown(env)
    assert after["status"] == "closed"
    assert [(h["what"], h["to"]) for h in after["history"]] == [  # type: ignore[attr-defined]
        ("status", "closed"),
        ("owner", MIA),
    ]
    # A customer's mail between loading the page and answering makes the page stale.
    await mia.get(PAGE)
    follow = make_mail(ANNA, f"Re: {TAG} Drucker druckt nicht", "Geht wieder nicht.\n")
    assert (await env.send(follow))[0] == 250
    await eventually(lambda: queued_in_outbox(env.data_dir) == 0, what="the outbox empty")
    count = len(sink.received)
    stale = await mia.post(f"{PAGE}/reply", {"body": "Ist der Drucker an?", "status": "answered"})
    assert stale.status_code == 409
    assert "Geht wieder nicht." in text_of(stale).split("Seitdem geändert")[1]
    assert ">Ist der Drucker an?</textarea>" in stale.text
    await settle(env, count)  # nothing sent
    again = await mia.post(f"{PAGE}/reply", {"body": "Ist der Drucker an?", "status": "answered"})
    assert again.status_code == 303  # the 409 page showed it all: its form acts
    received = await settle(env, count + 1)
    assert "Ist der Drucker an?" in body(received[-1])
    history = (await shown(env))["history"]  # Anna's mail reopened the closed ticket
    assert [(h["what"], h["from"], h["to"], h["by"]) for h in history][-2:] == [  # type: ignore[attr-defined]
        ("status", "closed", "open", ANNA),
        ("status", "open", "answered", MIA),
    ]


async def test_assigning_mails_the_new_owner_and_history_shows_who_did_what(
    env_factory, sink
) -> None:  # type: ignore[no-untyped-def]
    """Assigning a ticket to another agent mails that agent in their language; assigning
    oneself mails nobody; the history names each change, who and when, in the German and
    the English desk (no English word in the German one), in `ticket show --json`, and
    never in the portal."""
    env, max_c, mia = await team(env_factory, sink)
    assert (await max_c.post(f"{PAGE}/assign", {"agent": MIA}, form_page=PAGE)).status_code == 303
    received = await settle(env, 4)
    assert received[3].rcpt_tos == [MIA]
    assert str(received[3].message["Subject"]) == f"{TAG} Ihnen zugewiesen: Drucker druckt nicht"
    assert "Max Berger hat Ihnen Ticket 100001" in body(received[3])
    assert "/desk/tickets/100001" in body(received[3])
    assert (await mia.post(f"{PAGE}/assign", {"agent": MAX}, form_page=PAGE)).status_code == 303
    received = await settle(env, 5)
    assert received[4].rcpt_tos == [MAX]
    assert str(received[4].message["Subject"]) == f"{TAG} Assigned to you: Drucker druckt nicht"
    assert (await max_c.post(f"{PAGE}/assign", {"agent": ""}, form_page=PAGE)).status_code == 303
    assert (await max_c.post(f"{PAGE}/assign", {"agent": MAX}, form_page=PAGE)).status_code == 303
    closed = await max_c.post(f"{PAGE}/status", {"status": "closed"}, form_page=PAGE)
    assert closed.status_code == 303
    await settle(env, 6)  # the status mail to Anna; Max assigning himself mailed nobody
    assert [k for k, _ in await outbox_kinds(env)].count("agent_assigned") == 2
    english = [line.rsplit(" · ", 1)[0] for line in history_lines(await max_c.get(PAGE))]
    assert english == [
        f"Owner: nobody → {MIA} · {MAX}",
        f"Owner: {MIA} → {MAX} · {MIA}",
        f"Owner: {MAX} → nobody · {MAX}",
        f"Owner: nobody → {MAX} · {MAX}",
        f"Status: new → closed · {MAX}",
    ]
    german = [line.rsplit(" · ", 1)[0] for line in history_lines(await mia.get(PAGE))]
    assert german == [
        f"Zuständig: niemand → {MIA} · {MAX}",
        f"Zuständig: {MIA} → {MAX} · {MIA}",
        f"Zuständig: {MAX} → niemand · {MAX}",
        f"Zuständig: niemand → {MAX} · {MAX}",
        f"Status: neu → geschlossen · {MAX}",
    ]
    history = (await shown(env))["history"]
    assert [(h["what"], h["from"], h["to"], h["by"]) for h in history] == [  # type: ignore[attr-defined]
        ("owner", None, MIA, MAX),
        ("owner", MIA, MAX, MIA),
        ("owner", MAX, None, MAX),
        ("owner", None, MAX, MAX),
        ("status", "new", "closed", MAX),
    ]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+\+00:00", h["at"]) for h in history)  # type: ignore[attr-defined]
    anna = await logged_in(env, ANNA)
    portal = text_of(await anna.get("/tickets/100001"))
    assert MIA not in portal
    assert "Zuständig" not in portal


async def test_portal_close_and_reopen_tell_the_owner_else_the_agents(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """A customer closing a ticket without owner in the portal notifies every agent; after
    it is assigned, reopening notifies its owner only; both are in its history."""
    env, max_c, _ = await team(env_factory, sink)
    anna = await logged_in(env, ANNA)
    closed = await anna.post("/tickets/100001/close", {}, form_page="/tickets/100001")
    assert closed.status_code == 303
    received = await settle(env, 5)
    assert recipients(sink, 3) == sorted([MAX, MIA])
    to_mia = next(r for r in received[3:] if r.rcpt_tos == [MIA])
    assert str(to_mia.message["Subject"]) == f"{TAG} Vom Kunden geschlossen: Drucker druckt nicht"
    assert "Anna Müller von Gymnasium Musterstadt" in body(to_mia)
    assigned = await max_c.post(f"{PAGE}/assign", {"agent": MIA}, form_page=PAGE)
    assert assigned.status_code == 303
    await settle(env, 6)
    reopened = await anna.post("/tickets/100001/reopen", {}, form_page="/tickets/100001")
    assert reopened.status_code == 303
    received = await settle(env, 7)
    assert received[6].rcpt_tos == [MIA]
    assert "wieder geöffnet" in str(received[6].message["Subject"])
    history = (await shown(env))["history"]
    assert [(h["what"], h["from"], h["to"], h["by"]) for h in history] == [  # type: ignore[attr-defined]
        ("status", "new", "closed", ANNA),
        ("owner", None, MIA, MAX),
        ("status", "closed", "open", ANNA),
    ]


async def test_the_status_a_ticket_has_changes_nothing_and_a_note_goes_as_an_answer(
    env_factory, sink
) -> None:  # type: ignore[no-untyped-def]
    """Setting the status a ticket already has changes nothing, mails nobody and adds no
    history; with a note, the note is mailed as an answer and the history stays empty."""
    env, max_c, _ = await team(env_factory, sink)
    before = await shown(env)
    same = await max_c.post(f"{PAGE}/status", {"status": "new"}, form_page=PAGE)
    assert same.status_code == 303
    await settle(env, 3)
    assert await shown(env) == before
    noted = await max_c.post(f"{PAGE}/status", {"status": "new", "note": "Wir prüfen das."},
                             form_page=PAGE)  # fmt: skip
    assert noted.status_code == 303
    received = await settle(env, 4)
    assert received[3].rcpt_tos == [ANNA]
    assert "Wir prüfen das." in body(received[3])
    assert "bisher" not in body(received[3])  # not a status notice
    assert (await outbox_kinds(env))[-1] == ("agent_reply", ANNA)
    after = await shown(env)
    assert after["status"] == "new"
    assert after["history"] == []
    cli = await env.cli("ticket", "status", "100001", "new")
    assert cli.returncode == 0, cli.stderr
    assert "nothing changed, nothing sent" in cli.stdout
    await settle(env, 4)
