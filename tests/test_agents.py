"""Agents: the `agent` commands, and an agent's mail to support answering a ticket."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest
from conftest import SUPPORT, Env, make_mail
from desk_support import (
    ANNA,
    BEN,
    M1,
    MAX,
    TAG,
    add_agent,
    attachments,
    body,
    one_line,
    open_ticket,
    other_institution,
    references,
    settle,
)

from ticketmail.intake.route import (
    Action,
    Classification,
    Facts,
    RoutePolicy,
    decide,
    read_status_command,
)
from ticketmail.mail.parse import ParsedMail, parse_mail
from ticketmail.models import Agent, TicketRef


def agent_mail(
    subject: str, text: str, *, message_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> EmailMessage:  # fmt: skip
    return make_mail(f"Max Berger <{MAX}>", subject, text, message_id=message_id, headers=headers)


# --- agent add / list / remove -------------------------------------------------------------


async def test_agent_add_list_remove_with_json(env: Env) -> None:
    """`agent add` saves (and renames), `agent list --json` shows, `agent remove` deletes."""
    added = await env.cli("agent", "add", "Max@Stueber.DE", "--name", "Max Berger")
    assert (added.returncode, added.stdout.strip()) == (0, f"agent {MAX} added")
    renamed = await env.cli("agent", "add", MAX, "--name", "Max  B.")
    assert (renamed.returncode, renamed.stdout.strip()) == (0, f"agent {MAX} renamed")
    await add_agent(env, "eva@stueber.de", "Eva Koch")

    listed = await env.cli_json("agent", "list")
    assert [(a["email"], a["name"]) for a in listed] == [
        ("eva@stueber.de", "Eva Koch"),
        (MAX, "Max B."),
    ]
    assert all(datetime.fromisoformat(a["created_at"]).tzinfo is UTC for a in listed)
    table = await env.cli("agent", "list")
    assert table.stdout.splitlines()[0].split() == ["EMAIL", "NAME", "ADDED"]

    removed = await env.cli("agent", "remove", MAX)
    assert (removed.returncode, removed.stdout.strip()) == (0, f"agent {MAX} removed")
    assert [a["email"] for a in await env.cli_json("agent", "list")] == ["eva@stueber.de"]


async def test_agent_commands_exit_statuses(env: Env) -> None:
    """Bad input exits 2; a user's, ticketmail's own or an unknown address exits 1, one line."""
    bad = await env.cli("agent", "add", "not-an-address", "--name", "X")
    assert bad.returncode == 2
    assert "is not a mail address" in one_line(bad.stderr)
    assert (await env.cli("agent", "add", MAX)).returncode == 2  # --name is required
    assert (await env.cli("agent", "add", MAX, "--name", "  ")).returncode == 2

    user = await env.cli("agent", "add", ANNA, "--name", "Anna")
    assert user.returncode == 1
    assert "customer user" in one_line(user.stderr)
    own = await env.cli("agent", "add", SUPPORT, "--name", "Support")
    assert own.returncode == 1
    assert "own address" in one_line(own.stderr)

    missing = await env.cli("agent", "remove", MAX)
    assert missing.returncode == 1
    assert "does not exist" in one_line(missing.stderr)
    assert await env.cli_json("agent", "list") == []


async def test_agent_address_cannot_become_a_customer_user(env: Env) -> None:
    """`user add` refuses an agent's address (exit 1): an agent is not a customer user."""
    await add_agent(env)
    result = await env.cli("user", "add", MAX, "--customer", "10042")
    assert result.returncode == 1
    assert "agent" in one_line(result.stderr)
    assert MAX not in [u["email"] for u in await env.cli_json("user", "list")]


# --- an agent's mail ------------------------------------------------------------------------


async def test_agent_mail_without_tag_is_refused_and_nothing_kept(env: Env) -> None:
    """An agent's mail without a ticket tag gets 550 5.7.1 saying why; nothing is stored."""
    await add_agent(env)
    code, text = await env.send(agent_mail("Drucker bei Schule X", "Bitte Ticket anlegen.\n"))
    assert code == 550
    assert text.startswith("5.7.1 ")
    assert "[Ticket#100001]" in text
    assert "cannot open one by mail" in text
    assert await env.cli_json("ticket", "list") == []
    assert await env.cli_json("outbox", "list") == []
    blobs = env.data_dir / "blobs"
    assert not blobs.exists() or not [p for p in blobs.rglob("*") if p.is_file()]


async def test_agent_mail_is_never_refused_as_unregistered(env: Env) -> None:
    """An agent is not a registered user, yet a tagged mail of theirs is accepted (250)."""
    await open_ticket(env)
    await add_agent(env)
    code, text = await env.send(agent_mail(f"AW: {TAG} Drucker", "Ist erledigt.\n"))
    assert (code, text) == (250, "2.0.0 Ok: ticket 100001")
    assert len(await env.cli_json("ticket", "list")) == 1


