"""`ticket status`, `ticket reply` and `ticket list`: what they store, send and print."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import SUPPORT, Env, make_mail, stored_blob
from desk_support import (
    ANNA,
    BEN,
    M1,
    MAX,
    TAG,
    add_agent,
    attachments,
    body,
    cli_stdin,
    one_line,
    open_ticket,
    references,
    settle,
    write_text,
)

from ticketmail.intake.route import Action, Classification, Facts, RoutePolicy, decide
from ticketmail.mail.parse import parse_mail
from ticketmail.models import Customer, TicketRef, User

M2 = "<t2@schule.example>"
CLARA = "clara@schule.example"


async def with_colleagues(env: Env) -> None:
    """Ben writes on Anna's ticket; Clara, of the same school, never does."""
    await open_ticket(env)
    await env.user(CLARA, "10042", name="Clara", lang="de")
    ben = make_mail(BEN, f"Re: {TAG} Drucker druckt nicht", "Same here.\n", message_id=M2)
    assert await env.send(ben) == (250, "2.0.0 Ok: ticket 100001")


async def show(env: Env) -> Any:
    return await env.cli_json("ticket", "show", "100001")


# --- ticket status -----------------------------------------------------------------------------


async def test_status_change_tells_requester_and_writers_each_in_their_language(env: Env) -> None:
    """status_changed goes to the requester and colleagues who wrote, each in their language."""
    await with_colleagues(env)
    result = await env.cli("ticket", "status", "100001", "answered", "--note", "Treiber neu.")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "ticket 100001: status new → answered",
        f"status_changed queued for {ANNA} (de)",
        f"status_changed queued for {BEN} (en)",
    ]
    mails = (await settle(env, 3))[1:]
    by = {r.rcpt_tos[0]: r for r in mails}
    assert set(by) == {ANNA, BEN}
    for received in mails:
        msg = received.message
        assert TAG in str(msg["Subject"])
        assert msg["Auto-Submitted"] == "auto-generated"
        assert msg["In-Reply-To"] == M2, "answers the latest mail of the ticket"
        assert references(received) == [M1, M2]
        assert "Treiber neu." in body(received)
    assert "Statusänderung: beantwortet" in str(by[ANNA].message["Subject"])
    assert "Ihr Ticket 100001 wurde beantwortet." in body(by[ANNA])
    assert "Status changed: answered" in str(by[BEN].message["Subject"])
    assert "your ticket 100001 has been answered." in body(by[BEN])
    shown = await show(env)
    assert shown["status"] == "answered"
    last = shown["articles"][-1]
    assert (last["direction"], last["automatic"], last["body_text"]) == (
        "out",
        True,
        "Treiber neu.",
    )
    assert last["note"] == "status new → answered"


async def test_closing_sets_closed_at_so_a_reply_reopens_with_notice(env: Env) -> None:
    """`ticket status N closed` closes; a reply within reopen_days reopens and says so."""
    await open_ticket(env)
    assert (await env.cli("ticket", "status", "100001", "closed")).returncode == 0
    closed = (await settle(env, 2))[1]
    assert "innerhalb von 14 Tagen auf diese E-Mail" in " ".join(body(closed).split())
    env.clock.advance(days=13)
    reply = make_mail(ANNA, f"AW: {TAG} Drucker", "Geht wieder nicht.\n")
    assert await env.send(reply) == (250, "2.0.0 Ok: ticket 100001")
    reopened = (await settle(env, 3))[2]
    assert "Wieder geöffnet" in str(reopened.message["Subject"])
    shown = await show(env)
    assert shown["status"] == "open"
    # The history (SPEC 7, 9.1): the CLI's change by ticketmail, the reopening by Anna.
    assert [(h["what"], h["from"], h["to"], h["by"]) for h in shown["history"]] == [
        ("status", "new", "closed", SUPPORT),
        ("status", "closed", "open", ANNA),
    ]
    assert all(h["at"].endswith("+00:00") for h in shown["history"])


