"""Bulk actions on the desk's queue over real HTTP and SMTP against the real daemon (SPEC
9.1, POST /desk/bulk): assign and set the status of several tickets at once, each ticket
checked against the version the queue showed, the changed ones skipped and named (409),
mails as the single actions send them, CSRF, customers kept out, clear lines for bad input."""

from __future__ import annotations

import re

import httpx
import pytest
from conftest import Env, eventually, make_mail, queued_in_outbox
from desk_support import other_institution, settle
from test_desk import MAX, MIA, agent_client
from test_desk_rules import desk_env
from web_support import ANNA, BEN, CARL, Client, logged_in, text_of

from ticketmail.web.bulk import MAX_TICKETS

pytestmark = pytest.mark.web  # the daemon serves the portal and the desk

CLEO = "cleo@schule.example"
TICKETS = ("100001", "100002", "100003")
_SEEN = re.compile(r'name="seen_(\d+)" value="(\d+)"')


async def three_tickets(env_factory, sink) -> Env:  # type: ignore[no-untyped-def]
    """Anna, Ben and Cleo of one institution open a ticket each by mail (100001-100003):
    each confirmation and both agents' notifications, 9 mails."""
    env = await desk_env(env_factory, sink)
    await env.user(BEN, "10042", name="Ben Becker", lang="de")
    await env.user(CLEO, "10042", name="Cleo Conrad", lang="en")
    for n, writer in enumerate((ANNA, BEN, CLEO), start=1):
        mail = make_mail(writer, f"Frage {n}", "Hallo.\n", message_id=f"<q{n}@schule.example>")
        assert await env.send(mail) == (250, f"2.0.0 Ok: ticket 10000{n}")
    await settle(env, 9)
    return env


async def queue_seen(client: Client) -> dict[str, str]:
    """The queue page's version of each listed ticket, as its bulk form carries them."""
    page = await client.get("/desk")
    assert page.status_code == 200
    return dict(_SEEN.findall(page.text))


async def bulk(
    client: Client, fields: dict[str, str | list[str]], *, csrf: str | None = None
) -> httpx.Response:
    """POST /desk/bulk as the queue's form sends it (several `tickets`)."""
    data = {**fields, "csrf_token": client.csrf if csrf is None else csrf}
    response = await client.http.post("/desk/bulk", data=data)
    assert "Traceback" not in response.text
    return response


def with_seen(seen: dict[str, str], tickets: tuple[str, ...] = TICKETS) -> dict[str, str]:
    return {f"seen_{n}": seen[n] for n in tickets}


async def shown(env: Env, number: str) -> dict[str, object]:
    found: dict[str, object] = await env.cli_json("ticket", "show", number)
    return found


def history(found: dict[str, object]) -> list[tuple[str, str, str]]:
    return [(h["what"], h["to"], h["by"]) for h in found["history"]]  # type: ignore[attr-defined]


def tags(mails: list[object]) -> list[str]:
    return sorted(re.findall(r"#(\d+)", str(m.message["Subject"]))[0] for m in mails)  # type: ignore[attr-defined]


