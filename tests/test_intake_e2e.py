"""End-to-end intake: real mails over SMTP to the real daemon, outcome read through the CLI."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import re
import struct
import zlib
from datetime import timedelta
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from conftest import (
    SUPPORT,
    Env,
    Received,
    Sink,
    all_mail_out,
    eventually,
    free_port,
    make_mail,
    read_rows,
    stored_blob,
)

ANNA = "anna@schule.example"
BEN = "ben@schule.example"
SUBJECT_RAW = "=?utf-8?q?Drucker_druckt_nicht_=E2=80=93_Gr=C3=BC=C3=9Fe?="
SUBJECT = "Drucker druckt nicht – Grüße"
BODY = "Hallo,\n\nder Drucker im Lehrerzimmer druckt nicht.\n\nViele Grüße\nAnna\n"
FILENAME_2231 = "Bildschirmfoto Drucker – Grüße.png"
FILENAME_2047 = "Prüfbericht.txt"
REGISTRATION_URL = "https://www.stueber.de/support/registrierung"
GERMAN = "vielen Dank für Ihre Nachricht"
ENGLISH = "thank you for your message"


# --- building mails -------------------------------------------------------------------------


def png_bytes(width: int = 4, height: int = 3) -> bytes:
    """A small but valid PNG image (RGB, all pixels grey)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\x80\x80\x80" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def b64_lines(data: bytes) -> list[str]:
    encoded = base64.b64encode(data).decode("ascii")
    return [encoded[i : i + 76] for i in range(0, len(encoded), 76)]


def rfc2231(value: str) -> str:
    """`filename*=utf-8''…` percent-encoding of a UTF-8 value."""
    safe = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._"
    return "".join(chr(b) if b in safe else f"%{b:02X}" for b in value.encode("utf-8"))


def raw_mail(
    *,
    sender: str = f"=?utf-8?q?Anna_M=C3=BCller?= <{ANNA}>",
    subject: str = SUBJECT_RAW,
    message_id: str = "<drucker-1@schule.example>",
    body: str = BODY,
    attachments: tuple[tuple[str, str, bytes], ...] = (),
    extra_headers: tuple[str, ...] = (),
) -> bytes:
    """A raw message with CRLF line ends, exactly as it goes over SMTP.

    `attachments` holds (Content-Type/Disposition parameter lines, content type, data).
    """
    head = [
        f"From: {sender}",
        f"To: {SUPPORT}",
        f"Subject: {subject}",
        "Date: Sun, 22 Nov 2026 10:00:00 +0100",
        f"Message-ID: {message_id}",
        *extra_headers,
        "MIME-Version: 1.0",
    ]
    text = body.replace("\n", "\r\n")
    if not attachments:
        head += ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"]
        return ("\r\n".join(head) + "\r\n\r\n" + text).encode("utf-8")
    boundary = "==b0undary-4711=="
    lines = [*head, f'Content-Type: multipart/mixed; boundary="{boundary}"', ""]
    lines += [
        "This is a multi-part message in MIME format.",
        f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
        text.removesuffix("\r\n"),
    ]
    for params, ctype, data in attachments:
        lines += [
            f"--{boundary}",
            f"Content-Type: {ctype}",
            f"Content-Disposition: attachment;\r\n {params}",
            "Content-Transfer-Encoding: base64",
            "",
            *b64_lines(data),
        ]
    lines += [f"--{boundary}--", ""]
    return "\r\n".join(lines).encode("utf-8")


def decoded(value: object) -> str:
    """A header value with every encoded word decoded."""
    return str(make_header(decode_header(str(value))))


def plain_body(received: Received) -> str:
    part = received.message.get_body(preferencelist=("plain",))
    assert part is not None, "outbound mail has no text/plain part"
    content = part.get_content()
    assert isinstance(content, str)
    return content