@pytest.mark.parametrize(
    ("subject", "text", "expected"),
    [
        ("[Ticket#999999] Drucker", "Erledigt.\n", "does not exist"),
        (f"{TAG} Drucker", "#status erledigt\nErledigt.\n", "'erledigt'"),
        (f"{TAG} Drucker", "\n\n", "Nothing to send"),
    ],
)
async def test_agent_mail_refused_for_unknown_ticket_bad_status_or_nothing(
    env: Env, subject: str, text: str, expected: str
) -> None:
    """Unknown ticket, unknown #status word or an empty mail: 550 5.7.1 naming the problem."""
    await open_ticket(env)
    await add_agent(env)
    code, reply = await env.send(agent_mail(subject, text))
    assert code == 550
    assert reply.startswith("5.7.1 ")
    assert expected in reply
    shown = await env.cli_json("ticket", "show", "100001")
    assert (shown["status"], len(shown["articles"])) == ("new", 1)
    assert len(await env.cli_json("outbox", "list")) == 1


async def test_agent_mail_reply_strips_history_and_forwards_attachment(env: Env) -> None:
    """The customer gets the agent's new text and files; the ticket keeps the whole mail."""
    await open_ticket(env)
    await add_agent(env)
    mail = agent_mail(
        f"AW: {TAG} Drucker druckt nicht",
        "Bitte spielen Sie das Update ein.\n\nMax\n\n"
        "-----Ursprüngliche Nachricht-----\nVon: Anna\nGeheimes Zitat\n",
        message_id="<max-1@stueber.de>",
    )
    mail.add_attachment(b"update", maintype="application", subtype="zip", filename="update.zip")
    assert await env.send(mail) == (250, "2.0.0 Ok: ticket 100001")
    sent = (await settle(env, 2))[1]
    assert sent.rcpt_tos == [ANNA]
    assert "Bitte spielen Sie das Update ein." in body(sent)
    assert "Geheimes Zitat" not in body(sent)
    assert "Ursprüngliche Nachricht" not in body(sent)
    assert attachments(sent) == [("update.zip", "application/zip", b"update")]
    assert sent.message["In-Reply-To"] == M1
    assert references(sent) == [M1]
    shown = await env.cli_json("ticket", "show", "100001")
    assert shown["status"] == "answered", "a reply without #status leaves it answered"
    last = shown["articles"][-1]
    assert last["direction"] == "out"
    assert "Geheimes Zitat" in last["body_text"]
    assert "Geheimes Zitat" not in last["reply_text"]
    assert [a["filename"] for a in last["attachments"]] == ["update.zip"]


async def test_agent_mail_with_only_a_status_line_notifies_like_a_status_change(env: Env) -> None:
    """`#status closed` alone closes the ticket and sends status_changed, not a reply."""
    await open_ticket(env)
    await add_agent(env)
    assert await env.send(agent_mail(f"{TAG} Drucker", "#status closed\n")) == (
        250,
        "2.0.0 Ok: ticket 100001",
    )
    sent = (await settle(env, 2))[1]
    assert sent.rcpt_tos == [ANNA]
    assert sent.message["Auto-Submitted"] == "auto-generated"
    assert "Statusänderung: abgeschlossen" in str(sent.message["Subject"])
    outbox = await env.cli_json("outbox", "list")
    assert [e["kind"] for e in outbox] == ["ticket_created", "status_changed"]
    assert (await env.cli_json("ticket", "show", "100001"))["status"] == "closed"


async def test_agent_out_of_office_is_dropped_silently(env: Env) -> None:
    """An agent's automatic mail carrying a tag is accepted, sends nothing, changes nothing."""
    await open_ticket(env)
    await add_agent(env)
    ooo = agent_mail(
        f"Abwesenheitsnotiz: {TAG} Drucker",
        "Ich bin bis Montag nicht im Haus.\n",
        headers={"Auto-Submitted": "auto-replied"},
    )
    assert await env.send(ooo) == (250, "2.0.0 Ok")
    shown = await env.cli_json("ticket", "show", "100001")
    assert (shown["status"], len(shown["articles"])) == ("new", 1)
    await settle(env, 1)


async def test_agent_mail_delivered_twice_is_sent_once(env: Env) -> None:
    """An MTA retry of an agent's mail is answered alike and mails the customer once."""
    await open_ticket(env)
    await add_agent(env)
    mail = agent_mail(f"{TAG} Drucker", "Erledigt.\n", message_id="<max-2@stueber.de>")
    first = await env.send(mail)
    second = await env.send(mail)
    assert first == second == (250, "2.0.0 Ok: ticket 100001")
    await settle(env, 2)
    assert len((await env.cli_json("ticket", "show", "100001"))["articles"]) == 2


