"""No loops: bounces mark our mail and block the address, rate limits hold, own mail is ignored."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import SUPPORT, Env, Sink, all_mail_out, make_mail
from structlog.testing import capture_logs


def dsn(original_message_id: str, *, status: str = "5.1.1", action: str = "failed") -> bytes:
    """A standard delivery status notification (RFC 3464) for one of our mails."""
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.schule.example>\r\n"
        f"To: {SUPPORT}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <dsn-1@mx.schule.example>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you ...\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.schule.example\r\n\r\n"
        "Final-Recipient: rfc822; anna@schule.example\r\n"
        f"Action: {action}\r\nStatus: {status}\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <anna@schule.example>: mailbox unknown\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: Stueber Support <{SUPPORT}>\r\nTo: anna@schule.example\r\n"
        f"Message-ID: {original_message_id}\r\nSubject: [Ticket#100001] Drucker\r\n"
        "--B--\r\n"
    ).encode()


async def _outbox(env: Env) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = await env.cli_json("outbox", "list")
    return entries


async def test_permanent_bounce_marks_outbox_and_blocks_address(env: Env) -> None:
    """A 5.1.1 bounce of our confirmation marks it bounced and stops automatic mail for days."""
    assert env.sink is not None
    assert (await env.send(make_mail("anna@schule.example", "Drucker")))[0] == 250
    (confirmation,) = await env.sink.wait_for(1)
    our_id = str(confirmation.message["Message-ID"])

    code, text = await env.send(dsn(our_id), mail_from="")
    assert (code, text) == (250, "2.0.0 Ok")
    entries = await _outbox(env)
    assert entries[0]["status"] == "bounced"
    assert "mailbox unknown" in str(entries[0]["last_error"])
    assert len(await env.cli_json("ticket", "list")) == 1

    # Blocked: a new ticket opens, but no confirmation is queued.
    code, text = await env.send(make_mail("anna@schule.example", "Beamer"))
    assert (code, text) == (250, "2.0.0 Ok: ticket 100002")
    assert len(await _outbox(env)) == 1

    env.clock.advance(days=8)
    code, text = await env.send(make_mail("anna@schule.example", "Scanner"))
    assert (code, text) == (250, "2.0.0 Ok: ticket 100003")
    await env.sink.wait_for(2)
    assert len(await _outbox(env)) == 2


async def test_delay_notice_changes_nothing(env: Env) -> None:
    """A 'delayed' DSN opens nothing, marks nothing and blocks nobody."""
    assert env.sink is not None
    await env.send(make_mail("anna@schule.example", "Drucker"))
    (confirmation,) = await env.sink.wait_for(1)
    our_id = str(confirmation.message["Message-ID"])
    code, _ = await env.send(dsn(our_id, status="4.4.1", action="delayed"), mail_from="")
    assert code == 250
    assert [e["status"] for e in await _outbox(env)] == ["sent"]
    await env.send(make_mail("anna@schule.example", "Beamer"))
    await env.sink.wait_for(2)


async def test_auto_replies_per_address_are_rate_limited(env_factory: object, sink: object) -> None:
    """At most policy.max_auto_replies_per_hour confirmations go to one address per hour."""
    e: Env = await env_factory(sink, policy={"max_auto_replies_per_hour": 2})  # type: ignore[operator]
    await e.customer("10042", "Gymnasium Musterstadt")
    await e.user("anna@schule.example", "10042")
    for i in range(4):
        code, text = await e.send(make_mail("anna@schule.example", f"Frage {i}"))
        assert (code, text) == (250, f"2.0.0 Ok: ticket {100001 + i}")
    assert len(await _outbox(e)) == 2
    e.clock.advance(hours=1, minutes=1)
    await e.send(make_mail("anna@schule.example", "Frage 5"))
    assert len(await _outbox(e)) == 3


async def test_own_mail_is_never_a_ticket_nor_answered(env: Env) -> None:
    """Mail from our own address, with our X-Loop, or carrying our Message-ID opens nothing."""
    assert env.sink is not None
    await env.send(make_mail("anna@schule.example", "Drucker"))
    (confirmation,) = await env.sink.wait_for(1)
    looped = [
        make_mail(f"Support <{SUPPORT}>", "Echo"),
        make_mail("anna@schule.example", "Echo", headers={"X-Loop": SUPPORT}),
        make_mail(
            "anna@schule.example", "Echo", message_id=str(confirmation.message["Message-ID"])
        ),
    ]
    for mail in looped:
        code, text = await env.send(mail, mail_from="anna@schule.example")
        assert (code, text) == (250, "2.0.0 Ok")
    assert len(await env.cli_json("ticket", "list")) == 1
    assert len(await _outbox(env)) == 1
    await all_mail_out(env, 1)


async def test_german_out_of_office_is_stored_silently(env: Env) -> None:
    """An 'Abwesenheitsnotiz' on a ticket is stored flagged automatic and never answered."""
    await env.send(make_mail("anna@schule.example", "Drucker"))
    ooo = make_mail(
        "ben@schule.example",
        "Abwesenheitsnotiz: [Ticket#100001] Drucker",
        "Ich bin bis zum 30.11. nicht im Haus.\n",
        headers={"Auto-Submitted": "auto-replied", "X-Auto-Response-Suppress": "All"},
    )
    code, text = await env.send(ooo)
    assert (code, text) == (250, "2.0.0 Ok: ticket 100001")
    shown = await env.cli_json("ticket", "show", "100001")
    assert [a["automatic"] for a in shown["articles"]] == [False, True]
    assert shown["status"] == "new"
    assert len(await _outbox(env)) == 1


# --- out-of-office replies of real clients, and the per-ticket cap ------------------------------

# (name, envelope sender, subject with {tag} for "[Ticket#100001]", header fields) as the
# clients write them: Exchange/Outlook (no Auto-Submitted, MAIL FROM:<>), Gmail's vacation
# responder (the subject the user typed, threaded by In-Reply-To), Zimbra.
OUT_OF_OFFICE = {
    "exchange-de": (
        "",
        "Automatische Antwort: {tag} Drucker druckt nicht",
        {"X-Auto-Response-Suppress": "All", "Thread-Topic": "Drucker druckt nicht"},
    ),
    "exchange-en": (
        "anna@schule.example",
        "Automatic reply: {tag} Drucker druckt nicht",
        {"X-Auto-Response-Suppress": "All"},
    ),
    "gmail-vacation": (
        "anna@schule.example",
        "Ich bin im Urlaub",
        {"Auto-Submitted": "auto-replied", "Precedence": "bulk"},
    ),
    "zimbra": (
        "anna@schule.example",
        "Re: {tag} Drucker druckt nicht",
        {"Auto-Submitted": "auto-replied (zimbra; vacation)"},
    ),
}


@pytest.mark.parametrize("client", sorted(OUT_OF_OFFICE))
async def test_out_of_office_of_real_clients_is_stored_silently(
    client: str, env_factory: Callable[..., Any], sink: Sink
) -> None:
    """An Exchange, Gmail or Zimbra out-of-office on a ticket: kept automatic, status as it was."""
    # Follow-ups are acknowledged here, so a reply taken for a person's would send a mail.
    e: Env = await env_factory(sink, tickets={"acknowledge_followups": True})
    await e.customer("10042", "Gymnasium Musterstadt")
    await e.user("anna@schule.example", "10042", name="Anna Müller", lang="de")
    assert (await e.send(make_mail("anna@schule.example", "Drucker druckt nicht")))[0] == 250
    (confirmation,) = await sink.wait_for(1)
    assert e.daemon.store is not None
    # A person's reply would reopen an answered ticket; an out-of-office must not.
    await e.daemon.store.set_status(100001, "answered", now=e.clock())

    envelope, subject, headers = OUT_OF_OFFICE[client]
    ours = str(confirmation.message["Message-ID"])
    reply = make_mail(
        "Anna Müller <anna@schule.example>",
        subject.format(tag="[Ticket#100001]"),
        "Ich bin bis zum 30.11. nicht im Haus. In dringenden Fällen: sekretariat@schule.example\n",
        headers={**headers, "In-Reply-To": ours, "References": ours},
    )
    assert await e.send(reply, mail_from=envelope) == (250, "2.0.0 Ok: ticket 100001")

    shown = await e.cli_json("ticket", "show", "100001")
    assert [a["automatic"] for a in shown["articles"]] == [False, True]
    assert shown["status"] == "answered"
    assert len(await e.cli_json("ticket", "list")) == 1
    assert len(await _outbox(e)) == 1
    await all_mail_out(e, 1)


async def test_per_ticket_cap_suppresses_notices_and_logs_it(
    env_factory: Callable[..., Any], sink: Sink
) -> None:
    """Over policy.max_auto_replies_per_ticket_per_hour a ticket's notices are held, and logged."""
    e: Env = await env_factory(
        sink,
        tickets={"acknowledge_followups": True},
        policy={"max_auto_replies_per_hour": 100, "max_auto_replies_per_ticket_per_hour": 2},
    )
    await e.customer("10042", "Gymnasium Musterstadt")
    await e.user("anna@schule.example", "10042")
    await e.user("ben@schule.example", "10042")
    with capture_logs() as events:
        assert (await e.send(make_mail("anna@schule.example", "Drucker")))[0] == 250
        follow_ups = [
            ("anna@schule.example", "noch eine Frage"),  # acknowledged: 2 mails for the ticket
            ("anna@schule.example", "und noch eine"),  # over the cap
            ("ben@schule.example", "ich auch"),  # another address, the same ticket: over it
        ]
        for sender, text in follow_ups:
            mail = make_mail(sender, "AW: [Ticket#100001] Drucker", f"{text}\n")
            assert await e.send(mail) == (250, "2.0.0 Ok: ticket 100001")
    suppressed = [ev for ev in events if ev["event"] == "notice_suppressed"]
    assert [(ev["reason"], ev["ticket"], ev["recipient"]) for ev in suppressed] == [
        ("rate_limit_ticket", 100001, "anna@schule.example"),
        ("rate_limit_ticket", 100001, "ben@schule.example"),
    ]
    assert len(await _outbox(e)) == 2
    await sink.wait_for(2)
    await all_mail_out(e, 2)
    assert len((await e.cli_json("ticket", "show", "100001"))["articles"]) == 4

    # A new hour: the ticket gets its notices again.
    e.clock.advance(hours=1, minutes=1)
    mail = make_mail("ben@schule.example", "AW: [Ticket#100001] Drucker", "wieder da\n")
    assert await e.send(mail) == (250, "2.0.0 Ok: ticket 100001")
    assert len(await _outbox(e)) == 3