async def test_customer_own_mail_changing_status_notifies_nobody(env: Env) -> None:
    """A customer's answer sets an answered ticket open again without any mail."""
    await open_ticket(env)
    assert (await env.cli("ticket", "status", "100001", "answered")).returncode == 0
    await settle(env, 2)
    answer = make_mail(BEN, f"AW: {TAG} Drucker", "Noch eine Frage.\n")
    assert await env.send(answer) == (250, "2.0.0 Ok: ticket 100001")
    assert (await show(env))["status"] == "open"
    await settle(env, 2)


async def test_status_exit_statuses(env: Env) -> None:
    """Unknown ticket: 1; bad status or number: 2; the same status again: 0, nothing sent."""
    missing = await env.cli("ticket", "status", "999", "closed")
    assert missing.returncode == 1
    assert "ticket 999 does not exist" in one_line(missing.stderr)
    assert (await env.cli("ticket", "status", "100001", "pending")).returncode == 2
    assert (await env.cli("ticket", "status", "abc", "closed")).returncode == 2
    await open_ticket(env)
    same = await env.cli("ticket", "status", "100001", "new")
    assert (same.returncode, same.stdout.strip()) == (
        0,
        "ticket 100001 is already new: nothing changed, nothing sent",
    )
    assert len(await env.cli_json("outbox", "list")) == 1
    assert len((await show(env))["articles"]) == 1
    assert (await show(env))["history"] == []
    # With a note, the note goes to the customer as an answer would; the status stays.
    noted = await env.cli("ticket", "status", "100001", "new", "--note", "Wir prüfen das.")
    assert noted.returncode == 0, noted.stderr
    sent = (await settle(env, 2))[1]
    assert body(sent).startswith("Wir prüfen das.\n")
    assert [e["kind"] for e in await env.cli_json("outbox", "list")][-1] == "agent_reply"
    assert ((await show(env))["status"], (await show(env))["history"]) == ("new", [])


async def test_status_notice_respects_rate_limit(env_factory: Any, sink: Any) -> None:
    """A status notice is automatic mail: over policy.max_auto_replies_per_hour it is held back."""
    env: Env = await env_factory(sink, policy={"max_auto_replies_per_hour": 1})
    await env.customer("10042", "Gymnasium Musterstadt")
    await env.user(ANNA, "10042", lang="de")
    await open_ticket(env)
    result = await env.cli("ticket", "status", "100001", "open")
    assert result.returncode == 0, result.stderr
    assert f"status_changed not sent to {ANNA}: rate_limit_address" in result.stdout
    assert (await show(env))["status"] == "open"
    await settle(env, 1)


# --- ticket reply --------------------------------------------------------------------------------


async def test_reply_from_file_stores_article_and_sends_attachment(
    env: Env, tmp_path: Path
) -> None:
    """`ticket reply --file --attach`: an outbound article, blobs stored, a threaded mail."""
    await open_ticket(env)
    await add_agent(env)
    text = write_text(tmp_path / "a.txt", "Guten Tag,\r\n\r\nanbei die Anleitung.\r\n")
    image = tmp_path / "bild.png"
    image.write_bytes(b"\x89PNG fake")
    result = await env.cli(
        "ticket", "reply", "#100001", "--agent", "MAX@stueber.de", "--file", str(text),
        "--attach", str(image), "--attach", str(text),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "ticket 100001: status new → answered",
        f"agent_reply queued for {ANNA} (de)",
    ]
    sent = (await settle(env, 2))[1]
    assert sent.rcpt_tos == [ANNA]
    assert str(sent.message["Subject"]) == f"{TAG} Drucker druckt nicht"
    assert sent.message["In-Reply-To"] == M1
    assert references(sent) == [M1]
    assert body(sent).startswith("Guten Tag,\n\nanbei die Anleitung.\n\nAnlagen: bild.png, a.txt")
    assert [(n, t) for n, t, _ in attachments(sent)] == [
        ("bild.png", "image/png"),
        ("a.txt", "text/plain"),
    ]
    last = (await show(env))["articles"][-1]
    assert (last["direction"], last["automatic"], last["from"]) == ("out", False, MAX)
    assert last["body_text"] == "Guten Tag,\n\nanbei die Anleitung.\n"
    png = last["attachments"][0]
    assert png["sha256"] == hashlib.sha256(b"\x89PNG fake").hexdigest()
    assert stored_blob(env.data_dir, png["sha256"]) == b"\x89PNG fake"


