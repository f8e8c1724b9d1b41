"""uuencoded files inside a text body: `begin 644 name` ... `end` blocks cut out and decoded.

Old mailers (Lotus Notes, some school administration software, Usenet habits) put files
into the body this way instead of MIME parts. A block counts only when it is whole: a
`begin` line, lines that all decode, and an `end` line; anything else stays text.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass

__all__ = ["UuFile", "split_uuencoded"]

_BEGIN = re.compile(r"^begin(-base64)? +[0-7]{3,4} ?(.*?)\s*$")
_BASE64_END = "===="
_MAX_LINE = 200  # classic lines are 61 characters; a longer one is no uuencode
_SLACK = 4  # characters a line may differ from what its count says (padding, lost blanks)


@dataclass(frozen=True, slots=True)
class UuFile:
    filename: str
    data: bytes


def split_uuencoded(text: str, /, *, max_files: int) -> tuple[str, tuple[UuFile, ...]]:
    """The text without its whole uuencoded blocks, and the files they held."""
    if "begin" not in text:
        return text, ()
    lines = text.split("\n")
    kept: list[str] = []
    files: list[UuFile] = []
    i = 0
    while i < len(lines):
        begin = _BEGIN.match(lines[i]) if len(files) < max_files else None
        block = _block(lines, i + 1, base64=bool(begin.group(1))) if begin else None
        if begin is None or block is None:
            kept.append(lines[i])
            i += 1
            continue
        data, after = block
        files.append(UuFile(begin.group(2), data))
        i = after
    return "\n".join(kept), tuple(files)


def _block(lines: list[str], start: int, *, base64: bool) -> tuple[bytes, int] | None:
    """Bytes of the block whose body starts at `start`, and the index after its end line."""
    chunks: list[bytes] = []
    for j in range(start, len(lines)):
        line = lines[j].rstrip("\r")
        if line == _BASE64_END if base64 else line.rstrip() == "end":
            return b"".join(chunks), j + 1
        if len(line) > _MAX_LINE or not line.isascii():
            return None
        try:
            chunks.append(_base64_line(line) if base64 else _uu_line(line))
        except binascii.Error:
            return None
    return None  # no end line: not a block


def _uu_line(line: str) -> bytes:
    if not line.strip() or line.strip() == "`":
        return b""  # the zero-length line before `end`
    data = line.encode("ascii")
    expected = 1 + (((data[0] - 32) & 63) + 2) // 3 * 4
    if abs(len(data) - expected) > _SLACK:
        raise binascii.Error("line length does not match its count")  # prose, not uuencode
    try:
        return binascii.a2b_uu(data)
    except binascii.Error:
        # Some encoders pad lines with extra characters; the length byte says what counts.
        count = (((data[0] - 32) & 63) * 4 + 5) // 3
        return binascii.a2b_uu(data[:count])


def _base64_line(line: str) -> bytes:
    return binascii.a2b_base64(line.encode("ascii"), strict_mode=False)