def header_block(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


def raw_header(head: bytes, name: str) -> str:
    """One header as sent, continuation lines included."""
    found = re.search(rb"^" + name.encode("ascii") + rb":(.*(?:\r\n[ \t].*)*)", head, re.I | re.M)
    assert found is not None, f"no {name} header in {head!r}"
    return found.group(1).decode("ascii")


def blob_files(data_dir: Path) -> list[Path]:
    root = data_dir / "blobs"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


async def wait_outbox(env: Env, ready: Any, *, seconds: float = 10.0) -> list[dict[str, Any]]:
    """Poll `outbox list --json` (bounded) until `ready(entries)` holds; return the entries."""
    seen: list[dict[str, Any]] = []

    async def ready_now() -> bool:
        seen[:] = await env.cli_json("outbox", "list")
        return bool(ready(seen))

    await eventually(
        ready_now, seconds=seconds, what=lambda: f"outbox did not reach the expected state: {seen}"
    )
    return seen


def the_sink(env: Env) -> Sink:
    assert env.sink is not None
    return env.sink


class Dialogue:
    """A raw SMTP session on a socket: each command gets its own whole reply (bounded)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Dialogue:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        session = cls(reader, writer)
        code, text = await session.reply()
        assert code == 220, text
        return session

    async def reply(self) -> tuple[int, str]:
        """One (possibly multi-line) reply: its code and the text of its last line."""
        for _ in range(100):
            line = await asyncio.wait_for(self.reader.readline(), 20)
            assert line, "the server closed the connection"
            if line[3:4] != b"-":
                text = line.decode("utf-8").rstrip("\r\n")
                return int(text[:3]), text[4:]
        raise AssertionError("reply longer than 100 lines")

    async def command(self, line: str) -> tuple[int, str]:
        self.writer.write(line.encode("utf-8") + b"\r\n")
        await self.writer.drain()
        return await self.reply()

    async def message(self, raw: bytes) -> tuple[int, str]:
        """After 354: the message, dot-stuffed, ended by <CRLF>.<CRLF>; the final reply."""
        stuffed = raw.replace(b"\r\n.", b"\r\n..")
        if stuffed.startswith(b"."):
            stuffed = b"." + stuffed
        if not stuffed.endswith(b"\r\n"):
            stuffed += b"\r\n"
        self.writer.write(stuffed + b".\r\n")
        await self.writer.drain()
        return await self.reply()

    async def close(self) -> None:
        with contextlib.suppress(OSError, TimeoutError, AssertionError):
            await self.command("QUIT")
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


def stored_messages(data_dir: Path) -> int:
    """Rows in the messages table (every raw message kept), read on a connection of its own."""
    ((count,),) = read_rows(data_dir, "SELECT COUNT(*) FROM messages")
    assert isinstance(count, int)
    return count


async def open_ticket(env: Env, sender: str = ANNA, *, mid: str = "<t1@schule.example>") -> None:
    """Anna (or `sender`) opens ticket 100001 and its confirmation arrives."""
    mail = make_mail(sender, "Drucker druckt nicht", message_id=mid)
    assert await env.send(mail) == (250, "2.0.0 Ok: ticket 100001")
    await the_sink(env).wait_for(1)


# --- 1. what is stored ------------------------------------------------------------------------


async def test_new_ticket_keeps_decoded_subject_body_attachment_and_raw_bytes(env: Env) -> None:
    """A new ticket keeps the decoded subject, body, RFC 2231 attachment and the raw bytes."""
    png = png_bytes()
    raw = raw_mail(attachments=((f"filename*=utf-8''{rfc2231(FILENAME_2231)}", "image/png", png),))
    assert raw.count(b"\r\n") == raw.count(b"\n"), "test mail must use CRLF only"

    assert await env.send(raw, mail_from=ANNA) == (250, "2.0.0 Ok: ticket 100001")

    shown = await env.cli_json("ticket", "show", "100001")
    assert shown["subject"] == SUBJECT
    assert shown["requester"] == ANNA
    assert shown["customer"]["number"] == "10042"
    [article] = shown["articles"]
    assert article["direction"] == "in"
    assert article["automatic"] is False
    assert article["from"] == ANNA
    assert article["to"] == [SUPPORT]
    assert article["subject"] == SUBJECT
    assert article["message_id"] == "<drucker-1@schule.example>"
    assert article["body_text"] == BODY
    assert article["attachments"] == [
        {
            "filename": FILENAME_2231,
            "content_type": "image/png",
            "size": len(png),
            "sha256": hashlib.sha256(png).hexdigest(),
            "content_id": None,
        }
    ]
    sha = article["raw_sha256"]
    assert sha == hashlib.sha256(raw).hexdigest()
    assert stored_blob(env.data_dir, sha) == raw
    assert stored_blob(env.data_dir, hashlib.sha256(png).hexdigest()) == png


async def test_attachment_filename_encoded_per_rfc2047_is_decoded(env: Env) -> None:
    """An attachment name given as an RFC 2047 encoded word is stored decoded."""
    data = b"Seite 1: grau\n"
    raw = raw_mail(
        attachments=(('filename="=?utf-8?q?Pr=C3=BCfbericht=2Etxt?="', "text/plain", data),)
    )
    assert await env.send(raw, mail_from=ANNA) == (250, "2.0.0 Ok: ticket 100001")
    shown = await env.cli_json("ticket", "show", "100001")
    [attachment] = shown["articles"][0]["attachments"]
    assert attachment["filename"] == FILENAME_2047
    assert attachment["size"] == len(data)
    assert attachment["sha256"] == hashlib.sha256(data).hexdigest()


# --- 2. the confirmation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "expected", "foreign"), [(ANNA, GERMAN, ENGLISH), (BEN, ENGLISH, GERMAN)]
)
async def test_confirmation_in_users_language_with_threading_and_loop_headers(
    env: Env, user: str, expected: str, foreign: str
) -> None:
    """The confirmation is in the user's language, tagged, threaded, marked automatic, encoded."""
    customer_mid = "<drucker-2@schule.example>"
    raw = raw_mail(sender=user, message_id=customer_mid)
    assert await env.send(raw, mail_from=user) == (250, "2.0.0 Ok: ticket 100001")

    [received] = await the_sink(env).wait_for(1)
    msg = received.message
    assert received.rcpt_tos == [user]
    subject = str(msg["Subject"])
    assert "[Ticket#100001]" in subject
    assert SUBJECT in subject
    assert msg["In-Reply-To"] == customer_mid
    assert customer_mid in str(msg["References"])
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["X-Loop"]
    assert msg["From"].addresses[0].addr_spec == SUPPORT
    assert msg["To"].addresses[0].addr_spec == user
    own_mid = str(msg["Message-ID"])
    assert own_mid != customer_mid
    assert own_mid.startswith("<")
    assert own_mid.endswith("@stueber.de>")

    head = header_block(received.raw)
    assert head.isascii(), head
    raw_subject = raw_header(head, "Subject")
    assert "=?utf-8?" in raw_subject.lower(), raw_subject
    assert "ü" not in raw_subject

    body = plain_body(received)
    assert expected in body
    assert foreign not in body
    assert "100001" in body


# --- 3. colleagues share tickets ----------------------------------------------------------------


@pytest.mark.parametrize(
    "subject", ["AW: [Ticket#100001] Drucker druckt nicht", "WG: Re: Drucker [ticket # 100001]"]
)
async def test_colleague_reply_with_tag_extends_ticket_without_new_confirmation(
    env: Env, subject: str
) -> None:
    """A colleague of the same institution replying with the tag adds to the ticket silently."""
    await open_ticket(env, ANNA)
    reply = make_mail(
        f"Ben Meyer <{BEN}>",
        subject,
        "Bei mir druckt er auch nicht.\n",
        headers={"In-Reply-To": "<t1@schule.example>"},
    )
    assert await env.send(reply) == (250, "2.0.0 Ok: ticket 100001")

    shown = await env.cli_json("ticket", "show", "100001")
    assert [a["from"] for a in shown["articles"]] == [ANNA, BEN]
    assert len(await env.cli_json("ticket", "list")) == 1
    outbox = await env.cli_json("outbox", "list")
    assert len(outbox) == 1, outbox
    assert outbox[0]["recipient"] == ANNA
    await all_mail_out(env, 1)


# --- 4. institutions are separate ---------------------------------------------------------------


async def _other_institution(env: Env) -> None:
    await env.customer("20001", "Realschule Beispielstadt")
    await env.user("carl@real.example", "20001", name="Carl Krause", lang="de")


SECRET = "Das Kennwort des Druckservers ist Zebra-Quarz-17."


def assert_reveals_nothing(received: Received) -> None:
    texts = [
        received.raw.decode("utf-8", errors="replace"),
        *(decoded(v) for _, v in received.message.items()),
        plain_body(received),
    ]
    for text in texts:
        assert "100001" not in text
        assert "Drucker" not in text
        assert "Zebra-Quarz" not in text


async def test_tag_of_other_institutions_ticket_opens_new_ticket_revealing_nothing(
    env: Env,
) -> None:
    """A tag naming another institution's ticket opens a new ticket and reveals nothing of it."""
    await _other_institution(env)
    first = make_mail(ANNA, "Drucker druckt nicht", SECRET, message_id="<t1@schule.example>")
    assert await env.send(first) == (250, "2.0.0 Ok: ticket 100001")
    await the_sink(env).wait_for(1)

    intruder = make_mail("Carl <carl@real.example>", "AW: [Ticket#100001] Beamer flackert")
    assert await env.send(intruder) == (250, "2.0.0 Ok: ticket 100002")

    original = await env.cli_json("ticket", "show", "100001")
    assert len(original["articles"]) == 1
    assert original["customer"]["number"] == "10042"
    new = await env.cli_json("ticket", "show", "100002")
    assert new["customer"]["number"] == "20001"
    assert new["requester"] == "carl@real.example"
    assert new["subject"] == "Beamer flackert"
    assert new["previous_ticket"] is None

    received = await the_sink(env).wait_for(2)
    to_carl = [r for r in received if r.rcpt_tos == ["carl@real.example"]]
    assert len(to_carl) == 1
    assert "[Ticket#100002]" in str(to_carl[0].message["Subject"])
    assert_reveals_nothing(to_carl[0])


async def test_reference_to_other_institutions_ticket_opens_new_ticket(env: Env) -> None:
    """An In-Reply-To naming another institution's mail is no match: a new ticket, nothing shown."""
    await _other_institution(env)
    first = make_mail(ANNA, "Drucker druckt nicht", SECRET, message_id="<t1@schule.example>")
    assert await env.send(first) == (250, "2.0.0 Ok: ticket 100001")
    [confirmation] = await the_sink(env).wait_for(1)
    ours = str(confirmation.message["Message-ID"])

    intruder = make_mail(
        "carl@real.example",
        "Re: Beamer flackert",
        headers={"In-Reply-To": ours, "References": f"<t1@schule.example> {ours}"},
    )
    assert await env.send(intruder) == (250, "2.0.0 Ok: ticket 100002")
    assert len((await env.cli_json("ticket", "show", "100001"))["articles"]) == 1
    received = await the_sink(env).wait_for(2)
    [to_carl] = [r for r in received if r.rcpt_tos == ["carl@real.example"]]
    assert_reveals_nothing(to_carl)


# --- 5. unregistered senders --------------------------------------------------------------------


async def test_unregistered_sender_refused_at_data_and_nothing_kept(env: Env) -> None:
    """An unregistered sender gets 550 5.7.1 with the registration URL; nothing is stored."""
    png = png_bytes()
    raw = raw_mail(
        sender="Fremd <fremd@elsewhere.example>",
        attachments=((f"filename*=utf-8''{rfc2231(FILENAME_2231)}", "image/png", png),),
    )
    code, text = await env.send(raw, mail_from="fremd@elsewhere.example")
    assert code == 550
    assert text.startswith("5.7.1 ")
    assert REGISTRATION_URL in text
    assert await env.cli_json("ticket", "list") == []
    assert await env.cli_json("outbox", "list") == []
    assert blob_files(env.data_dir) == []
    await all_mail_out(env, 0)


async def test_unregistered_sender_refused_at_end_of_data_not_before(env: Env) -> None:
    """Unregistered From: passes RCPT (250) and DATA (354), then 550 5.7.1 with the URL."""
    png = png_bytes()
    raw = raw_mail(
        sender="Fremd <fremd@elsewhere.example>",
        attachments=((f"filename*=utf-8''{rfc2231(FILENAME_2231)}", "image/png", png),),
    )
    session = await Dialogue.open(env.port)
    try:
        assert (await session.command("EHLO mta.elsewhere.example"))[0] == 250
        assert (await session.command("MAIL FROM:<fremd@elsewhere.example>"))[0] == 250
        code, text = await session.command(f"RCPT TO:<{SUPPORT}>")
        assert code == 250, text
        code, text = await session.command("DATA")
        assert code == 354, text
        code, text = await session.message(raw)
        assert code == 550, text
        assert text.startswith("5.7.1 "), text
        assert "fremd@elsewhere.example" in text
        assert REGISTRATION_URL in text
    finally:
        await session.close()
    assert await env.cli_json("ticket", "list") == []
    assert await env.cli_json("outbox", "list") == []
    assert await env.cli_json("quarantine", "list") == []
    assert blob_files(env.data_dir) == []
    assert stored_messages(env.data_dir) == 0
    await all_mail_out(env, 0)


async def test_registered_envelope_sender_does_not_vouch_for_unknown_from(env: Env) -> None:
    """Identity comes from the From: header: a registered envelope sender does not help."""
    mail = make_mail("Fremd <fremd@elsewhere.example>", "Drucker druckt nicht")
    code, text = await env.send(mail, mail_from=ANNA)
    assert code == 550
    assert text.startswith("5.7.1 ")
    assert await env.cli_json("ticket", "list") == []


async def test_from_address_matched_case_insensitively(env: Env) -> None:
    """The From: address is case-folded before the user is looked up."""
    mail = make_mail("Anna Müller <ANNA@Schule.EXAMPLE>", "Drucker druckt nicht")
    assert await env.send(mail) == (250, "2.0.0 Ok: ticket 100001")
    shown = await env.cli_json("ticket", "show", "100001")
    assert shown["requester"] == ANNA


# --- 6. recipients ------------------------------------------------------------------------------


async def test_unknown_recipient_refused_at_rcpt(env: Env) -> None:
    """A recipient not in smtp.recipients gets 550 5.1.1 at RCPT itself, MAIL having got 250."""
    session = await Dialogue.open(env.port)
    try:
        assert (await session.command("EHLO client.example"))[0] == 250
        assert (await session.command(f"MAIL FROM:<{ANNA}>"))[0] == 250
        code, text = await session.command("RCPT TO:<info@stueber.de>")
        assert code == 550, text
        assert text.startswith("5.1.1 "), text
        assert "<info@stueber.de>" in text
        # Refused at RCPT, so no recipient is open: DATA is not even begun.
        code, text = await session.command("DATA")
        assert code == 503, text
        # The session goes on: the configured recipient is still accepted in it.
        assert (await session.command(f"RCPT TO:<{SUPPORT}>"))[0] == 250
    finally:
        await session.close()
    assert await env.cli_json("ticket", "list") == []
    assert stored_messages(env.data_dir) == 0


async def test_recipient_matched_case_insensitively(env: Env) -> None:
    """A configured recipient is accepted whatever its case."""
    code, text = await env.send(make_mail(ANNA, "Drucker"), rcpt="Support@Stueber.DE")
    assert (code, text) == (250, "2.0.0 Ok: ticket 100001")


# --- 7. no contract -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "phrase", "foreign"),
    [
        ("de", "Gern erstellen wir Ihnen ein Angebot", "We would be glad"),
        ("en", "We would be glad to send you an offer", "Gern erstellen wir"),
    ],
)
async def test_no_contract_accepted_without_ticket_and_told_once(
    env: Env, lang: str, phrase: str, foreign: str
) -> None:
    """Without contract or trial: 250, no ticket, one no_contract mail naming the offer address."""
    expired = env.clock().date() - timedelta(days=30)
    await env.customer("30003", "Grundschule Ohnevertrag", support_until=expired)
    await env.user("dora@grund.example", "30003", name="Dora", lang=lang)

    code, _ = await env.send(make_mail("Dora <dora@grund.example>", "Drucker druckt nicht"))
    assert code == 250
    assert await env.cli_json("ticket", "list") == []

    [received] = await the_sink(env).wait_for(1)
    assert received.rcpt_tos == ["dora@grund.example"]
    body = plain_body(received)
    assert "office@stueber.de" in body
    assert phrase in body
    assert foreign not in body
    outbox = await env.cli_json("outbox", "list")
    assert [e["kind"] for e in outbox] == ["no_contract"]
    await all_mail_out(env, 1)