async def test_reply_from_stdin_with_status_closed(env: Env) -> None:
    """`ticket reply N --agent A - --status closed` reads standard input and closes the ticket."""
    await open_ticket(env)
    await add_agent(env)
    result = await cli_stdin(
        env, "Erledigt.\n", "ticket", "reply", "100001", "--agent", MAX, "-", "--status", "closed"
    )
    assert result.returncode == 0, result.stderr
    sent = (await settle(env, 2))[1]
    assert body(sent).startswith("Erledigt.\n\n-- \nMax Berger, Stueber Support\n")
    assert "Wir haben das Ticket damit abgeschlossen" in body(sent)
    shown = await show(env)
    assert shown["status"] == "closed"
    assert [(h["what"], h["from"], h["to"], h["by"]) for h in shown["history"]] == [
        ("status", "new", "closed", MAX)
    ]


async def test_reply_exit_statuses(env: Env, tmp_path: Path) -> None:
    """Unknown agent or ticket: exit 1, one line; missing, doubled or empty text: exit 2."""
    await open_ticket(env)
    await add_agent(env)
    text = write_text(tmp_path / "t.txt", "Hallo\n")
    empty = write_text(tmp_path / "e.txt", " \n\n")

    async def reply(*args: str) -> Any:
        return await env.cli("ticket", "reply", *args)

    unknown_agent = await reply("100001", "--agent", "eva@stueber.de", "--file", str(text))
    assert unknown_agent.returncode == 1
    assert "agent eva@stueber.de is not registered" in one_line(unknown_agent.stderr)
    customer = await reply("100001", "--agent", ANNA, "--file", str(text))
    assert customer.returncode == 1
    unknown_ticket = await reply("999", "--agent", MAX, "--file", str(text))
    assert unknown_ticket.returncode == 1
    assert "ticket 999 does not exist" in one_line(unknown_ticket.stderr)

    for args, message in [
        (("100001", "--agent", MAX), "--file F or from -"),
        (("100001", "--agent", MAX, "--file", str(text), "-"), "--file F or from -"),
        (("100001", "--agent", MAX, "--file", str(empty)), "is empty"),
        (("100001", "--agent", MAX, "--file", str(tmp_path / "no.txt")), "file not found"),
        (("100001", "--agent", MAX, "--file", str(text), "--attach", "/no/such"), "not found"),
        (("100001", "--agent", "max", "--file", str(text)), "not a mail address"),
    ]:
        result = await reply(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in one_line(result.stderr)
    for args in [
        ("100001", "--agent", MAX, "--file", str(text), "--status", "new"),
        ("100001", "--file", str(text)),
    ]:
        assert (await reply(*args)).returncode == 2
    assert len((await show(env))["articles"]) == 1
    assert len(await env.cli_json("outbox", "list")) == 1


async def test_reply_with_nobody_to_tell_is_refused_whole(env: Env, tmp_path: Path) -> None:
    """A reply to a ticket whose people are all unregistered exits 1 and stores nothing."""
    await open_ticket(env)
    await add_agent(env)
    assert (await env.cli("user", "remove", ANNA)).returncode == 0
    text = write_text(tmp_path / "t.txt", "Hallo\n")
    result = await env.cli("ticket", "reply", "100001", "--agent", MAX, "--file", str(text))
    assert result.returncode == 1
    assert "nobody to send the reply to" in one_line(result.stderr)
    shown = await show(env)
    assert (shown["status"], len(shown["articles"])) == ("new", 1)


# --- ticket list -------------------------------------------------------------------------------

SUMMARY_KEYS = {
    "number", "subject", "status", "customer", "requester", "created_at", "updated_at", "articles",
}  # fmt: skip


async def test_list_newest_first_with_filters_and_spec_json(env: Env) -> None:
    """Newest first; --status, --customer, --since filter; --json keeps the SPEC 7 shape."""
    await env.customer("20001", "Realschule Beispielstadt")
    await env.user("carl@real.example", "20001", lang="de")
    await open_ticket(env)  # 100001, day 0
    env.clock.advance(days=3)
    assert (await env.send(make_mail(BEN, "Beamer")))[1] == "2.0.0 Ok: ticket 100002"
    await add_agent(env)  # closes 100002 by mail: at the daemon's (test) clock
    closing = make_mail(MAX, "[Ticket#100002] Beamer", "#status closed\n")
    assert await env.send(closing) == (250, "2.0.0 Ok: ticket 100002")
    env.clock.advance(days=3)
    assert (await env.send(make_mail("carl@real.example", "WLAN")))[1] == "2.0.0 Ok: ticket 100003"
    # Activity on the oldest ticket does not move it up: the list is by age.
    assert (await env.send(make_mail(ANNA, f"AW: {TAG} x", "Noch da?\n")))[0] == 250

    listed = await env.cli_json("ticket", "list")
    assert [t["number"] for t in listed] == ["100003", "100002", "100001"]
    assert all(set(t) == SUMMARY_KEYS for t in listed)
    first = listed[-1]
    assert (first["customer"], first["requester"], first["articles"]) == ("10042", ANNA, 2)

    async def numbers(*args: str) -> list[str]:
        return [t["number"] for t in await env.cli_json("ticket", "list", *args)]

    assert await numbers("--status", "closed") == ["100002"]
    assert await numbers("--customer", "10042") == ["100002", "100001"]
    assert await numbers("--customer", "10042", "--status", "new") == ["100001"]
    day6 = (env.clock() - timedelta(days=0)).date().isoformat()
    day3 = (env.clock() - timedelta(days=3)).date().isoformat()
    assert await numbers("--since", day6) == ["100003", "100001"]
    assert len(await numbers("--since", day3)) == 3
    assert await numbers("--since", "2999-01-01") == []

    table = await env.cli("ticket", "list")
    header, *rows = table.stdout.splitlines()
    assert header.split() == [
        "NUMBER", "STATUS", "CUSTOMER", "INSTITUTION", "REQUESTER", "ARTICLES", "LAST_ACTIVITY",
        "SUBJECT",
    ]  # fmt: skip
    assert rows[0].startswith("100003")
    assert "Realschule Beispielstadt" in rows[0]


@pytest.mark.parametrize("since", ["22.11.2026", "2026-13-01", "yesterday", ""])
async def test_list_since_needs_a_date(env: Env, since: str) -> None:
    """`ticket list --since` takes YYYY-MM-DD only; anything else exits 2 with one line."""
    result = await env.cli("ticket", "list", "--since", since)
    assert result.returncode == 2
    assert "--since" in one_line(result.stderr)


# --- the reopen acknowledgement (pure) --------------------------------------------------------


@pytest.mark.parametrize(
    ("automatic", "recent", "notice", "suppressed"),
    [
        (False, 0, "ticket_reopened", None),
        (False, 10, None, "rate_limit_address"),
        (True, 0, None, None),
    ],
)
def test_reopening_mail_is_acknowledged_to_its_writer_only_when_allowed(
    automatic: bool, recent: int, notice: str | None, suppressed: str | None
) -> None:
    """A person's mail reopening a closed ticket gets ticket_reopened, within the rate limits."""
    now = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    customer = Customer("10042", "Gymnasium", date(2027, 1, 1), None)
    closed = TicketRef(100001, "10042", "closed", now - timedelta(days=1), ANNA, "Drucker", 0)
    facts = Facts(
        now=now,
        sender=User(ANNA, "Anna", "de", customer),
        tagged=(closed,),
        referenced=(),
        recent_auto_replies_to_sender=recent,
    )
    cls = Classification(bounce=False, own_loop=False, automatic=automatic, reasons=())
    policy = RoutePolicy(
        own_addresses=frozenset({"support@stueber.de"}), loop_token="support@stueber.de",
        subject_tag="Ticket", reopen_days=14, acknowledge_followups=False,
        unknown_sender="reject", no_contract="reply", max_auto_replies_per_hour=10,
        max_auto_replies_per_ticket_per_hour=5,
    )  # fmt: skip
    mail = parse_mail(b"From: anna@schule.example\r\nSubject: [Ticket#100001] x\r\n\r\nText\r\n")
    decision = decide(mail, facts, cls, policy)
    assert decision.action is Action.APPEND
    assert (decision.notice, decision.suppressed) == (notice, suppressed)
    assert decision.new_status == (None if automatic else "open")
