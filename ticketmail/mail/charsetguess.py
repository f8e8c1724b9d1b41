"""Which charset 8-bit text is in when its mail declares none: escapes, Latin, detection.

Used for bytes that are not UTF-8 and have no charset of their own (raw 8-bit header text,
a text part without a charset parameter). In this order: ISO-2022 escape sequences name
their charset; text that reads as ordinary Latin-script text in windows-1252 is windows-1252
(one accented letter among ASCII letters, as German, French, Spanish ... write); anything
else goes to charset-normalizer, restricted to the legacy charsets undeclared mail comes in
(Cyrillic, Chinese, Japanese), and its guess is kept only when it reads the bytes strictly.
"""

from __future__ import annotations

import re

import charset_normalizer

__all__ = ["DETECTABLE", "decode_iso2022", "guess_charset", "iso2022_codec", "plausible_latin"]

# Legacy charsets detection chooses among: the ones of undeclared mail in the wild. Korean
# (EUC-KR/cp949) is left out: it reads most GB2312 bytes as well, and takes Chinese text for
# Korean more often than not; Korean clients declare their charset.
DETECTABLE = ("cp1251", "koi8_r", "gb18030", "big5", "cp932", "euc_jp")
# Codecs tried for text with ISO-2022 escapes (7-bit only); the first that reads it wins.
_CYRILLIC = ("cp1251", "koi8_r")
_ISO2022 = ("iso2022_jp_2", "iso2022_jp_ext", "iso2022_jp_3", "iso2022_kr")
_ESCAPE = re.compile(rb"\x1b(?:\$[@AB(]|\([BJI]|\$\)C)")
_WORD = re.compile(r"\w+")
# windows-1252 characters that appear in Shift_JIS or GBK bytes read as windows-1252 (lead
# bytes 0x83, 0x86-0x89, 0x8B, 0x98, 0x9B: florin, daggers, circumflex, per mille, single
# angle quotes, small tilde) and almost never in Western text.
_UNLIKELY = frozenset("\u0192\u2020\u2021\u02c6\u2030\u2039\u203a\u02dc")
_MAX_SAMPLE = 64 * 1024


def iso2022_codec(data: bytes) -> str | None:
    """The codec of 7-bit bytes with ISO-2022 escape sequences (ISO-2022-JP, -KR), or None."""
    if not data.isascii() or not _ESCAPE.search(data):
        return None
    for codec in _ISO2022:
        try:
            data.decode(codec)
        except UnicodeDecodeError:
            continue
        return codec
    return None


_JIS_MODE = re.compile(rb"\x1b(\$[@B]|\([BJI])")


def decode_iso2022(data: bytes) -> str | None:
    """The text of 7-bit ISO-2022 bytes, or None when they are none.

    Japanese mobile and Windows clients put NEC and IBM extensions (circled digits, ㈱)
    into ISO-2022-JP, which no Python codec reads (Microsoft's CP50220 does): such text is
    turned into the Shift_JIS bytes of the same characters and read as cp932.
    """
    codec = iso2022_codec(data)
    if codec is not None:
        return data.decode(codec)
    if not data.isascii() or not _JIS_MODE.search(data):
        return None
    out = bytearray()
    for index, chunk in enumerate(_JIS_MODE.split(data)):
        if index == 0:
            out += chunk
            continue
        if index % 2 == 1:
            mode = chunk
            continue
        if mode in (b"$@", b"$B"):
            for j1, j2 in zip(chunk[::2], chunk[1::2], strict=False):
                s1 = ((j1 - 0x21) >> 1) + 0x81
                s1 += 0x40 if s1 > 0x9F else 0
                s2 = j2 + (0x1F if j1 % 2 else 0x7E)
                s2 += 1 if j1 % 2 and s2 >= 0x7F else 0
                out += bytes((s1 & 0xFF, s2 & 0xFF))
        elif mode == b"(I":
            out += bytes((b | 0x80) for b in chunk)
        else:
            out += chunk
    try:
        return bytes(out).decode("cp932")
    except UnicodeDecodeError:
        return None


def plausible_latin(text: str) -> bool:
    """Does text read as Latin-script writing: no word mostly of accented letters?

    Cyrillic, Greek or CJK bytes read as windows-1252 give words of two or more accented
    letters and hardly an ASCII letter ("Ïðèâåò", "ÖÐÎÄ"); real Western words carry at most
    as many accented letters as plain ones, or two ("été", "Größe").
    """
    for char in text:
        if char in _UNLIKELY or "\x80" <= char <= "\x9f":
            return False
    for word in _WORD.findall(text):
        accented = sum(1 for c in word if not c.isascii())
        if accented > max(2, len(word) - accented):
            return False
    return True


def guess_charset(data: bytes) -> str | None:
    """The charset undeclared non-UTF-8 bytes are most probably in, or None for no guess."""
    escaped = iso2022_codec(data)
    if escaped is not None:
        return escaped
    try:
        latin = data.decode("cp1252")
    except UnicodeDecodeError:
        latin = None
    if latin is not None and plausible_latin(latin):
        return "cp1252"
    pool = list(DETECTABLE)
    while pool:  # a guess that reads no text is dropped, and the detector asked again
        best = charset_normalizer.from_bytes(data[:_MAX_SAMPLE], cp_isolation=pool).best()
        if best is None or best.encoding not in pool:
            return None
        pool.remove(best.encoding)
        guess = best.encoding
        if guess in _CYRILLIC:
            guess = max(_CYRILLIC, key=lambda codec: (_lowercase(data, codec), codec == guess))
        try:
            text = data.decode(guess)
        except (UnicodeDecodeError, LookupError):
            continue
        if _readable(text):
            return guess
    return None


def _readable(text: str) -> bool:
    """Are at least 80 % of the non-ASCII characters letters or CJK punctuation, and at most
    half of them half-width katakana? A guess that makes box drawing or symbols of the bytes
    ("ok │ ok"), or the katakana cp932 reads any single 8-bit byte as, read nothing."""
    other = [c for c in text if not c.isascii()]
    good = sum(1 for c in other if c.isalpha() or "\u3000" <= c <= "\u303f" or c >= "\uff00")
    halfwidth = sum(1 for c in other if "\uff61" <= c <= "\uff9f")
    return good >= 0.8 * len(other) and halfwidth <= 0.5 * len(other)


def _lowercase(data: bytes, codec: str) -> int:
    """How many more lower- than uppercase letters the bytes read as in codec.

    KOI8-R and windows-1251 put the lowercase Cyrillic letters where the other puts the
    uppercase ones; on short text the detector confuses them, but real text is mostly
    lowercase (a subject "тест" in KOI8-R reads "ФЕУФ" in windows-1251).
    """
    text = data.decode(codec, errors="replace")
    return sum(1 for c in text if c.islower()) - sum(1 for c in text if c.isupper())
