"""Sender trust: only our MTA's topmost Authentication-Results counts; refuse or hold the rest."""

from __future__ import annotations

import pytest
from conftest import Env, Sink, make_mail

from ticketmail.mail.authres import verify_sender
from ticketmail.mail.parse import parse_mail

OURS = "mx.stueber.de"


def mail_with(*results: str, sender: str = "anna@schule.example") -> bytes:
    head = "".join(f"Authentication-Results: {r}\r\n" for r in results)
    return (
        f"{head}From: Anna <{sender}>\r\nTo: support@stueber.de\r\nSubject: Hilfe\r\n"
        "Message-ID: <auth-1@schule.example>\r\n\r\nText\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("results", "trusted"),
    [
        ((f"{OURS}; dmarc=pass header.from=schule.example",), True),
        ((f"{OURS}; dkim=pass header.d=schule.example; spf=fail",), True),
        ((f"{OURS}; dkim=pass header.d=mail.schule.example",), True),
        ((f"{OURS}; spf=pass smtp.mailfrom=bounce@schule.example",), True),
        ((f"{OURS} 1; spf=pass (sender ok) smtp.mailfrom=schule.example",), True),
        ((f"{OURS}; dkim=pass header.d=evil.example",), False),
        ((f"{OURS}; spf=pass smtp.mailfrom=evil.example; dmarc=fail",), False),
        ((f"{OURS}; dmarc=none",), False),
        (("other.mx; dmarc=pass",), False),
        ((f"{OURS}; dmarc=fail", f"{OURS}; dmarc=pass"), False),
        (("evil.example; dmarc=pass", f"{OURS}; dkim=pass header.d=schule.example"), True),
        ((), False),
    ],
)
def test_verdict_uses_only_our_topmost_header(results: tuple[str, ...], trusted: bool) -> None:
    """DMARC pass or aligned DKIM/SPF pass in our MTA's topmost header; nothing else counts."""
    verdict = verify_sender(parse_mail(mail_with(*results)), authserv_id=OURS)
    assert verdict.trusted is trusted, verdict.reason


async def _env(env_factory: object, sink: Sink, unverified: str) -> Env:
    e: Env = await env_factory(  # type: ignore[operator]
        sink,
        smtp={"authserv_id": OURS},
        policy={"sender_auth": "authres", "unverified": unverified},
    )
    await e.customer("10042", "Gymnasium Musterstadt")
    await e.user("anna@schule.example", "10042", lang="de")
    return e


async def test_unverified_sender_is_refused(env_factory: object, sink: Sink) -> None:
    """With sender_auth = authres, a forged From: is refused 550 5.7.1 in two languages."""
    e = await _env(env_factory, sink, "reject")
    code, text = await e.send(mail_with("other.mx; dmarc=pass"), mail_from="x@evil.example")
    assert code == 550
    assert text.startswith("5.7.1")
    assert "nicht verifiziert" in text
    code, text = await e.send(mail_with(f"{OURS}; dmarc=pass"), mail_from="x@schule.example")
    assert (code, text) == (250, "2.0.0 Ok: ticket 100001")


async def test_held_mail_opens_nothing_until_released(env_factory: object, sink: Sink) -> None:
    """unverified = hold keeps the mail: nothing opened or sent; release makes the ticket."""
    e = await _env(env_factory, sink, "hold")
    code, text = await e.send(mail_with(f"{OURS}; dmarc=fail"), mail_from="x@schule.example")
    assert code == 250
    assert "held for review" in text
    held = await e.cli_json("held", "list")
    assert [(h["status"], h["sender"]) for h in held] == [("held", "anna@schule.example")]
    assert "dmarc=fail" in held[0]["reason"]
    assert await e.cli_json("ticket", "list") == []
    assert await e.cli_json("outbox", "list") == []

    released = await e.cli("held", "release", str(held[0]["id"]))
    assert released.returncode == 0, released.stderr
    assert "ticket 100001" in released.stdout
    assert [t["number"] for t in await e.cli_json("ticket", "list")] == ["100001"]
    assert (await e.cli("held", "release", str(held[0]["id"]))).returncode == 1

    code, _ = await e.send(make_mail("anna@schule.example", "Noch eine"))
    assert code == 250
    second = (await e.cli_json("held", "list"))[1]
    dropped = await e.cli("held", "drop", str(second["id"]))
    assert dropped.returncode == 0, dropped.stderr
    assert [h["status"] for h in await e.cli_json("held", "list")] == ["released", "dropped"]
    assert len(await e.cli_json("ticket", "list")) == 1
    assert (await e.cli("held", "drop", "99")).returncode == 1
