"""A whole support conversation over real sockets, and every mail the customers receive."""

from __future__ import annotations

from pathlib import Path

from conftest import SUPPORT, Env, Received, make_mail
from desk_support import (
    ANNA,
    BEN,
    CARL,
    MAX,
    OWN_ID,
    add_agent,
    attachments,
    body,
    other_institution,
    references,
    settle,
    signer,
    the_sink,
    write_text,
)

from ticketmail.storage import desk as desk_db

TAG = "[Ticket#100001]"
M1 = "<drucker-1@schule.example>"  # Anna opens the ticket
M2 = "<drucker-2@schule.example>"  # Anna answers the agent, the tag dropped from the subject
M3 = "<drucker-3@schule.example>"  # Ben adds to the ticket
M5 = "<drucker-5@schule.example>"  # Anna reopens the closed ticket
CARL_SECRET = "Das Kennwort des Beamers ist Zebra-Quarz-17."
CLI_REPLY = (
    "Guten Tag Frau Müller,\n\n"
    "bitte installieren Sie den Treiber aus der Anlage und starten Sie den Drucker neu.\n\n"
    "Viele Grüße\nMax Berger\n"
)
PDF = b"%PDF-1.4\n% Anleitung\n%%EOF\n"


def assert_ours(received: Received, *, to: str, number: int = 100001) -> str:
    """Common to every mail ticketmail sends about a ticket; returns its Message-ID."""
    msg = received.message
    assert received.rcpt_tos == [to]
    assert msg["To"].addresses[0].addr_spec == to
    assert msg["From"].addresses[0].addr_spec == SUPPORT
    assert f"[Ticket#{number}]" in str(msg["Subject"])
    assert msg["X-Loop"] == SUPPORT
    assert msg["X-Auto-Response-Suppress"] == "All"
    own = str(msg["Message-ID"])
    match = OWN_ID.fullmatch(own)
    assert match is not None, own
    assert int(match.group(1)) == number
    assert references(received)[0] == M1, "every mail of the ticket starts the same chain"
    assert references(received)[-1] == str(msg["In-Reply-To"])
    return own


def assert_no_leak(received: Received) -> None:
    """Nothing of the other institution's ticket, nor an agent's command, reaches a customer."""
    raw = received.raw.decode("utf-8", errors="replace")
    for text in (raw, body(received)):
        assert "Zebra-Quarz" not in text
        assert CARL not in text
        assert "100002" not in text
        assert "#status" not in text
        assert MAX not in text


LANGUAGE = {ANNA: "de", BEN: "en", CARL: "de"}
GERMAN = "vielen Dank für Ihre Nachricht"
ENGLISH = "thank you for your message"


def assert_nothing_of_ticket_100001(received: Received, *, anna_ids: tuple[str, ...]) -> None:
    """Carl's mail names nothing of Anna's ticket: not its number, words, people or ids."""
    texts = [
        received.raw.decode("utf-8", errors="replace"),
        *(str(value) for _, value in received.message.items()),
        body(received),
    ]
    for text in texts:
        assert "100001" not in text
        assert "Drucker" not in text
        assert "Musterstadt" not in text
        assert ANNA not in text
        assert "Anna" not in text
        assert "Müller" not in text
        for mid in anna_ids:
            assert mid not in text


