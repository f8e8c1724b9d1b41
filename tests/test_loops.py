"""No loops: bounces mark our mail and block the address, rate limits hold, own mail is ignored."""

from __future__ import annotations

import asyncio

from conftest import SUPPORT, Env, make_mail


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
    await asyncio.sleep(0.5)
    assert len(env.sink.received) == 1


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