# --- 8. automatic mail --------------------------------------------------------------------------


async def test_auto_reply_stored_on_ticket_flagged_automatic_without_answer(env: Env) -> None:
    """An auto-reply carrying the tag is stored as automatic, keeps the status, gets no answer."""
    await open_ticket(env, ANNA)
    assert env.daemon.store is not None
    await env.daemon.store.set_status(100001, "answered", now=env.clock())

    ooo = make_mail(
        ANNA,
        "Abwesenheitsnotiz: [Ticket#100001] Drucker druckt nicht",
        "Ich bin bis Montag nicht im Haus.\n",
        headers={"Auto-Submitted": "auto-replied"},
    )
    assert await env.send(ooo) == (250, "2.0.0 Ok: ticket 100001")

    shown = await env.cli_json("ticket", "show", "100001")
    assert shown["status"] == "answered"
    assert [a["automatic"] for a in shown["articles"]] == [False, True]
    outbox = await env.cli_json("outbox", "list")
    assert [e["kind"] for e in outbox] == ["ticket_created"]
    await all_mail_out(env, 1)


# --- 9. duplicates ------------------------------------------------------------------------------


async def test_same_mail_delivered_twice_is_stored_once(env: Env) -> None:
    """The same Message-ID from the same sender twice: one article, both answered 250 alike."""
    raw = raw_mail(message_id="<retry-1@schule.example>")
    first = await env.send(raw, mail_from=ANNA)
    second = await env.send(raw, mail_from=ANNA)
    assert first == (250, "2.0.0 Ok: ticket 100001")
    assert second == first
    tickets = await env.cli_json("ticket", "list")
    assert [(t["number"], t["articles"]) for t in tickets] == [("100001", 1)]
    assert len(await env.cli_json("outbox", "list")) == 1
    await the_sink(env).wait_for(1)
    await all_mail_out(env, 1)


