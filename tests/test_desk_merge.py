"""Merging two tickets over real HTTP and SMTP against the real daemon (SPEC 9.1): the
source's articles and files on the target in time order, later mail naming the source
landing on the target, desk and portal visits of the source sent to the target, its forms
refused, two institutions never merged, a stale merge refused (force=1 merges), the
history in both languages and in `ticket show --json`, no mail to the customer."""

from __future__ import annotations

import re

import pytest
from conftest import Env, eventually, make_mail, queued_in_outbox
from desk_support import OWN_ID, other_institution, settle
from test_desk import MAX, MIA, agent_client, queued_numbers
from test_desk_rules import desk_env
from test_desk_team import history_lines
from web_support import ANNA, CARL, logged_in, mails_to, png, text_of

pytestmark = pytest.mark.web  # the daemon serves the portal and the desk

SOURCE, TARGET = "/desk/tickets/100002", "/desk/tickets/100001"
PICTURE = png(seed=7)


async def quiet(env: Env) -> int:
    """Every mail queued so far sent; how many the sink holds."""
    await eventually(lambda: queued_in_outbox(env.data_dir) == 0, what="the outbox empty")
    assert env.sink is not None
    return len(env.sink.received)


async def two_tickets(env_factory, sink, clock) -> Env:  # type: ignore[no-untyped-def]
    """Anna's 100001 (a mail, and a follow-up two minutes later) and, in between, her
    100002 with a picture."""
    env = await desk_env(env_factory, sink)
    first = make_mail(ANNA, "Drucker druckt nicht", "Erste Meldung.\n", message_id="<t1@x>")
    assert await env.send(first) == (250, "2.0.0 Ok: ticket 100001")
    clock.advance(minutes=1)
    second = make_mail(ANNA, "Drucker im Raum 12", "Zweite Meldung.\n", message_id="<t2@x>")
    second.add_attachment(PICTURE, maintype="image", subtype="png", filename="drucker.png")
    assert await env.send(second) == (250, "2.0.0 Ok: ticket 100002")
    clock.advance(minutes=1)
    third = make_mail(ANNA, "Re: [Ticket#100001] Drucker", "Dritte Meldung.\n", message_id="<t3@x>")
    assert await env.send(third) == (250, "2.0.0 Ok: ticket 100001")
    clock.advance(minutes=1)
    await quiet(env)
    return env


async def show(env: Env, number: int) -> dict[str, object]:
    found: dict[str, object] = await env.cli_json("ticket", "show", str(number))
    return found


def texts(ticket: dict[str, object]) -> list[str]:
    return [a["body_text"].strip() for a in ticket["articles"]]  # type: ignore[attr-defined,index]


async def test_merge_moves_articles_and_files_and_later_mail_follows(
    env_factory, sink, clock
) -> None:  # type: ignore[no-untyped-def]
    """A merge puts the source's articles and files on the target in time order (files
    downloadable in the desk and the portal), makes the source 'merged' (not in the default
    queue nor the portal list) and mails nobody; desk and portal visits of the source and
    later mail with its tag, its Message-ID or one of ours sent on it land on the target."""
    env = await two_tickets(env_factory, sink, clock)
    before = await quiet(env)
    signed = next(  # the confirmation of 100002: a Message-ID we sent on the source
        str(r.message["Message-ID"]) for r in mails_to(sink, ANNA)
        if OWN_ID.findall(str(r.message["Message-ID"])) == ["100002"]
    )  # fmt: skip
    max_c = await agent_client(env, MAX)
    await max_c.get(SOURCE)
    merged = await max_c.post(f"{SOURCE}/merge", {"into": "100001"})
    assert merged.status_code == 303
    assert merged.headers["location"] == TARGET
    await settle(env, before)  # nobody is mailed about a merge
    target = await show(env, 100001)
    assert texts(target) == ["Erste Meldung.", "Zweite Meldung.", "Dritte Meldung."]
    source = await show(env, 100002)
    assert (source["status"], source["merged_into"], source["articles"]) == ("merged", "100001", [])
    assert target["merged_into"] is None
    page = await max_c.get(TARGET)
    order = [page.text.index(t) for t in ("Erste Meldung", "Zweite Meldung", "Dritte Meldung")]
    assert order == sorted(order)  # the desk's timeline in time order
    link = re.search(r'href="(/desk/tickets/100001/files/\d+)">drucker.png<', page.text)
    assert link is not None
    download = await max_c.get(link.group(1))
    assert (download.status_code, download.content) == (200, PICTURE)
    visit = await max_c.get(SOURCE)
    assert (visit.status_code, visit.headers["location"]) == (303, TARGET)
    assert 100002 not in queued_numbers(await max_c.get("/desk"))  # merged: no work
    assert 100001 in queued_numbers(await max_c.get("/desk"))
    assert queued_numbers(await max_c.get("/desk?status=merged")) == [100002]
    # The portal: the source is not listed, a visit lands on the target with the file.
    anna = await logged_in(env, ANNA)
    listed = await anna.get("/tickets")
    assert "/tickets/100001" in listed.text
    assert "/tickets/100002" not in listed.text
    visit = await anna.get("/tickets/100002")
    assert (visit.status_code, visit.headers["location"]) == (303, "/tickets/100001")
    portal = await anna.get("/tickets/100001")
    found = re.search(r'href="(/tickets/100001/files/\d+)"', portal.text)
    assert found is not None
    assert "Zweite Meldung." in portal.text
    assert (await anna.get(found.group(1))).content == PICTURE
    # Later mail naming the source: its tag, a Message-ID it received, one we sent on it.
    for n, headers in enumerate(({}, {"In-Reply-To": "<t2@x>"}, {"In-Reply-To": signed})):
        subject = "Re: [Ticket#100002] Drucker" if not headers else "Re: Drucker im Raum 12"
        later = make_mail(ANNA, subject, f"Später {n}.\n", headers=headers)
        assert await env.send(later) == (250, "2.0.0 Ok: ticket 100001"), headers
    assert texts(await show(env, 100001))[-3:] == ["Später 0.", "Später 1.", "Später 2."]
    assert (await show(env, 100002))["articles"] == []


