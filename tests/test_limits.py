"""Mails of absurd structure: read within the time and memory bound, kept raw, and flagged."""

from __future__ import annotations

import base64
import hashlib
import re
import time
import tracemalloc
from collections.abc import Callable

import pytest
from conftest import Env, read_rows, stored_blob

from ticketmail.mail.parse import FLAGS, MAX_DEPTH, MAX_PARTS, ParsedMail, parse_mail

MAX_SECONDS = 2.0
ANNA = "anna@schule.example"


def head(name: str, *, content_type: str) -> bytes:
    return (
        f"From: Anna <{ANNA}>\r\nTo: support@stueber.de\r\nSubject: limits {name}\r\n"
        f"Message-ID: <{name}@schule.example>\r\nDate: Sun, 22 Nov 2026 10:00:00 +0100\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: {content_type}\r\n\r\n"
    ).encode()


def many_parts(count: int, name: str = "parts") -> bytes:
    """A multipart/mixed with `count` small text parts, the first one the body."""
    parts = [b"--b\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i for i in range(count)]
    return head(name, content_type='multipart/mixed; boundary="b"') + b"".join(parts) + b"--b--\r\n"


def nested_multiparts(depth: int, name: str = "deep") -> bytes:
    """`depth` levels of multipart/mixed, a text part on top and one at the bottom."""
    out = [head(name, content_type='multipart/mixed; boundary="b0"')]
    out.append(b"--b0\r\nContent-Type: text/plain\r\n\r\ntext on top\r\n")
    for level in range(1, depth):
        out.append(
            b'--b%d\r\nContent-Type: multipart/mixed; boundary="b%d"\r\n\r\n' % (level - 1, level)
        )
    out.append(b"--b%d\r\nContent-Type: text/plain\r\n\r\ndeep down\r\n" % (depth - 1))
    out.extend(b"--b%d--\r\n" % level for level in range(depth - 1, -1, -1))
    return b"".join(out)


def nested_messages(depth: int, name: str = "forwards") -> bytes:
    """A message/rfc822 inside a message/rfc822 ... `depth` times (a forward of a forward)."""
    inner = b"From: c@example.org\r\nSubject: innermost\r\n\r\nthe original text\r\n"
    for _ in range(depth - 1):
        inner = b"From: c@example.org\r\nContent-Type: message/rfc822\r\n\r\n" + inner
    return head(name, content_type="message/rfc822") + inner


def huge_header(size: int, name: str = "header") -> bytes:
    """A header block of about `size` bytes in many folded lines, then a short body."""
    line = b"X-Filler: " + b"a" * 60 + b"\r\n " + b"b" * 60 + b"\r\n"
    filler = line * (size // len(line))
    message = head(name, content_type="text/plain; charset=utf-8")
    return message.replace(b"MIME-Version", filler + b"MIME-Version", 1) + b"short body\r\n"


def many_recipients(count: int, name: str = "recipients") -> bytes:
    """A To header naming `count` addresses, folded one per line."""
    to = b",\r\n ".join(b"user%d@schule.example" % i for i in range(count))
    message = head(name, content_type="text/plain")
    return message.replace(b"To: support@stueber.de", b"To: " + to, 1) + b"hi\r\n"


def base64_attachment(size: int, name: str = "base64") -> bytes:
    """A text body and one base64 attachment of `size` decoded bytes."""
    data = bytes(range(256)) * (size // 256)
    encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
    return (
        head(name, content_type='multipart/mixed; boundary="b"')
        + b"--b\r\nContent-Type: text/plain\r\n\r\nsee the file\r\n"
        + b"--b\r\nContent-Type: application/octet-stream\r\n"
        + b'Content-Disposition: attachment; filename="dump.bin"\r\n'
        + b"Content-Transfer-Encoding: base64\r\n\r\n"
        + encoded
        + b"--b--\r\n"
    )


def timed(raw: bytes, **kwargs: int) -> tuple[ParsedMail, float]:
    started = time.monotonic()
    parsed = parse_mail(raw, **kwargs)
    return parsed, time.monotonic() - started


# --- parse_mail ----------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [5000, 200_000])
def test_thousands_of_parts(count: int) -> None:
    """Thousands of parts: the first MAX_PARTS are read, the mail is flagged too_many_parts."""
    parsed, seconds = timed(many_parts(count))
    assert seconds < MAX_SECONDS
    assert "too_many_parts" in parsed.defects
    assert parsed.body_text.startswith("part 0\npart 1\n")
    assert f"part {MAX_PARTS - 2}\n" in parsed.body_text
    assert f"part {count - 1}\n" not in parsed.body_text


@pytest.mark.parametrize("depth", [500, 5000])
def test_nesting_hundreds_deep(depth: int) -> None:
    """Deep nesting raises no RecursionError: the deep rest is one opaque file, flagged."""
    parsed, seconds = timed(nested_multiparts(depth))
    assert seconds < MAX_SECONDS
    assert "too_deep" in parsed.defects
    assert "unparseable" not in parsed.defects
    assert parsed.subject == "limits deep"
    assert parsed.body_text == "text on top\n"
    (opaque,) = parsed.attachments
    assert b"deep down" in opaque.data
    assert opaque.content_type == "application/octet-stream"


def test_nesting_within_the_limit_is_read_whole() -> None:
    """Nesting up to MAX_DEPTH levels is read as it is: every text, no flag."""
    parsed, _ = timed(nested_multiparts(MAX_DEPTH - 1))
    assert parsed.body_text == "text on top\ndeep down\n"
    assert "too_deep" not in parsed.defects


def test_forward_of_a_forward_hundreds_deep() -> None:
    """message/rfc822 nested 500 times is read in time, kept as one .eml file, flagged."""
    parsed, seconds = timed(nested_messages(500))
    assert seconds < MAX_SECONDS
    assert "too_deep" in parsed.defects
    assert parsed.attachments
    assert parsed.attachments[0].filename.endswith(".eml")
    assert b"the original text" in b"".join(a.data for a in parsed.attachments)


def test_header_of_200_kb() -> None:
    """A 200 KB header block is read in time; subject, sender and body survive; flagged."""
    raw = huge_header(200 * 1024)
    parsed, seconds = timed(raw)
    assert seconds < MAX_SECONDS
    assert "header_too_large" in parsed.defects
    assert parsed.subject == "limits header"
    assert parsed.from_addr == ANNA
    assert parsed.body_text == "short body\n"


def test_twenty_thousand_recipients() -> None:
    """20,000 addresses in To: the first 1,000 are kept, in order, flagged, in time."""
    parsed, seconds = timed(many_recipients(20_000))
    assert seconds < MAX_SECONDS
    assert len(parsed.to) == 1000
    assert parsed.to[:2] == ("user0@schule.example", "user1@schule.example")
    assert {"too_many_addresses", "header_too_large"} <= set(parsed.defects)


def test_decoded_size_beyond_the_budget_is_not_extracted() -> None:
    """A file whose decoded size exceeds the budget stays raw only; the text is read; flagged."""
    raw = base64_attachment(2 * 1024 * 1024)
    parsed, seconds = timed(raw, max_extracted_bytes=1024 * 1024)
    assert seconds < MAX_SECONDS
    assert "extracted_too_large" in parsed.defects
    assert parsed.attachments == ()
    assert parsed.body_text == "see the file\n"
    within = parse_mail(raw)
    assert [len(a.data) for a in within.attachments] == [2 * 1024 * 1024]
    assert "extracted_too_large" not in within.defects


def test_base64_never_decodes_to_more_than_it_encodes() -> None:
    """Base64 with padding and junk decodes to at most 3/4 of its size: no decompression bomb."""
    junk = b"QUJD" + b"=\r\n" * 100_000 + b"!!!!" * 100_000
    raw = (
        head("junk", content_type='multipart/mixed; boundary="b"')
        + b"--b\r\nContent-Type: application/octet-stream\r\n"
        + b"Content-Transfer-Encoding: base64\r\n\r\n"
        + junk
        + b"\r\n--b--\r\n"
    )
    parsed, seconds = timed(raw)
    assert seconds < MAX_SECONDS
    assert sum(len(a.data) for a in parsed.attachments) <= len(junk) * 3 // 4


def test_huge_html_body_is_cut_in_time() -> None:
    """An HTML-only body of several MB converts within the time bound; the cut is flagged."""
    html = b"<p>Gr&uuml;&szlig;e <b>aus</b> der Schule</p>\r\n" * 100_000
    raw = head("html", content_type="text/html; charset=utf-8") + html
    parsed, seconds = timed(raw)
    assert seconds < MAX_SECONDS
    assert parsed.body_text.startswith("Grüße aus der Schule\n")
    assert "html_truncated" in parsed.defects


def test_huge_text_body_is_cut_in_time() -> None:
    """A text body of 8 MB is read in time and cut at a line end to 5 million characters."""
    text = b"Zeile mit Text, Zeile mit Text, Zeile mit Text, Zeile mit Text!\r\n" * 125_000
    parsed, seconds = timed(head("text", content_type="text/plain") + text)
    assert seconds < MAX_SECONDS
    assert "body_truncated" in parsed.defects
    assert len(parsed.body_text) <= 5_000_001
    assert parsed.body_text.endswith("Text!\n")


def test_memory_stays_a_small_multiple_of_the_message() -> None:
    """Parsing a 4 MB mail allocates at most 25 times its size at the peak."""
    raw = base64_attachment(3 * 1024 * 1024)
    tracemalloc.start()
    try:
        parse_mail(raw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 25 * len(raw)


def test_every_flag_is_documented() -> None:
    """Every flag the limits set has a description for people reading parse_flags."""
    for name in ("too_many_parts", "too_deep", "header_too_large", "extracted_too_large"):
        assert FLAGS[name]
    assert all(re.fullmatch(r"[a-z_]+", name) for name in FLAGS)


# --- through the daemon --------------------------------------------------------------------------

DAEMON_CASES: dict[str, tuple[Callable[[], bytes], set[str]]] = {
    "parts": (lambda: many_parts(5000), {"too_many_parts"}),
    "deep": (lambda: nested_multiparts(500), {"too_deep"}),
    "forwards": (lambda: nested_messages(500), {"too_deep"}),
    "header": (lambda: huge_header(200 * 1024), {"header_too_large"}),
    "recipients": (lambda: many_recipients(20_000), {"too_many_addresses"}),
    "base64": (lambda: base64_attachment(3 * 1024 * 1024), set()),
}


@pytest.mark.parametrize("case", sorted(DAEMON_CASES))
async def test_absurd_mail_through_the_daemon(env: Env, case: str) -> None:
    """Through SMTP: answered 250 in time, raw kept byte for byte, flags in ticket show."""
    build, flags = DAEMON_CASES[case]
    raw = build()
    started = time.monotonic()
    code, text = await env.send(raw, mail_from=ANNA)
    elapsed = time.monotonic() - started
    assert code == 250, text
    assert elapsed < MAX_SECONDS
    number = re.search(r"ticket (\d+)", text)
    assert number is not None, text
    ((sha,),) = read_rows(
        env.data_dir,
        "SELECT raw_sha256 FROM messages WHERE message_id = ?",
        (f"<{case}@schule.example>",),
    )
    assert sha == hashlib.sha256(raw).hexdigest()
    assert stored_blob(env.data_dir, sha) == raw
    shown = await env.cli_json("ticket", "show", number.group(1))
    assert flags <= set(shown["articles"][0]["parse_flags"])
