"""Encoded words with raw 8-bit bytes inside (old Outlook Express, Netscape) decode in the
charset they name: subjects, display names, file names (SPEC 4.5)."""

from __future__ import annotations

from conftest import Env
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ticketmail.mail.charsets import decode_header_value, escape_raw_words
from ticketmail.mail.parse import parse_mail

# `Prüfung morgen` as Outlook Express 5 wrote it: the ü (0xFC) unencoded inside the Q word.
SUBJECT = b"=?iso-8859-1?Q?Pr\xfcfung_morgen?="


def _mail(subject: bytes = b"Hallo", sender: bytes = b"anna@schule.example",
          files: bytes = b"") -> bytes:  # fmt: skip
    head = (
        b"From: " + sender + b"\nTo: support@stueber.de\nSubject: " + subject + b"\n"
        b"Date: Sun, 22 Nov 2026 10:00:00 +0100\nMessage-ID: <oe5-1@schule.example>\n"
        b"X-Mailer: Microsoft Outlook Express 5.50.4133.2400\nMIME-Version: 1.0\n"
    )
    if not files:
        return head + b"Content-Type: text/plain; charset=iso-8859-1\n\nDer Drucker.\n"
    return (
        head + b'Content-Type: multipart/mixed; boundary="=_OE5"\n\n'
        b"--=_OE5\nContent-Type: text/plain; charset=iso-8859-1\n\nDer Drucker.\n"
        + files
        + b"--=_OE5--\n"
    )


def test_subject_with_raw_byte_in_q_word() -> None:
    """A Q word's raw 0xFC is read in the word's charset: `Prüfung morgen`, not the word."""
    assert parse_mail(_mail(SUBJECT)).subject == "Prüfung morgen"


def test_subject_word_beside_raw_text_and_plain_words() -> None:
    """Raw bytes in a word and a proper word and plain text around it all decode."""
    subject = b"AW: =?iso-8859-1?Q?Pr\xfcfung?= =?iso-8859-1?Q?_f=FCr_morgen?= (Raum 12)"
    assert parse_mail(_mail(subject)).subject == "AW: Prüfung für morgen (Raum 12)"


def test_raw_bytes_read_in_the_charset_the_word_names() -> None:
    """The named charset decides, not a guess: 0xB9 is `š` in ISO-8859-2, 0xC4 `Д` in KOI8-R."""
    assert parse_mail(_mail(b"=?iso-8859-2?Q?Pro\xb9la?=")).subject == "Prošla"
    assert parse_mail(_mail(b"=?koi8-r?Q?\xe4\xcf\xd2\xcf\xc7\xc1?=")).subject == "Дорога"


def test_utf8_bytes_raw_in_a_latin1_word_are_utf8() -> None:
    """Raw UTF-8 in a word labelled latin-1 is UTF-8, as a properly encoded such word is."""
    assert parse_mail(_mail(b"=?iso-8859-1?Q?Pr\xc3\xbcfung?=")).subject == "Prüfung"


def test_display_name_with_raw_bytes_in_q_word() -> None:
    """A display name `=?iso-8859-1?Q?J=FCrgen_M<0xFC>ller?=` decodes to Jürgen Müller."""
    mail = parse_mail(
        _mail(sender=b"=?iso-8859-1?Q?J=FCrgen_M\xfcller?= <j.mueller@schule.example>")
    )
    assert mail.from_name == "Jürgen Müller"
    assert mail.from_addr == "j.mueller@schule.example"


def test_file_names_with_raw_bytes_in_q_word() -> None:
    """Content-Disposition filename and Content-Type name in RFC 2047 form with raw bytes."""
    files = (
        b"--=_OE5\nContent-Type: application/pdf\n"
        b'Content-Disposition: attachment; filename="=?iso-8859-1?Q?Pr\xfcfungsplan.pdf?="\n\n'
        b"%PDF\n"
        b'--=_OE5\nContent-Type: image/png; name="=?iso-8859-1?Q?Sch\xfcler_\xe4_1.png?="\n'
        b"Content-Transfer-Encoding: base64\n\niVBORw0KGgo=\n"
    )
    names = [a.filename for a in parse_mail(_mail(files=files)).attachments]
    assert names == ["Prüfungsplan.pdf", "Schüler ä 1.png"]


def test_forwarded_mail_named_after_its_subject_with_raw_bytes() -> None:
    """An attached mail is named after its subject, the raw byte read in the word's charset."""
    files = (
        b"--=_OE5\nContent-Type: message/rfc822\n\nFrom: ben@schule.example\n"
        b"Subject: " + SUBJECT + b"\n\nText\n"
    )
    names = [a.filename for a in parse_mail(_mail(files=files)).attachments]
    assert names == ["Prüfung morgen.eml"]