async def test_two_institutions_are_never_merged(env_factory, sink, clock) -> None:  # type: ignore[no-untyped-def]
    """A merge of tickets of two institutions is 409 in the desk and refused by the CLI,
    nothing changes; after a merge, the other institution's mail with the merged ticket's
    tag still opens a ticket of its own."""
    env = await two_tickets(env_factory, sink, clock)
    await other_institution(env)
    carls = make_mail(CARL, "Beamer", "Der Beamer flackert.\n")
    assert await env.send(carls) == (250, "2.0.0 Ok: ticket 100003")
    await quiet(env)
    before = [await show(env, n) for n in (100001, 100002, 100003)]
    max_c = await agent_client(env, MAX)
    await max_c.get(SOURCE)
    refused = await max_c.post(f"{SOURCE}/merge", {"into": "100003"})
    assert refused.status_code == 409
    assert "belong to different institutions" in text_of(refused)
    assert 'name="into" inputmode="numeric" required value="100003"' in refused.text
    result = await env.cli("ticket", "merge", "100003", "--into", "100001", "--agent", MAX)
    assert result.returncode == 1
    assert "belong to two institutions" in result.stderr
    assert [await show(env, n) for n in (100001, 100002, 100003)] == before
    result = await env.cli("ticket", "merge", "100002", "--into", "100001", "--agent", MAX)
    assert result.returncode == 0, result.stderr
    tagged = make_mail(CARL, "Re: [Ticket#100002] Drucker", "Auch bei uns.\n")
    assert await env.send(tagged) == (250, "2.0.0 Ok: ticket 100004")
    assert "Auch bei uns." not in texts(await show(env, 100001))


async def test_a_stale_merge_is_refused_and_force_merges(env_factory, sink, clock) -> None:  # type: ignore[no-untyped-def]
    """Two agents load a ticket, another changes it: a merge made on the older page is 409,
    names the change and does nothing; with force=1 it merges."""
    env = await two_tickets(env_factory, sink, clock)
    max_c, mia = await agent_client(env, MAX), await agent_client(env, MIA)
    await max_c.get(SOURCE)
    await mia.get(SOURCE)
    old = mia.seen
    noted = await max_c.post(f"{SOURCE}/note", {"body": "Raum 12 ist abgeschlossen."})
    assert noted.status_code == 303
    before = await show(env, 100002)
    stale = await mia.post(f"{SOURCE}/merge", {"into": "100001"})
    assert stale.status_code == 409
    assert "Raum 12 ist abgeschlossen." in text_of(stale).split("Seitdem geändert")[1]
    assert 'required value="100001"' in stale.text  # the typed target is kept
    assert await show(env, 100002) == before
    forced = await mia.post(f"{SOURCE}/merge", {"into": "100001", "seen": old, "force": "1"})
    assert (forced.status_code, forced.headers["location"]) == (303, TARGET)
    assert (await show(env, 100002))["status"] == "merged"


async def test_the_merge_in_history_and_the_source_is_read_only(env_factory, sink, clock) -> None:  # type: ignore[no-untyped-def]
    """The merge is in both tickets' history (`ticket show --json`, the English and the
    German desk); a form posted on the merged ticket is 409 and does nothing, a portal
    answer on it goes to the target's page without being stored."""
    env = await two_tickets(env_factory, sink, clock)
    max_c, mia = await agent_client(env, MAX), await agent_client(env, MIA)
    german = await mia.get(SOURCE)
    assert "Zusammenführen" in german.text
    assert "Merge" not in text_of(german)
    await max_c.get(SOURCE)
    assert (await max_c.post(f"{SOURCE}/merge", {"into": "100001"})).status_code == 303
    for number in (100001, 100002):
        history = (await show(env, number))["history"]
        assert [(h["what"], h["from"], h["to"], h["by"]) for h in history] == [  # type: ignore[attr-defined]
            ("merge", "100002", "100001", MAX)
        ]
    english = history_lines(await max_c.get(TARGET))
    assert len(english) == 1
    assert english[0].startswith(f"Merged: 100002 → 100001 · {MAX}")
    deutsch = history_lines(await mia.get(TARGET))
    assert len(deutsch) == 1
    assert deutsch[0].startswith(f"Zusammengeführt: 100002 → 100001 · {MAX}")
    before = await show(env, 100001)
    count = await quiet(env)
    for form, data in (("note", {"body": "Notiz"}), ("reply", {"body": "Antwort"}),
                       ("status", {"status": "open"}), ("assign", {"agent": MIA}),
                       ("merge", {"into": "100001"})):  # fmt: skip
        refused = await mia.post(f"{SOURCE}/{form}", {**data, "force": "1"})
        assert refused.status_code == 409, form
        assert "in ein anderes zusammengeführt" in text_of(refused), form
        assert 'href="/desk/tickets/100001"' in refused.text
    anna = await logged_in(env, ANNA)
    await anna.get("/tickets/100001")
    answered = await anna.post("/tickets/100002/reply", {"body": "Noch eine Frage."})
    assert (answered.status_code, answered.headers["location"]) == (303, "/tickets/100001")
    closed = await anna.post("/tickets/100002/close")
    assert (closed.status_code, closed.headers["location"]) == (303, "/tickets/100001")
    assert await show(env, 100001) == before
    assert (await show(env, 100002))["status"] == "merged"
    await settle(env, count)  # nobody mailed
