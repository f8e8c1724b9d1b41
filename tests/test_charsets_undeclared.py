"""Text whose charset nobody declared: raw 8-bit subjects, names, filenames and bodies."""

from __future__ import annotations

import base64
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import pytest

from ticketmail.mail.charsetguess import guess_charset, plausible_latin
from ticketmail.mail.charsets import decode_bytes, decode_header_value
from ticketmail.mail.parse import ParsedMail, parse_mail

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"


@dataclass(frozen=True)
class Sample:
    """Texts of one language, written in one legacy charset (or UTF-8)."""

    codec: str  # Python codec the bytes are written in
    label: str  # the charset label a client would declare
    subject: str
    name: str
    filename: str
    body: str


SAMPLES = [
    Sample(
        "gbk",
        "GBK",
        "关于下周会议的安排",
        "王小明",
        "第三季度销售报告.xlsx",
        "您好，请查收附件中的销售报告。如有问题请随时联系我。谢谢！",
    ),
    Sample(
        "gb2312",
        "GB2312",
        "产品说明书和价格表",
        "李华",
        "产品说明书.pdf",
        "各位同事：下周一上午九点在三楼会议室开会，请准时参加。",
    ),
    Sample(
        "shift_jis",
        "Shift_JIS",
        "会議の議事録について",
        "山田太郎",
        "見積書_2024年度.pdf",
        "お世話になっております。添付の見積書をご確認ください。よろしくお願いいたします。",
    ),
    Sample(
        "iso2022_jp",
        "ISO-2022-JP",
        "会議の議事録について",
        "山田太郎",
        "見積書.pdf",
        "お世話になっております。添付の見積書をご確認ください。よろしくお願いいたします。",
    ),
    Sample(
        "big5",
        "Big5",
        "關於下週會議的安排",
        "陳大文",
        "產品說明書.pdf",
        "您好，請查收附件中的產品說明書。如有任何問題，請隨時與我聯繫。謝謝！",
    ),
    Sample(
        "cp1251",
        "windows-1251",
        "Отчёт за третий квартал",
        "Иван Петров",
        "Договор поставки.docx",
        "Здравствуйте! Прошу ознакомиться с договором во вложении. С уважением, Иван.",
    ),
    Sample(
        "cp1252",
        "windows-1252",
        "Gebäudeplan für das Erdgeschoß",
        "Jürgen Müller",
        "Gebäudeplan Erdgeschoß.jpg",
        "Guten Tag, anbei der Gebäudeplan. Grüße aus Köln – Jürgen",
    ),
    Sample(
        "utf-8",
        "UTF-8",
        "Gebäudeplan für das Erdgeschoß",
        "Jürgen Müller",
        "Gebäudeplan Erdgeschoß.jpg",
        "Guten Tag, anbei der Gebäudeplan. Grüße aus Köln – Jürgen",
    ),
]
IDS = [s.codec for s in SAMPLES]


def build(
    s: Sample,
    *,
    body_charset: bool = False,
    disposition: bytes | None = None,
    enclosed: bool = False,
) -> bytes:
    """A mail whose subject, sender name and filename are raw bytes in the sample's charset;
    its text part declares that charset only with body_charset."""
    enc = s.codec
    ctype = b"text/plain"
    if body_charset:
        ctype += b"; charset=" + s.label.encode()
    if disposition is None:
        disposition = b'attachment; filename="' + s.filename.encode(enc) + b'"'
    parts = [
        b"Content-Type: " + ctype + b"\nContent-Transfer-Encoding: 8bit\n\n" + s.body.encode(enc),
        b"Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n"
        b"Content-Disposition: " + disposition + b"\n\n" + base64.b64encode(b"plan") + b"\n",
    ]
    if enclosed:
        inner = b"From: a@example.org\nSubject: " + s.subject.encode(enc) + b"\n\nforwarded text\n"
        parts.append(b"Content-Type: message/rfc822\n\n" + inner)
    head = (
        b"From: " + s.name.encode(enc) + b" <sender@example.org>\n"
        b"To: support@example.org\n"
        b"Subject: " + s.subject.encode(enc) + b"\n"
        b"Message-ID: <undeclared@example.org>\n"
        b"MIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="b"\n\n'
    )
    return head + b"".join(b"--b\n" + p + b"\n" for p in parts) + b"--b--\n"


def _file(mail: ParsedMail) -> str:
    return next(a.filename for a in mail.attachments if a.content_type != "message/rfc822")