async def test_mta_retry_with_added_received_header_is_stored_once(env: Env) -> None:
    """A retry that an MTA prefixed with another Received: line is still the same mail."""
    raw = raw_mail(message_id="<retry-2@schule.example>")
    first = await env.send(raw, mail_from=ANNA)
    retry = b"Received: from mx2.schule.example by mx.stueber.de; Sun, 22 Nov 2026\r\n" + raw
    second = await env.send(retry, mail_from=ANNA)
    assert first == (250, "2.0.0 Ok: ticket 100001")
    assert second == first
    shown = await env.cli_json("ticket", "show", "100001")
    assert len(shown["articles"]) == 1
    assert len(await env.cli_json("outbox", "list")) == 1


# --- 10. closed tickets -------------------------------------------------------------------------


async def test_reply_to_recently_closed_ticket_reopens_it(env: Env) -> None:
    """A reply within tickets.reopen_days of closing reopens the same ticket."""
    await open_ticket(env, ANNA)
    assert env.daemon.store is not None
    await env.daemon.store.set_status(100001, "closed", now=env.clock())
    env.clock.advance(days=3)

    reply = make_mail(
        ANNA, "AW: [Ticket#100001] Drucker druckt nicht", "Wieder kaputt.\n",
        message_id="<t2@schule.example>",
    )  # fmt: skip
    assert await env.send(reply) == (250, "2.0.0 Ok: ticket 100001")
    shown = await env.cli_json("ticket", "show", "100001")
    assert shown["status"] == "open"
    assert len(shown["articles"]) == 2
    assert len(await env.cli_json("ticket", "list")) == 1
    # The reopen notice answers the reopening mail, under the ticket's first mail.
    _, reopened = await the_sink(env).wait_for(2)
    assert "[Ticket#100001]" in str(reopened.message["Subject"])
    assert reopened.message["In-Reply-To"] == "<t2@schule.example>"
    assert str(reopened.message["References"]).split() == [
        "<t1@schule.example>",
        "<t2@schule.example>",
    ]


