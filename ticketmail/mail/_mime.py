"""A MIME part's headers and parameters as sent: raw header bytes to text, the mail's charset
hint, Content-Type and Content-Disposition parameters, filenames (for mail/parse only)."""

from __future__ import annotations

import binascii
import mimetypes
import quopri
import re
from email.message import Message

from ticketmail.mail.charsetguess import guess_charset
from ticketmail.mail.charsets import (
    CharsetHint,
    codec_for,
    decode_header_value,
    decode_labelled,
    decode_undeclared,
    escape_raw_words,
)

__all__ = [
    "MAX_HEADERS",
    "MAX_PARTS",
    "charset_hint",
    "clean",
    "content_type",
    "declared_charset",
    "disposition",
    "filename_of",
    "first",
    "guess_type",
    "header_pairs",
    "is_rendering",
    "misspelled_encoding",
    "param",
    "raw_items",
]

MAX_HEADERS = 2000
MAX_PARTS = 2000  # parts whose text and files are extracted


# Encoded-word charset labels, to find the charset a mail declares for its header text.
_WORD_CHARSET = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?[bBqQ]\?")


# Lines with 8-bit bytes: the sample a mail's undeclared charset is guessed from.
_EIGHT_BIT = re.compile(rb"[\x80-\xff]")


_MAX_SAMPLE_SCAN = 1024 * 1024


_MAX_SAMPLE = 64 * 1024


def header_pairs(msg: Message, hint: CharsetHint | None = None) -> list[tuple[str, str]]:
    """Header (name, value) pairs as sent; raw 8-bit bytes become text (see _clean)."""
    return [(clean(name).lower(), clean(value, hint)) for name, value in raw_items(msg)]


def raw_items(msg: Message) -> list[tuple[str, str]]:
    """Header (name, value) pairs as the parser read them: 8-bit bytes as surrogate escapes."""
    items = msg.raw_items() if hasattr(msg, "raw_items") else msg.items()
    return [(str(name), str(value)) for name, value in list(items)[:MAX_HEADERS]]


def clean(value: str, hint: CharsetHint | None = None) -> str:
    """Text without the surrogate escapes BytesParser leaves for undecodable bytes: inside an
    encoded word Q-encoded for the word's charset; elsewhere UTF-8, else the charset the mail
    declares, else a guess, else windows-1252 (decode_undeclared); ISO-2022 escapes decoded."""
    if value.isascii() and "\x1b" not in value:
        return value
    value = escape_raw_words(value)  # raw bytes inside an encoded word: in the word's charset
    if value.isascii() and "\x1b" not in value:
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return decode_undeclared(value.encode("utf-8", errors="surrogateescape"), hint)
    if value.isascii():  # ISO-2022 escapes: decoded before an address parser sees "(B"
        return decode_undeclared(value.encode("ascii"), hint)
    return value


def charset_hint(msg: Message, items: list[tuple[str, str]], raw: bytes) -> CharsetHint:
    """The charset a mail declares for text that has none (its first text part's, else its
    first encoded word's, US-ASCII and UTF-8 aside), and a guess from all its 8-bit lines
    that are not UTF-8, made only when it declares none."""
    declared = declared_charset(msg, items)
    if declared is not None:
        return CharsetHint(declared=declared)
    sample = bytearray()
    end = min(len(raw), _MAX_SAMPLE_SCAN)
    high = _EIGHT_BIT.search(raw, 0, end)
    while high is not None and len(sample) <= _MAX_SAMPLE:
        start = raw.rfind(b"\n", 0, high.start()) + 1
        stop = raw.find(b"\n", high.start())
        stop = len(raw) if stop < 0 else stop
        line = raw[start : min(stop, start + _MAX_SAMPLE)]
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            sample += line + b"\n"
        high = _EIGHT_BIT.search(raw, stop, end)
    return CharsetHint(guessed=guess_charset(bytes(sample)) if sample else None)


