"""Reading an SMTP DATA body in large chunks instead of line by line (RFC 5321 4.5.2).

aiosmtpd reads DATA one line at a time in Python; for a 200 KB attachment that is thousands
of awaits. Here the stream is searched for `.<CRLF>` with StreamReader's C-level search, and
a hit counts as the end only where it stands at the start of a line after a CRLF. So the
protections stay: only <CRLF>.<CRLF> ends the data (a bare LF before or after the dot does
not — the SMTP smuggling fix), over-size data is drained and refused, over-long lines are
refused, and dot-stuffing is undone piece by piece. The body goes to a writer as it arrives
(smtp/spool.py), so a large mail is never held whole here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from enum import Enum

__all__ = ["DataState", "read_data"]

_DOT_CRLF = b".\r\n"


class DataState(Enum):
    OK = "ok"
    TOO_MUCH = "too_much"
    TOO_LONG = "too_long"


def _longest_line(chunk: bytes, carry: int, *, limit: int) -> tuple[int, int]:
    """(longest complete line in chunk, length of its unfinished last line), with the
    unfinished line of the previous chunk (`carry` bytes) counted in.

    When the unfinished line and the chunk together are within `limit`, no line can be
    longer: the longest is given as 0 and only the unfinished last line is measured (most
    chunks of most mails).
    """
    if carry + len(chunk) <= limit:
        last = chunk.rfind(b"\r\n")
        return 0, (carry + len(chunk) if last < 0 else len(chunk) - last - 2)
    lines = chunk.split(b"\r\n")
    if len(lines) == 1:
        return 0, carry + len(chunk)
    longest = max(carry + len(lines[0]) + 2, max((len(x) + 2 for x in lines[1:-1]), default=0))
    return longest, len(lines[-1])


def _unstuffed(body: bytes, tail: bytes) -> bytes:
    """`body` with the first dot of every line that starts with one removed; `tail` is what
    came before it (its last two bytes, a CRLF at the start of the data)."""
    if b"." not in body:
        return body
    return (tail + body).replace(b"\r\n.", b"\r\n")[len(tail) :]


async def read_data(
    reader: asyncio.StreamReader,
    write: Callable[[bytes], None],
    *,
    size_limit: int | None,
    line_limit: int,
) -> DataState:
    """Read up to and including the terminating <CRLF>.<CRLF> (or a first line of ".").

    The body goes to `write` piece by piece, dot-stuffing undone; once the state is no
    longer OK nothing more is written (the caller drops what it got).
    """
    total = 0
    state = DataState.OK
    carry = 0  # length of the unfinished line at the end of what was read so far
    tail = b"\r\n"  # the last two bytes read so far (the data starts at a line start)
    while True:
        try:
            chunk = await reader.readuntil(_DOT_CRLF)
        except asyncio.LimitOverrunError as exc:
            # No ".<CRLF>" within the reader's limit: take what is safe and go on.
            chunk = await reader.readexactly(exc.consumed)
        except asyncio.IncompleteReadError as exc:
            raise ConnectionResetError("connection closed during DATA") from exc
        # The dot ends the data only at a line start: right after a CRLF, or first of all.
        dot_at = len(chunk) - 3
        is_end = chunk.endswith(_DOT_CRLF) and (tail + chunk[:dot_at])[-2:] == b"\r\n"
        body = chunk[:dot_at] if is_end else chunk
        total += len(body)
        if state is DataState.OK:
            longest, carry = _longest_line(body, carry, limit=line_limit)
            if max(longest, carry) > line_limit:
                state = DataState.TOO_LONG
            elif size_limit and total > size_limit:
                state = DataState.TOO_MUCH
            else:
                write(_unstuffed(body, tail))
        tail = (tail + body)[-2:]
        if is_end:
            return state
