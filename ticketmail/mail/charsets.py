"""Turning bytes of a mail into text: charset labels, fallbacks and RFC 2047 encoded words."""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from dataclasses import dataclass
from functools import lru_cache

from ticketmail.mail.charsetguess import decode_iso2022, guess_charset, plausible_latin

__all__ = [
    "CharsetHint",
    "codec_for",
    "decode_bytes",
    "decode_header_value",
    "decode_labelled",
    "decode_undeclared",
    "escape_raw_words",
    "header_bytes",
]

# Labels real mail carries that Python does not know, or knows under another name.
_ALIASES = {
    "x-mac-cyrillic": "mac_cyrillic",
    "x-mac-roman": "mac_roman",
    "macintosh": "mac_roman",
    "iso-8859-8-i": "iso8859_8",
    "iso-8859-6-i": "iso8859_6",
    "iso-8859-8-e": "iso8859_8",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "x-windows-949": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "windows-874": "cp874",
    "x-sjis": "shift_jis",
    "shift-jis": "shift_jis",
    "x-euc-jp": "euc_jp",
    "iso-2022-jp-3": "iso2022_jp_3",
    "unicode-1-1-utf-7": "utf-7",
    "x-user-defined": "cp1252",
    "ansi_x3.4-1968": "ascii",
    "us-ascii": "ascii",
    "default": "cp1252",
    "utf8": "utf-8",
}

# The encoded text may hold spaces: RFC 2047 forbids them, some senders write them anyway.
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")
# Text codecs that are no charsets: they raise on every input or interpret escape sequences.
_NOT_CHARSETS = frozenset({"undefined", "unicode-escape", "raw-unicode-escape", "idna", "punycode"})
# ISO-8859-1 under any of its names is read as windows-1252, as the WHATWG Encoding Standard
# (and so browsers and most mail clients) does: mail labelled latin-1 is mostly written on
# Windows, and 0x80-0x9F are then the euro sign, curly quotes, dashes ... rather than C1
# control characters, which no text uses. The five bytes windows-1252 leaves undefined
# (0x81, 0x8D, 0x8F, 0x90, 0x9D) fail the strict decode, so decode_bytes goes on down its
# ladder and ends in a visible U+FFFD, never a silent loss. US-ASCII stays strict: 8-bit
# bytes contradict it, and decode_bytes tries UTF-8 (mislabelled UTF-8 is common), then
# windows-1252, which for bytes that are no UTF-8 is the WHATWG result.
_LATIN1_AS_WINDOWS_1252 = frozenset({"iso8859-1"})
# Single-byte Latin charsets: they read any bytes, so a guess of one must read as Latin text,
# and valid UTF-8 under such a label in a header is UTF-8 (a label the client got wrong).
_LATIN = frozenset(
    {"cp1252", "cp1250", "cp1254", "cp1257", "iso8859-2", "iso8859-9", "iso8859-15", "mac-roman"}
)
_FOLD = re.compile(r"\r?\n[ \t]")
# Control characters never belong in a header's text (a tab may stay).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f]")


@lru_cache(maxsize=256)
def codec_for(label: str | None) -> str | None:
    """The Python codec name for a charset label, or None if it is unknown or unusable."""
    if not label:
        return None
    name = label.strip().strip("\"'").lower()
    # RFC 2231 / RFC 2184 language suffix: "utf-8*de"
    name = name.split("*", 1)[0]
    name = _ALIASES.get(name, name)
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    # Codecs that are not text encodings (rot13, base64, ...) are not charsets.
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_CHARSETS:
        return None
    if info.name in _LATIN1_AS_WINDOWS_1252:
        return "cp1252"
    if info.name == "shift_jis":  # as WHATWG: with the NEC and IBM extensions (①, ㈱)
        return "cp932"
    return info.name


_C1 = re.compile("[\x80-\x9f]")


@dataclass(frozen=True, slots=True)
class CharsetHint:
    """What one mail tells about the charset of its undeclared 8-bit text: the first charset
    it declares elsewhere (a text part, an encoded word), and one guess from all such text."""

    declared: str | None = None
    guessed: str | None = None


def _undeclared(data: bytes) -> bool:
    """Bytes a missing label says nothing about: 8-bit, or ISO-2022 escapes."""
    return not data.isascii() or b"\x1b" in data