async def test_reply_to_long_closed_ticket_opens_new_ticket_naming_old(env: Env) -> None:
    """A reply later than tickets.reopen_days opens a new ticket that names the old number."""
    await open_ticket(env, ANNA)
    assert env.daemon.store is not None
    await env.daemon.store.set_status(100001, "closed", now=env.clock())
    env.clock.advance(days=30)

    reply = make_mail(ANNA, "AW: [Ticket#100001] Drucker druckt nicht", "Wieder kaputt.\n")
    assert await env.send(reply) == (250, "2.0.0 Ok: ticket 100002")
    old = await env.cli_json("ticket", "show", "100001")
    assert old["status"] == "closed"
    assert len(old["articles"]) == 1
    new = await env.cli_json("ticket", "show", "100002")
    assert new["previous_ticket"] == "100001"
    assert new["status"] == "new"
    assert len(new["articles"]) == 1
    assert "100001" in (new["articles"][0]["note"] or "")


# --- 11. relay down -----------------------------------------------------------------------------


async def test_relay_down_does_not_slow_intake_and_mail_follows_later(env_factory: Any) -> None:
    """With the relay down intake still answers 250 at once; the outbox delivers once it is up."""
    sink = Sink()
    port = free_port()
    sink.port = port
    env: Env = await env_factory(sink)
    await env.customer("10042", "Gymnasium Musterstadt")
    await env.user(ANNA, "10042", name="Anna Müller", lang="de")
    await env.user(BEN, "10042", name="Ben Meyer", lang="en")
    loop = asyncio.get_running_loop()

    for number, sender in ((100001, ANNA), (100002, BEN)):
        started = loop.time()
        reply = await env.send(make_mail(sender, f"Drucker {number}"))
        assert reply == (250, f"2.0.0 Ok: ticket {number}")
        assert loop.time() - started < 2.0

    entries = await wait_outbox(env, lambda es: len(es) == 2 and all(e["attempts"] for e in es))
    for entry in entries:
        assert entry["status"] == "queued"
        assert entry["attempts"] >= 1
        assert entry["last_error"]
        assert entry["next_attempt_at"]
        assert entry["sent_at"] is None

    await sink.start(port)
    try:
        received = await sink.wait_for(2)
        assert sorted(r.rcpt_tos[0] for r in received) == [ANNA, BEN]
        entries = await wait_outbox(env, lambda es: all(e["status"] == "sent" for e in es))
        assert all(e["sent_at"] for e in entries)
    finally:
        await sink.stop()