def test_raw_bytes_in_b_word_are_read_as_text() -> None:
    """Raw 8-bit bytes in a B word (no base64 holds them): no exception, the text as written
    in the named charset."""
    mail = parse_mail(_mail(b"=?iso-8859-1?B?Pr\xfcfung?= morgen"))
    assert mail.subject == "Prüfung morgen"
    files = (
        b'--=_OE5\nContent-Disposition: attachment; filename="=?iso-8859-1?B?\xc4rger.txt?="\n\nx\n'
    )
    assert [a.filename for a in parse_mail(_mail(files=files)).attachments] == ["Ärger.txt"]


def test_base64_mixed_with_raw_bytes_is_handled_gracefully() -> None:
    """A B word of base64 with raw bytes mixed in, or cut off: some text, no exception."""
    for subject in (
        b"=?utf-8?B?UHLDvGZ1bmc=\xfc\xfc?=",
        b"=?utf-8?B?\xff\xfe?=",
        b"=?x-bad?B?\x80?=",
    ):
        mail = parse_mail(_mail(subject))
        assert mail.subject
        assert mail.subject.isprintable()  # no surrogate escape leaks into the text


def test_already_decoded_text_inside_a_word_is_kept() -> None:
    """A word whose text a client already decoded (`=?iso-8859-1?Q?Prüfung?=`) shows it."""
    assert decode_header_value("=?iso-8859-1?Q?Pr\u00fcfung_morgen?=") == "Prüfung morgen"


def test_escaping_leaves_proper_words_and_plain_text_alone() -> None:
    """Only words with raw bytes are rewritten; a proper word and raw text outside stay."""
    value = "=?utf-8?Q?Gr=C3=BC=C3=9Fe?= and \udcfc raw"
    assert escape_raw_words(value) == value
    assert escape_raw_words("=?iso-8859-1?Q?a\udcfcb?=") == "=?iso-8859-1?Q?a=FCb?="


# --- a property: any text so written comes back ---------------------------------------------------

_CHARSETS = {"iso-8859-1": "latin-1", "windows-1252": "cp1252", "utf-8": "utf-8"}
_Q_PLAIN = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def _q_word_with_raw_bytes(label: str, data: bytes) -> bytes:
    """A Q word as the old clients wrote it: 8-bit bytes raw, ASCII specials encoded."""
    out = bytearray(b"=?" + label.encode() + b"?Q?")
    for b in data:
        if b >= 0x80 or b in _Q_PLAIN:
            out.append(b)
        elif b == 0x20:
            out += b"_"
        else:
            out += f"={b:02X}".encode()
    return bytes(out + b"?=")


@st.composite
def _texts(draw: st.DrawFn) -> tuple[str, str]:
    label = draw(st.sampled_from(sorted(_CHARSETS)))
    codec = _CHARSETS[label]
    # Characters the charset can write; no control characters (a header shows none) and no
    # surrogates; latin-1's 0x80-0x9F are C1 controls (Cc) and so left out too.
    alphabet = st.characters(codec=codec, exclude_categories=("Cc", "Cs"))
    text = draw(st.text(alphabet, min_size=1, max_size=30))
    return label, text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_texts(), st.sampled_from(["subject", "display name"]))
def test_property_raw_q_word_decodes_to_its_text(case: tuple[str, str], field: str) -> None:
    """Text in latin-1, windows-1252 or UTF-8, written as a Q word with raw 8-bit bytes,
    decodes to the same text (subject and display name)."""
    label, text = case
    assume(text == text.strip())  # a header's edges are trimmed
    data = text.encode(_CHARSETS[label])
    if label != "utf-8" and not data.isascii():
        # Valid UTF-8 under a Latin label is read as UTF-8 (a client's wrong label), raw or not.
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            assume(False)
    word = _q_word_with_raw_bytes(label, data)
    if field == "subject":
        assert parse_mail(_mail(word)).subject == text
    else:
        assert parse_mail(_mail(sender=word + b" <a@schule.example>")).from_name == text


# --- through the real daemon ---------------------------------------------------------------------


async def test_raw_encoded_words_end_to_end(env: Env) -> None:
    """Over SMTP: the ticket's subject and the attachment's name are decoded, not shown as
    encoded words."""
    files = (
        b"--=_OE5\nContent-Type: application/pdf\n"
        b'Content-Disposition: attachment; filename="=?iso-8859-1?Q?Pr\xfcfungsplan.pdf?="\n\n'
        b"%PDF-1.4\n"
    )
    raw = _mail(SUBJECT, b"=?iso-8859-1?Q?Anna_M\xfcller?= <anna@schule.example>", files)
    code, text = await env.send(raw, mail_from="anna@schule.example")
    assert (code, text) == (250, "2.0.0 Ok: ticket 100001")
    shown = await env.cli_json("ticket", "show", "100001")
    assert shown["subject"] == "Prüfung morgen"
    (article,) = shown["articles"]
    assert article["subject"] == "Prüfung morgen"
    assert [a["filename"] for a in article["attachments"]] == ["Prüfungsplan.pdf"]
    (listed,) = await env.cli_json("ticket", "list")
    assert listed["subject"] == "Prüfung morgen"