@pytest.mark.parametrize("s", SAMPLES, ids=IDS)
def test_nothing_declared_subject_name_filename_body_read_right(s: Sample) -> None:
    """A mail that declares no charset at all is read in the charset it is written in."""
    mail = parse_mail(build(s))
    assert mail.subject == s.subject
    assert mail.from_name == s.name
    assert _file(mail) == s.filename
    assert mail.body_text == s.body + "\n"


@pytest.mark.parametrize("s", SAMPLES, ids=IDS)
def test_charset_of_text_part_reads_raw_header_bytes(s: Sample) -> None:
    """Raw header bytes are read in the charset the mail's text part declares."""
    mail = parse_mail(build(s, body_charset=True))
    assert (mail.subject, mail.from_name, _file(mail)) == (s.subject, s.name, s.filename)
    assert mail.body_text == s.body + "\n"


@pytest.mark.parametrize("s", SAMPLES, ids=IDS)
def test_enclosed_message_name_comes_from_its_raw_subject(s: Sample) -> None:
    """A message/rfc822 part's display name is its subject in the charset it is written in."""
    mail = parse_mail(build(s, enclosed=True))
    names = [a.filename for a in mail.attachments if a.content_type == "message/rfc822"]
    assert names == [s.subject + ".eml"]


@pytest.mark.parametrize("s", SAMPLES, ids=IDS)
@pytest.mark.parametrize("label", ["", "us-ascii", "x-unknown"])
def test_rfc2231_filename_with_missing_or_wrong_charset(s: Sample, label: str) -> None:
    """filename*= with no, US-ASCII or an unknown charset is read like undeclared bytes."""
    quoted = urllib.parse.quote(s.filename.encode(s.codec), safe="").encode()
    disposition = b"attachment; filename*=" + label.encode() + b"''" + quoted
    mail = parse_mail(build(s, disposition=disposition, body_charset=True))
    assert _file(mail) == s.filename


def test_rfc2231_utf8_bytes_under_latin1_label_are_utf8() -> None:
    """UTF-8 bytes in an RFC 2231 parameter labelled iso-8859-1 (a client's mistake) are UTF-8."""
    s = SAMPLES[-1]
    quoted = urllib.parse.quote(s.filename.encode("utf-8"), safe="").encode()
    mail = parse_mail(build(s, disposition=b"attachment; filename*=iso-8859-1''" + quoted))
    assert _file(mail) == "Gebäudeplan Erdgeschoß.jpg"


def test_rfc2231_gbk_bytes_under_utf8_label_are_gbk() -> None:
    """Bytes that are no UTF-8 under a UTF-8 label are read like undeclared bytes."""
    s = SAMPLES[0]
    quoted = urllib.parse.quote(s.filename.encode("gbk"), safe="").encode()
    mail = parse_mail(build(s, disposition=b"attachment; filename*=utf-8''" + quoted))
    assert _file(mail) == s.filename


def test_encoded_word_with_utf8_bytes_under_latin1_label() -> None:
    """An encoded word labelled iso-8859-1 that holds UTF-8 bytes reads as UTF-8."""
    assert decode_header_value("=?iso-8859-1?Q?Erdgescho=C3=9F?=") == "Erdgeschoß"
    assert decode_header_value("=?iso-8859-1?Q?Erdgescho=DF?=") == "Erdgeschoß"


def test_raw_utf8_filename_keeps_its_umlauts() -> None:
    """A plain filename="…" parameter in raw UTF-8 is read as UTF-8, not as U+FFFD."""
    mail = parse_mail(build(SAMPLES[-1], body_charset=True))
    assert _file(mail) == "Gebäudeplan Erdgeschoß.jpg"
    assert "\ufffd" not in mail.subject + mail.from_name + _file(mail)


def test_utf8_name_cut_inside_a_character_keeps_the_whole_ones() -> None:
    """A UTF-8 name cut to a length limit mid-character is UTF-8 without the cut character."""
    data = "Картинка с очень".encode()[:-1]
    assert decode_bytes(data, None) == "Картинка с очен"


def test_iso2022jp_raw_subject_and_body_without_label() -> None:
    """ISO-2022-JP text (7-bit, escape sequences) without a label is read as such."""
    text = "添付ファイルをご確認ください"
    raw = (
        b"From: a@example.org\nSubject: " + text.encode("iso2022_jp") + b"\n\n"
        + text.encode("iso2022_jp") + b"\n"
    )  # fmt: skip
    mail = parse_mail(raw)
    assert mail.subject == text
    assert mail.body_text == text + "\n"