async def test_bulk_assign_and_status_change_each_ticket_and_mail_as_single_ones(
    env_factory, sink
) -> None:  # type: ignore[no-untyped-def]
    """Bulk assign of three tickets gives each an owner history entry and mails the new
    owner once per ticket; bulk status `answered` mails each of the three customers once;
    the same again changes nothing and mails nobody; taking tickets oneself mails nobody;
    the queue (as it was filtered, never another site) says how many changed."""
    env = await three_tickets(env_factory, sink)
    max_c = await agent_client(env, MAX)
    seen = await queue_seen(max_c)
    assert set(TICKETS) <= set(seen)
    page = await max_c.get("/desk")
    assert 'type="checkbox" name="tickets" value="100002"' in page.text
    assert '<input type="hidden" name="back" value="/desk?page=1">' in page.text
    assign = {"tickets": list(TICKETS), "action": "assign", "agent": MIA, **with_seen(seen)}
    back = "https://evil.example/desk?status=new&page=1&x=1"  # back to the queue, nowhere else
    done = await bulk(max_c, {**assign, "back": back})
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/desk?status=new&page=1&changed=3&same=0"
    assert "3 tickets were changed." in text_of(await max_c.get(done.headers["location"]))
    mails = await settle(env, 12)
    to_mia = mails[9:]
    assert all(m.rcpt_tos == [MIA] for m in to_mia)  # the new owner, once per ticket
    assert tags(to_mia) == list(TICKETS)
    for number in TICKETS:
        assert history(await shown(env, number)) == [("owner", MIA, MAX)]
    # Status `answered`: each customer is mailed once, as by one status change each.
    seen = await queue_seen(max_c)
    status = {"tickets": list(TICKETS), "action": "status", "status": "answered"}
    done = await bulk(max_c, {**status, **with_seen(seen)})
    assert done.status_code == 303, done.text
    mails = await settle(env, 15)
    assert sorted(r for m in mails[12:] for r in m.rcpt_tos) == [ANNA, BEN, CLEO]
    assert tags(mails[12:]) == list(TICKETS)
    for number in TICKETS:
        found = await shown(env, number)
        assert found["status"] == "answered"
        assert history(found)[-1] == ("status", "answered", MAX)
    # The same again: already so, nothing changed, nobody mailed.
    seen = await queue_seen(max_c)
    again = await bulk(max_c, {**status, **with_seen(seen)})
    assert again.headers["location"] == "/desk?changed=0&same=3"
    assert "3 already were so" in text_of(await max_c.get(again.headers["location"]))
    await settle(env, 15)
    assert len(history(await shown(env, "100001"))) == 2
    # An agent who takes tickets himself is told of nothing (his own action).
    seen = await queue_seen(max_c)
    mine = {"tickets": ["100001", "100002"], "action": "assign", "agent": MAX}
    taken = await bulk(max_c, {**mine, **with_seen(seen, ("100001", "100002"))})
    assert taken.headers["location"] == "/desk?changed=2&same=0"
    await settle(env, 15)
    assert history(await shown(env, "100002"))[-1] == ("owner", MAX, MAX)


async def test_a_ticket_changed_since_the_queue_loaded_is_skipped_and_named(
    env_factory, sink
) -> None:  # type: ignore[no-untyped-def]
    """A ticket that changed after the queue was loaded (its customer wrote) is skipped and
    named with 409; the other chosen tickets are done."""
    env = await three_tickets(env_factory, sink)
    max_c = await agent_client(env, MAX)
    seen = await queue_seen(max_c)
    follow = make_mail(ANNA, "Re: [Ticket#100001] Frage 1", "Noch etwas.\n")
    assert (await env.send(follow))[0] == 250
    await eventually(lambda: queued_in_outbox(env.data_dir) == 0, what="the outbox empty")
    count = len(sink.received)
    chosen = ("100001", "100002")
    fields = {"tickets": list(chosen), "action": "status", "status": "closed"}
    answer = await bulk(max_c, {**fields, **with_seen(seen, chosen)})
    assert answer.status_code == 409
    text = " ".join(text_of(answer).split())
    assert "These tickets changed since you loaded the queue and were skipped" in text
    assert "please check them: 100001" in text
    assert "Changed: 100002" in text
    assert 'href="/desk/tickets/100001"' in answer.text
    assert (await shown(env, "100001"))["status"] != "closed"
    assert (await shown(env, "100002"))["status"] == "closed"
    mails = await settle(env, count + 1)
    assert mails[-1].rcpt_tos == [BEN]