_BEYOND_C1 = re.compile(rb"[\x1b\xa0-\xff]")


def _beyond_c1(data: bytes) -> bool:
    return _BEYOND_C1.search(data) is not None


def decode_undeclared(data: bytes, hint: CharsetHint | None = None) -> str:
    """Bytes with no charset of their own: UTF-8 when they are UTF-8, else the charset the
    mail declares elsewhere, else a guess (the mail's, then one for these bytes), else
    windows-1252. A Latin charset counts only where the text reads as Latin-script writing."""
    escaped = decode_iso2022(data)
    if escaped is not None:
        return escaped
    try:
        # A name cut to a length limit may end inside a character: still UTF-8 when other
        # characters are, the cut one's first bytes dropped (the decoder holds them back).
        text = codecs.getincrementaldecoder("utf-8")().decode(data, final=False)
    except UnicodeDecodeError:
        pass
    else:
        if not text.isascii():
            return text
    candidates = (hint.declared, hint.guessed) if hint is not None else ()
    for codec in (*candidates, guess_charset(data)):
        if codec is None:
            continue
        try:
            text = data.decode(codec)
        except (UnicodeDecodeError, LookupError):
            continue
        if codec_for(codec) not in _LATIN or plausible_latin(text):
            return text
    return decode_bytes(data, "cp1252")


def decode_labelled(data: bytes, label: str | None, *, hint: CharsetHint | None = None) -> str:
    """Header bytes under a charset label (an encoded word, an RFC 2231 parameter).

    A missing, unknown or UTF-8 label says nothing about bytes that do not fit it: they are
    read as undeclared. Valid UTF-8 under a single-byte Latin label is UTF-8.
    """
    codec = codec_for(label)
    if codec in (None, "utf-8"):
        return decode_undeclared(data, hint) if _undeclared(data) else data.decode("ascii")
    if codec in _LATIN and not data.isascii():
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return decode_bytes(data, codec, hint=hint)


def decode_bytes(data: bytes, declared: str | None, *, hint: CharsetHint | None = None) -> str:
    """Decode body or header bytes: declared charset, then UTF-8, then windows-1252.

    Only when none of them fits the bytes strictly is a replacement marker (U+FFFD) used,
    so a character is never lost silently: in the declared charset, or in windows-1252 when
    the declared one is US-ASCII (which would replace every 8-bit byte, not only the bad ones).
    Bytes with no usable label (none, an unknown one) are read as undeclared, and so are
    bytes under a US-ASCII label that hold more than windows-1252 punctuation (0x80-0x9F:
    curly quotes, dashes, the euro sign of a Windows text the client called ASCII).
    """
    codec = codec_for(declared)
    if (codec is None and _undeclared(data)) or (codec == "ascii" and _beyond_c1(data)):
        return decode_undeclared(data, hint)
    if codec is not None and codec.startswith("iso2022") and b"\x1b" in data:
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            escaped = decode_iso2022(data)  # NEC or IBM extensions, or another ISO-2022
            if escaped is not None:
                return escaped
    tried: list[str] = []
    for candidate in (codec, "utf-8", "cp1252"):
        if candidate is None or candidate in tried:
            continue
        tried.append(candidate)
        try:
            text = data.decode(candidate)
        except (UnicodeError, LookupError):
            continue
        # A guess that yields C1 control characters (invisible, never typed) is wrong: UTF-8
        # bytes C2 80-C2 9F under a latin-1 label are windows-1252 text, not controls.
        if len(tried) == 1 or not _C1.search(text):
            return text
    last_resort = "cp1252" if tried[0] == "ascii" else tried[0]
    try:
        return data.decode(last_resort, errors="replace")
    except (UnicodeError, LookupError):  # pragma: no cover - a codec that rejects "replace"
        return data.decode("utf-8", errors="replace")


def header_bytes(value: str) -> bytes:
    """The bytes behind a header string that may hold surrogate-escaped 8-bit bytes."""
    return value.encode("utf-8", errors="surrogateescape")


def _decode_raw_text(text: str, hint: CharsetHint | None) -> str:
    """Header text outside encoded words: raw 8-bit bytes are read as undeclared."""
    if text.isascii() and "\x1b" not in text:
        return text
    try:
        data = header_bytes(text)
    except UnicodeEncodeError:  # pragma: no cover - lone surrogates of another kind
        return text.encode("utf-8", errors="replace").decode("utf-8")
    return decode_undeclared(data, hint)