def declared_charset(msg: Message, items: list[tuple[str, str]]) -> str | None:
    """The first charset a mail names for its text parts, else for its encoded words."""
    labels = [str(param(part, "charset") or "") for part in _text_parts(msg)]
    labels += [m.group(1) for _, value in items for m in _WORD_CHARSET.finditer(value)]
    for label in labels:
        codec = codec_for(label)
        if codec not in (None, "ascii", "utf-8"):
            return codec
    return None


def _text_parts(msg: Message) -> list[Message]:
    """The mail's text parts (at most MAX_PARTS parts looked at), in mail order."""
    found: list[Message] = []
    for seen, part in enumerate(msg.walk()):
        if seen >= MAX_PARTS:
            break
        if content_type(part).startswith("text/"):
            found.append(part)
    return found


def first(raw_headers: list[tuple[str, str]], name: str) -> str:
    for hname, value in raw_headers:
        if hname == name:
            return value
    return ""


def content_type(part: Message) -> str:
    try:
        return clean(part.get_content_type())
    except Exception:
        return "text/plain"


def param(
    part: Message, name: str, *, header: str = "content-type", hint: CharsetHint | None = None
) -> str | None:
    """A parameter's value; an RFC 2231 one decoded, another one still raw (8-bit bytes as
    surrogate escapes, encoded words as they are)."""
    try:
        value = part.get_param(name, header=header)
    except Exception:
        return None
    if isinstance(value, tuple):
        return _rfc2231_text(value, hint)
    return str(value) if value is not None else None


def _rfc2231_text(value: tuple[object, ...], hint: CharsetHint | None) -> str | None:
    """An RFC 2231 parameter (charset, language, text) decoded with its charset label as
    ticketmail reads labels (latin-1 as windows-1252, a label that does not fit the bytes
    as none), not as Python's email does."""
    charset, _, text = value
    if text is None:
        return None
    try:
        data = str(text).encode("latin-1", errors="surrogateescape")
    except UnicodeEncodeError:  # already text beyond one byte a character
        return str(text)
    return decode_labelled(data, str(charset) if charset else None, hint=hint)


def disposition(part: Message) -> str:
    value = ""
    for name, raw in header_pairs(part):
        if name == "content-disposition":
            value = raw
            break
    return value.split(";", 1)[0].strip().lower()


def filename_of(part: Message, hint: CharsetHint | None = None) -> str | None:
    name = param(part, "filename", header="content-disposition", hint=hint)
    if name is None:
        name = param(part, "name", hint=hint)
    if name is None:
        return None
    name = name.strip()
    if "=?" in name or not name.isascii() or "\x1b" in name:
        name = decode_header_value(name, hint=hint)
    return name


def is_rendering(part: Message, ctype: str) -> bool:
    """A text alternative (plain, HTML, enriched, ...) rather than a file like an invitation."""
    return ctype.startswith("text/") and ctype != "text/calendar" and not filename_of(part)


def misspelled_encoding(part: Message) -> bytes | None:
    """The decoded payload when its transfer encoding is named with stray blanks or quotes
    (`base64 `, `"Base64"`), which Python's parser does not recognise; else None."""
    value = part.get("content-transfer-encoding")
    if value is None:
        return None
    raw = str(value).lower()
    cte = raw.strip().strip("\"'").strip()
    if cte == raw or cte not in ("base64", "quoted-printable"):
        return None
    payload = part.get_payload()
    if not isinstance(payload, str):
        return None
    data = payload.encode("ascii", errors="surrogateescape")
    if cte == "quoted-printable":
        return quopri.decodestring(data)
    cleaned = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
    if len(cleaned) % 4 == 1:
        cleaned = cleaned[:-1]  # a lone last character holds no whole byte
    return binascii.a2b_base64(cleaned + b"=" * (-len(cleaned) % 4))


def guess_type(filename: str) -> str:
    guessed, _ = mimetypes.guess_type(filename, strict=False)
    return guessed or "application/octet-stream"