# --- 12. size limit -----------------------------------------------------------------------------


async def test_oversize_mail_refused_with_552(env_factory: Any, sink: Sink) -> None:
    """A mail over smtp.max_message_bytes gets 552 5.3.4 and nothing is stored."""
    env: Env = await env_factory(sink, smtp={"max_message_bytes": 10000})
    await env.customer("10042", "Gymnasium Musterstadt")
    await env.user(ANNA, "10042", lang="de")
    raw = raw_mail(body="Sehr lange Beschreibung.\n" * 800)
    assert len(raw) > 20000
    code, text = await env.send(raw, mail_from=ANNA)
    assert code == 552
    assert text.startswith("5.3.4")
    assert await env.cli_json("ticket", "list") == []


async def test_announced_size_over_limit_refused_at_mail_from(env_factory: Any, sink: Sink) -> None:
    """EHLO advertises the limit; MAIL FROM with a larger SIZE= gets 552 5.3.4."""
    env: Env = await env_factory(sink, smtp={"max_message_bytes": 10000})
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=env.port, timeout=10, start_tls=False)
    await client.connect()
    try:
        await client.ehlo()
        assert client.esmtp_extensions.get("size") == "10000"
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
            await client.mail(ANNA, options=["SIZE=20000"])
        assert refused.value.code == 552
        assert refused.value.message.startswith("5.3.4")
    finally:
        client.close()