async def test_whole_conversation_customer_agent_cli_mail_close_reopen(
    env: Env, tmp_path: Path
) -> None:
    """Open, CLI reply, tagless answer, mailed reply closing it, reopen: every mail is right."""
    sink = the_sink(env)
    ids = await signer(env)
    await other_institution(env)
    await add_agent(env)
    # Max has switched the desk's notifications off: this conversation counts the mails
    # customers get (the notifications are tested in test_desk.py).
    assert env.daemon.store is not None
    await env.daemon.store.write(lambda c: desk_db.set_agent_settings(c, MAX, notify=False))

    # 1. Anna opens a ticket: a German confirmation threaded under her mail.
    opened = make_mail(f"Anna Müller <{ANNA}>", "Drucker druckt nicht", message_id=M1)
    assert await env.send(opened) == (250, "2.0.0 Ok: ticket 100001")
    [created] = await settle(env, 1)
    c1 = assert_ours(created, to=ANNA)
    assert created.message["In-Reply-To"] == M1
    assert created.message["Auto-Submitted"] == "auto-replied"
    assert "vielen Dank für Ihre Nachricht" in body(created)
    assert ids.verify(c1) == 100001
    assert_no_leak(created)

    # Another institution's ticket, whose text must never travel to Anna.
    carl = make_mail(CARL, "Beamer flackert", CARL_SECRET + "\n", message_id="<beamer@real>")
    assert await env.send(carl) == (250, "2.0.0 Ok: ticket 100002")
    to_carl = (await settle(env, 2))[1]
    # Carl's own confirmation: his ticket, his language, his thread, nothing of Anna's.
    assert to_carl.rcpt_tos == [CARL]
    msg = to_carl.message
    assert msg["To"].addresses[0].addr_spec == CARL
    assert msg["From"].addresses[0].addr_spec == SUPPORT
    assert "[Ticket#100002]" in str(msg["Subject"])
    assert "Beamer flackert" in str(msg["Subject"])
    assert msg["In-Reply-To"] == "<beamer@real>"
    assert references(to_carl) == ["<beamer@real>"]
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Loop"] == SUPPORT
    assert msg["X-Auto-Response-Suppress"] == "All"
    c2 = str(msg["Message-ID"])
    match = OWN_ID.fullmatch(c2)
    assert match is not None, c2
    assert int(match.group(1)) == 100002
    assert ids.verify(c2) == 100002
    assert c2 != c1
    assert GERMAN in body(to_carl)
    assert ENGLISH not in body(to_carl)
    assert "100002" in body(to_carl)
    assert_nothing_of_ticket_100001(to_carl, anna_ids=(M1, c1))

    # 2. The agent answers from the command line, with a file attached.
    text = write_text(tmp_path / "antwort.txt", CLI_REPLY)
    pdf = tmp_path / "Anleitung Drucker.pdf"
    pdf.write_bytes(PDF)
    result = await env.cli(
        "ticket", "reply", "100001", "--agent", MAX, "--file", str(text), "--attach", str(pdf)
    )
    assert result.returncode == 0, result.stderr
    assert f"agent_reply queued for {ANNA} (de)" in result.stdout
    reply1 = (await settle(env, 3))[2]
    r1 = assert_ours(reply1, to=ANNA)
    assert reply1.message["In-Reply-To"] == M1
    assert references(reply1) == [M1]
    assert reply1.message["Auto-Submitted"] is None, "a person wrote it"
    assert body(reply1).startswith(CLI_REPLY + "\nAnlagen: Anleitung Drucker.pdf\n\n-- \n")
    assert "Für Rückfragen antworten Sie einfach auf diese E-Mail" in body(reply1)
    assert "Max Berger, Stueber Support" in body(reply1)
    assert attachments(reply1) == [("Anleitung Drucker.pdf", "application/pdf", PDF)]
    assert_no_leak(reply1)
    shown = await env.cli_json("ticket", "show", "100001")
    assert shown["status"] == "answered"
    out = shown["articles"][-1]
    assert (out["direction"], out["from"], out["to"]) == ("out", MAX, [ANNA])
    assert out["message_id"] == r1
    assert out["attachments"][0]["filename"] == "Anleitung Drucker.pdf"

    # 3. Anna answers; her client dropped the tag, only In-Reply-To/References remain.
    answer = make_mail(
        ANNA,
        "AW: Drucker druckt nicht",
        "Leider druckt er immer noch nicht.\n\n"
        "Am 22.11.2026 um 10:05 schrieb Stueber Support <support@stueber.de>:\n"
        "> Guten Tag Frau Müller,\n",
        message_id=M2,
        headers={"In-Reply-To": r1, "References": f"{M1} {r1}"},
    )
    assert await env.send(answer) == (250, "2.0.0 Ok: ticket 100001")
    shown = await env.cli_json("ticket", "show", "100001")
    assert shown["status"] == "open", "a customer's answer reopens an answered ticket"
    assert len(shown["articles"]) == 3

    # Ben, her colleague, adds to the ticket (English speaker).
    ben = make_mail(BEN, f"Re: {TAG} Drucker druckt nicht", "Same here.\n", message_id=M3)
    assert await env.send(ben) == (250, "2.0.0 Ok: ticket 100001")
    await settle(env, 3)  # customers' own mails change the status silently

    # 4. The agent answers by mail and closes the ticket; the mail quotes another ticket.
    agent_mail = make_mail(
        f"Max Berger <{MAX}>",
        f"AW: {TAG} Drucker druckt nicht",
        "#status closed\n"
        "Guten Tag Frau Müller, hallo Herr Meyer,\n\n"
        "ich habe den Druckertreiber auf dem Server neu installiert.\n\n"
        "Viele Grüße\nMax Berger\n\n"
        "Am 22.11.2026 um 09:00 schrieb Carl Krause <carl@real.example>:\n"
        f"> {CARL_SECRET}\n",
        message_id="<max-1@stueber.de>",
    )
    assert await env.send(agent_mail) == (250, "2.0.0 Ok: ticket 100001")
    mails = await settle(env, 5)
    by_recipient = {r.rcpt_tos[0]: r for r in mails[3:]}
    assert set(by_recipient) == {ANNA, BEN}
    for recipient, received in by_recipient.items():
        assert_ours(received, to=recipient)
        assert received.message["In-Reply-To"] == M3, "answers the latest customer mail"
        assert references(received) == [M1, M3]
        assert "ich habe den Druckertreiber auf dem Server neu installiert." in body(received)
        assert_no_leak(received)
    assert "Wir haben das Ticket damit abgeschlossen" in body(by_recipient[ANNA])
    assert "We have closed the ticket" in body(by_recipient[BEN])
    assert "Wir haben das Ticket" not in body(by_recipient[BEN])
    shown = await env.cli_json("ticket", "show", "100001")
    assert shown["status"] == "closed"
    last = shown["articles"][-1]
    assert (last["direction"], last["from"], sorted(last["to"])) == ("out", MAX, [ANNA, BEN])
    assert CARL_SECRET in last["body_text"], "the ticket keeps the agent's whole text"
    assert "Zebra" not in last["reply_text"]
    r2 = str(by_recipient[ANNA].message["Message-ID"])

    # 5. Anna writes again within tickets.reopen_days: the ticket reopens, she is told so.
    env.clock.advance(days=2)
    reopen = make_mail(
        ANNA,
        f"AW: {TAG} Drucker druckt nicht",
        "Jetzt streikt er wieder.\n",
        message_id=M5,
        headers={"In-Reply-To": r2, "References": f"{M1} {M3} {r2}"},
    )
    assert await env.send(reopen) == (250, "2.0.0 Ok: ticket 100001")
    reopened = (await settle(env, 6))[5]
    assert_ours(reopened, to=ANNA)
    assert reopened.message["In-Reply-To"] == M5
    assert references(reopened) == [M1, M5]
    assert reopened.message["Auto-Submitted"] == "auto-replied"
    assert "Wieder geöffnet" in str(reopened.message["Subject"])
    assert "war bereits abgeschlossen" in " ".join(body(reopened).split())
    assert_no_leak(reopened)
    shown = await env.cli_json("ticket", "show", "100001")
    assert shown["status"] == "open"
    assert len(shown["articles"]) == 6
    assert len(await env.cli_json("ticket", "list")) == 2

    # Every mail went to the people of its own ticket, nobody else heard anything.
    assert [r.rcpt_tos for r in sink.received].count([CARL]) == 1
    outbox = await env.cli_json("outbox", "list")
    kinds = [(e["kind"], e["recipient"]) for e in outbox if e["ticket"] == "100001"]
    assert sorted(kinds) == sorted(
        [
            ("ticket_created", ANNA),
            ("agent_reply", ANNA),
            ("agent_reply", ANNA),
            ("agent_reply", BEN),
            ("ticket_reopened", ANNA),
        ]
    )
    assert all(e["status"] == "sent" for e in outbox)

    # Every mail says the language it is written in, and it is its recipient's language.
    assert len(sink.received) == 6
    for received in sink.received:
        [recipient] = received.rcpt_tos
        assert received.message["Content-Language"] == LANGUAGE[recipient], (
            recipient,
            str(received.message["Subject"]),
        )