# An encoded word holding raw 8-bit bytes, which the parser leaves as surrogate escapes: old
# Outlook Express and Netscape versions wrote `=?iso-8859-1?Q?Pr<0xFC>fung?=`, the byte
# unencoded.
_RAW_IN_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*[\udc80-\udcff][^?]*)\?=")
_Q_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!*+-/")


def escape_raw_words(value: str) -> str:
    """A raw header value whose encoded words hold raw 8-bit bytes, those bytes Q-encoded, so
    that the words decode in the charset they name rather than with the rest of the header.
    A B word with raw bytes is no base64: its text is taken as it stands (best effort)."""
    if "=?" not in value:
        return value
    return _RAW_IN_WORD.sub(_escaped_word, value)


def _escaped_word(match: re.Match[str]) -> str:
    charset, encoding, payload = match.groups()
    try:
        data = payload.encode("ascii", errors="surrogateescape")
    except UnicodeEncodeError:  # characters beyond bytes: nothing raw to rescue
        return match.group(0)
    if encoding in "qQ":
        text = "".join(f"={b:02X}" if b >= 0x80 else chr(b) for b in data)
    else:
        text = "".join(chr(b) if b in _Q_SAFE else f"={b:02X}" for b in data)
    return f"=?{charset}?Q?{text}?="


def _literal_bytes(payload: str, codec: str | None) -> bytes:
    """The bytes of a word's text that is not ASCII: raw bytes (surrogate escapes) as they
    were, characters already decoded in the charset the word names (else UTF-8)."""
    try:
        return payload.encode(codec or "utf-8", errors="surrogateescape")
    except (UnicodeEncodeError, LookupError):
        return payload.encode("utf-8", errors="surrogateescape")


def _word_bytes(encoding: str, payload: str, codec: str | None = None) -> bytes | None:
    raw = not payload.isascii()
    data = _literal_bytes(payload, codec) if raw else payload.encode("ascii")
    if encoding in "bB":
        if raw:
            return data  # base64 holds no 8-bit bytes: the text as it stands
        cleaned = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
        cleaned += b"=" * (-len(cleaned) % 4)
        try:
            return base64.b64decode(cleaned)
        except (binascii.Error, ValueError):
            return None
    try:
        return binascii.a2b_qp(data, header=True)  # header: "_" is a space
    except (binascii.Error, ValueError):
        return None


def decode_header_value(raw: str, *, hint: CharsetHint | None = None) -> str:
    """Decode a raw header value: unfold, RFC 2047 words (also broken ones), 8-bit bytes.

    Adjacent encoded words in the same charset are joined before decoding, so a multi-byte
    character split across two words comes out whole. Whitespace between encoded words is
    dropped as RFC 2047 says.
    """
    text = _FOLD.sub(" ", raw).replace("\r", "").replace("\n", "")
    if text.isascii() and "=?" not in text and "\x1b" not in text:  # most: nothing to decode
        return _CONTROL.sub(" ", text).strip()
    out: list[str] = []
    pending: bytearray = bytearray()
    pending_charset: str | None = None
    pos = 0

    def flush() -> None:
        nonlocal pending, pending_charset
        if pending:
            out.append(decode_labelled(bytes(pending), pending_charset, hint=hint))
        pending = bytearray()
        pending_charset = None

    last_was_word = False
    for match in _ENCODED_WORD.finditer(text):
        between = text[pos : match.start()]
        if between and not (last_was_word and between.isspace()):
            flush()
            out.append(_decode_raw_text(between, hint))
        data = _word_bytes(match.group(2), match.group(3), codec_for(match.group(1)))
        if data is None:
            flush()
            out.append(match.group(0))
            last_was_word = False
        else:
            label = codec_for(match.group(1)) or match.group(1)
            if pending and label != pending_charset:
                flush()
            pending_charset = label
            pending.extend(data)
            last_was_word = True
        pos = match.end()
    flush()
    out.append(_decode_raw_text(text[pos:], hint))
    result = "".join(out)
    return _CONTROL.sub(" ", result).strip()