async def test_agent_answers_any_institutions_ticket_but_customers_only_their_own(
    env: Env,
) -> None:
    """An agent's tag reaches another institution's ticket; the reply goes to its people only."""
    await other_institution(env)
    carl = make_mail("carl@real.example", "Beamer flackert")
    assert await env.send(carl) == (250, "2.0.0 Ok: ticket 100001")
    await add_agent(env)
    assert (await env.send(agent_mail(f"{TAG} Beamer", "Neue Lampe ist unterwegs.\n")))[0] == 250
    sent = (await settle(env, 2))[1]
    assert sent.rcpt_tos == ["carl@real.example"]
    assert BEN not in sent.raw.decode()
    assert ANNA not in sent.raw.decode()


# --- the pure rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "status", "valid", "rest"),
    [
        ("#status closed\nDanke.\n", "closed", True, "Danke.\n"),
        ("\n  #Status  Answered  \nText", "answered", True, "\nText"),
        ("#status geschlossen\n", "closed", True, ""),
        ("#status offen", "open", True, ""),
        ("#status\nText", None, False, "Text"),
        ("#status pending\nText", None, False, "Text"),
        ("Text\n#status closed\n", None, True, "Text\n#status closed\n"),
        ("#statusclosed\n", None, True, "#statusclosed\n"),
    ],
)
def test_status_command_is_read_from_the_first_line_only(
    text: str, status: str | None, valid: bool, rest: str
) -> None:
    """`#status WORD` counts only as the first non-blank line; German words are understood."""
    command = read_status_command(text)
    assert (command.status, command.valid) == (status, valid)
    if valid:
        assert command.rest == rest


POLICY = RoutePolicy(
    own_addresses=frozenset({SUPPORT}),
    loop_token=SUPPORT,
    subject_tag="Ticket",
    reopen_days=14,
    acknowledge_followups=False,
    unknown_sender="reject",
    no_contract="reply",
    max_auto_replies_per_hour=10,
    max_auto_replies_per_ticket_per_hour=5,
)
NORMAL = Classification(bounce=False, own_loop=False, automatic=False, reasons=())
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def _facts(tagged: bool) -> Facts:
    ref = TicketRef(100001, "10042", "open", None, ANNA, "Drucker", 0)
    return Facts(
        now=NOW,
        sender=None,
        tagged=(ref,) if tagged else (),
        referenced=(),
        recent_auto_replies_to_sender=0,
        agent=Agent(MAX, "Max"),
    )


def _mail(subject: str, text: str) -> ParsedMail:
    return parse_mail(
        f"From: {MAX}\r\nTo: {SUPPORT}\r\nSubject: {subject}\r\nMessage-ID: <a@b>\r\n\r\n"
        f"{text}".encode()
    )


@pytest.mark.parametrize(
    ("subject", "text", "tagged", "action", "reason", "status"),
    [
        (f"{TAG} x", "Text\n", True, Action.AGENT_REPLY, "agent_reply", "answered"),
        (f"{TAG} x", "#status open\nText\n", True, Action.AGENT_REPLY, "agent_reply", "open"),
        (f"{TAG} x", "#status closed\n", True, Action.AGENT_REPLY, "agent_reply", "closed"),
        ("no tag", "Text\n", False, Action.REJECT, "agent_no_tag", None),
        (f"{TAG} x", "Text\n", False, Action.REJECT, "agent_unknown_ticket", None),
        (f"{TAG} x", "#status zu\nText\n", True, Action.REJECT, "agent_bad_status", None),
        (f"{TAG} x", "> only a quote\n", True, Action.REJECT, "agent_empty", None),
    ],
)
def test_agent_decisions(
    subject: str, text: str, tagged: bool, action: Action, reason: str, status: str | None
) -> None:
    """An agent's mail: a reply to the tagged ticket, or refused; it never opens a ticket."""
    mail = _mail(subject, text)
    decision = decide(mail, _facts(tagged), NORMAL, POLICY)
    assert (decision.action, decision.reason, decision.new_status) == (action, reason, status)
    assert decision.notice is None


def test_agent_decision_sends_no_quoted_history() -> None:
    """What the customer gets from an agent's mail is extract_reply of the text below #status."""
    mail = _mail(
        f"{TAG} x", "#status closed\nNeu.\n\nAm 1.1.2026 schrieb A <a@b.example>:\n> alt\n"
    )
    decision = decide(mail, _facts(True), NORMAL, POLICY)
    assert decision.text == "Neu.\n"


def test_agent_automatic_mail_is_discarded() -> None:
    """An agent's out-of-office mail is dropped: it reaches no customer."""
    automatic = Classification(bounce=False, own_loop=False, automatic=True, reasons=("x",))
    decision = decide(_mail(f"{TAG} x", "Abwesend\n"), _facts(True), automatic, POLICY)
    assert (decision.action, decision.reason) == (Action.DISCARD, "agent_automatic")


def test_agent_json_shape() -> None:
    """`agent list --json` objects carry email, name and created_at."""
    from ticketmail.cli.agents import agent_json

    shaped = agent_json(Agent(MAX, "Max", NOW))
    assert json.loads(json.dumps(shaped)) == {
        "email": MAX,
        "name": "Max",
        "created_at": "2026-11-22T10:00:00+00:00",
    }