def test_declared_charset_of_encoded_word_reads_raw_bytes_elsewhere() -> None:
    """A mail whose encoded words say GB2312 has its raw 8-bit filename read as GB2312."""
    subject = "=?gb2312?B?" + base64.b64encode("会议".encode("gb2312")).decode() + "?="
    raw = (
        b"From: a@example.org\nSubject: " + subject.encode() + b"\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n\nhi\n'
        b'--b\nContent-Type: application/pdf\nContent-Disposition: attachment; filename="'
        + "表.pdf".encode("gb2312") + b'"\n\nx\n--b--\n'
    )  # fmt: skip
    mail = parse_mail(raw)
    assert mail.subject == "会议"
    assert [a.filename for a in mail.attachments] == ["表.pdf"]


def test_latin_text_stays_windows_1252_and_others_do_not() -> None:
    """Western text reads as windows-1252; Cyrillic or CJK bytes read as such do not pass."""
    for text in ("Grüße aus Köln", "été à Paris", "Größe", "Müller", "señor año", "Øre"):
        assert plausible_latin(text), text
        assert guess_charset(text.encode("cp1252")) == "cp1252"
    for text, codec in (("Привет мир", "cp1251"), ("中文报告", "gbk"), ("テスト", "shift_jis")):
        assert not plausible_latin(text.encode(codec).decode("cp1252", errors="replace"))
        assert guess_charset(text.encode(codec)) != "cp1252"


def test_koi8r_lowercase_text_is_not_read_as_windows_1251_capitals() -> None:
    """Short KOI8-R text, which the detector takes for windows-1251, reads lowercase."""
    assert decode_bytes("тест тест\nпривет".encode("koi8_r"), None) == "тест тест\nпривет"


def test_lone_undefined_byte_stays_a_visible_marker() -> None:
    """A single byte no charset explains becomes U+FFFD, not a guessed symbol."""
    assert decode_bytes(b"ok \x81 ok", None) == "ok \ufffd ok"


def test_ascii_label_on_big5_text_is_detected() -> None:
    """Big5 text under a US-ASCII label (a client's default label) is read as Big5."""
    text = "您好，請查收附件中的產品說明書。如有任何問題，請隨時與我聯繫。"
    assert decode_bytes(text.encode("big5"), "us-ascii") == text


def _corpus(name: str) -> bytes:
    path = CORPUS / name
    if not path.is_file():
        pytest.skip(f"corpus file {name} not found under {CORPUS}")
    return path.read_bytes()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("enmime/testdata/mail/mime-bad-8bit-filename.raw", "管理.doc"),
        ("imap_tools/tests/messages/attachment_emails/attachment_nonascii_filename.eml",
         "ciële.txt"),
        ("spamscope-mail-parser/tests/mails/mail_test_1", "ФНС_РФ558.zip"),
    ],
)  # fmt: skip
def test_corpus_raw_filenames(name: str, expected: str) -> None:
    """Real mails' raw 8-bit filenames (UTF-8, windows-1251) are read without U+FFFD."""
    assert expected in [a.filename for a in parse_mail(_corpus(name)).attachments]


def test_corpus_koi8r_subject_and_body_without_charset() -> None:
    """RT's KOI8-R mail without any Content-Type reads "тест тест", not Latin-1 mojibake."""
    mail = parse_mail(_corpus("rt/t/data/emails/russian-subject-no-content-type"))
    assert mail.subject == "тест тест"


def test_corpus_big5_body_under_ascii_label() -> None:
    """enmime's Big5 text labelled US-ASCII reads as Big5 (its first line as written)."""
    mail = parse_mail(_corpus("enmime/testdata/parts/chardet-success-big-5.raw"))
    assert mail.body_text.startswith("顏是家訓  北齊  顏之推")


def test_iso2022jp_with_nec_extensions_is_read_through_cp932() -> None:
    """ISO-2022-JP holding NEC special characters (①, as carriers send) is read, not dropped."""
    data = "① 丸数字テスト".encode("cp932")
    jis = b"\x1b$B-!\x1b(B \x1b$B4]?t;z%F%9%H\x1b(B"
    assert decode_bytes(jis, "iso-2022-jp") == data.decode("cp932")
    assert decode_header_value(jis.decode("ascii")) == "① 丸数字テスト"


def test_corpus_iso2022jp_subject_with_circled_digit() -> None:
    """Redmine's ISO-2022-JP subject with a circled digit reads "① 丸数字テスト"."""
    mail = parse_mail(_corpus("redmine/test/fixtures/mail_handler/subject_japanese_3.eml"))
    assert mail.subject == "① 丸数字テスト"
