"""End-to-end smoke: one mail in, one ticket, one confirmation at the sink."""

from __future__ import annotations

from conftest import Env, make_mail


async def test_registered_user_opens_ticket_and_gets_confirmation(env: Env) -> None:
    """A registered user's mail opens a ticket, answered 250 with its number, confirmed by mail."""
    code, text = await env.send(make_mail("Anna <anna@schule.example>", "Drucker"))
    assert (code, text) == (250, "2.0.0 Ok: ticket 100001")
    assert env.sink is not None
    received = await env.sink.wait_for(1)
    assert received[0].rcpt_tos == ["anna@schule.example"]
    assert "[Ticket#100001]" in str(received[0].message["Subject"])
    shown = await env.cli_json("ticket", "show", "100001")
    assert shown["articles"][0]["from"] == "anna@schule.example"


async def test_parse_defects_are_shown_as_parse_flags(env: Env) -> None:
    """A structurally broken mail is kept, and ticket show names what was wrong with it."""
    raw = (
        b"From: anna@schule.example\r\nTo: support@stueber.de\r\nSubject: Kaputt\r\n"
        b"Message-ID: <broken@schule.example>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="XYZ"\r\n\r\n'
        b"--XYZ\r\nContent-Type: text/plain\r\n\r\nDer Text.\r\n"
    )
    code, text = await env.send(raw, mail_from="anna@schule.example")
    assert (code, text) == (250, "2.0.0 Ok: ticket 100001")
    shown = await env.cli_json("ticket", "show", "100001")
    article = shown["articles"][0]
    assert article["body_text"] == "Der Text.\n"
    assert "CloseBoundaryNotFoundDefect" in article["parse_flags"]


async def test_huge_subject_is_kept_on_the_article_and_bounded_on_the_ticket(env: Env) -> None:
    """A 100 KB subject is stored whole on the article; the ticket and its mails carry 200 chars."""
    subject = "Sehr langer Betreff " * 5000
    code, text = await env.send(make_mail("anna@schule.example", subject))
    assert (code, text) == (250, "2.0.0 Ok: ticket 100001")
    shown = await env.cli_json("ticket", "show", "100001")
    assert len(shown["subject"]) == 200
    assert shown["subject"].endswith("…")
    assert shown["articles"][0]["subject"] == subject.strip()
    assert env.sink is not None
    (confirmation,) = await env.sink.wait_for(1)
    assert len(str(confirmation.message["Subject"])) < 230
