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