async def test_bulk_needs_the_token_and_is_404_for_customers(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """A bulk action without a valid CSRF token is refused (403); a customer gets 404 at
    /desk/bulk even with a valid token; neither changes anything."""
    env = await three_tickets(env_factory, sink)
    max_c = await agent_client(env, MAX)
    seen = await queue_seen(max_c)
    fields = {"tickets": list(TICKETS), "action": "assign", "agent": MAX, **with_seen(seen)}
    forged = await bulk(max_c, fields, csrf="0" * 64)
    assert forged.status_code == 403
    anna = await logged_in(env, ANNA)
    await anna.get("/tickets")
    assert (await bulk(anna, fields)).status_code == 404
    for number in TICKETS:
        assert history(await shown(env, number)) == []
    await settle(env, 9)


BAD = (
    ({"action": "assign", "agent": ""}, "Please choose at least one ticket."),
    ({"tickets": ["100001"], "action": "explode"}, "Please choose what to do with the tickets."),
    ({"tickets": ["100001"], "into": "100002"}, "Please choose what to do with the tickets."),
    ({"tickets": ["100001"], "action": "merge", "into": "", "seen_100001": "1"},
     "Please give the number of the ticket"),
    ({"tickets": ["100001"], "action": "merge", "into": "999999", "seen_100001": "1"},
     "There is no ticket with that number."),
    ({"tickets": ["100001"], "action": "assign", "agent": "x@y.example", "seen_100001": "1"},
     "There is no such agent."),
    ({"tickets": ["100001"], "action": "status", "status": "merged", "seen_100001": "1"},
     "Please choose a status."),
    ({"tickets": ["100001", "100002"], "action": "status", "status": "closed", "seen_100001": "1"},
     "The form named no state of ticket 100002."),
    ({"tickets": ["100001", "999999"], "action": "status", "status": "closed", "seen_100001": "1",
      "seen_999999": "1"}, "Not a ticket: 999999."),
    ({"tickets": ["100001", "abc"], "action": "status", "status": "closed"}, "Not a ticket: abc."),
)  # fmt: skip


async def test_bad_input_gets_a_clear_line_and_changes_nothing(env_factory, sink) -> None:  # type: ignore[no-untyped-def]
    """No ticket, an unknown action, a merge without a target, an unknown agent, a bad status,
    a missing seen_, a number that is no ticket and too many tickets each answer 400 with a
    line saying why (in the agent's language), and change nothing."""
    env = await three_tickets(env_factory, sink)
    max_c = await agent_client(env, MAX)
    seen = await queue_seen(max_c)
    for fields, line in BAD:
        given = {k: v for k, v in fields.items() if not k.startswith("seen_")}
        given.update({k: seen.get(k[5:], "1") for k in fields if k.startswith("seen_")})
        answer = await bulk(max_c, given)
        assert answer.status_code == 400, (fields, answer.text)
        assert line in " ".join(text_of(answer).split()), fields
        assert "Nothing was changed" in text_of(answer)
    many = [str(100001 + i) for i in range(MAX_TICKETS + 1)]
    fields = {"tickets": many, "action": "status", "status": "closed"}
    answer = await bulk(max_c, {**fields, **{f"seen_{n}": "1" for n in many}})
    assert answer.status_code == 400
    assert f"At most {MAX_TICKETS} tickets at once." in text_of(answer)
    mia = await agent_client(env, MIA)  # her desk is in German
    answer = await bulk(mia, {"action": "status", "status": "closed"})
    assert "Bitte wählen Sie mindestens ein Ticket. Nichts wurde geändert." in text_of(answer)
    for number in TICKETS:
        found = await shown(env, number)
        assert (found["status"], history(found)) == ("new", [])
    await settle(env, 9)


async def test_bulk_merge_merges_the_ticked_tickets_into_one_and_never_across_institutions(
    env_factory, sink
) -> None:  # type: ignore[no-untyped-def]
    """Bulk merge of 100002 and 100003 into 100001 (ticked too: it stays as it is) merges
    each with its own history and mails nobody; a ticket of another institution among the
    ticked ones refuses the whole action with 409, and nothing is merged."""
    env = await three_tickets(env_factory, sink)
    await other_institution(env)
    other = make_mail(CARL, "Frage 4", "Hallo.\n", message_id="<q4@realschule.example>")
    assert await env.send(other) == (250, "2.0.0 Ok: ticket 100004")
    count = len(await settle(env, 12))
    max_c = await agent_client(env, MAX)
    seen = await queue_seen(max_c)
    assert 'value="merge"' in (await max_c.get("/desk")).text
    across = ("100002", "100004")
    fields = {"tickets": list(across), "action": "merge", "into": "100001"}
    refused = await bulk(max_c, {**fields, **with_seen(seen, across)})
    assert refused.status_code == 409
    assert "different institutions" in text_of(refused)
    for number in ("100002", "100004"):
        assert (await shown(env, number))["status"] == "new"
    fields = {"tickets": list(TICKETS), "action": "merge", "into": "100001"}
    done = await bulk(max_c, {**fields, **with_seen(seen)})
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/desk?changed=2&same=1"
    for number in ("100002", "100003"):
        found = await shown(env, number)
        assert (found["status"], found["merged_into"]) == ("merged", "100001")
        assert history(found) == [("merge", "100001", MAX)]
    target = await shown(env, "100001")
    assert [h[0] for h in history(target)] == ["merge", "merge"]
    assert len(target["articles"]) == 3  # type: ignore[arg-type]
    assert len(await settle(env, count)) == count  # the customers are not mailed
