"""aiosmtpd's private names that ticketmail uses: all of them, and only here.

aiosmtpd has no front door for two things the SMTP front does faster than aiosmtpd itself:

- `_reader`, the connection's StreamReader: the DATA body is read from it in large chunks
  (see `_dataread`) instead of aiosmtpd's line by line loop.
- `_getaddr`, the MAIL/RCPT path parser, which aiosmtpd's `smtp_MAIL` and `smtp_RCPT` call:
  a plain `<local@domain>` is parsed by one regex instead of the stdlib's RFC 5322 parser
  (about a tenth of the CPU a mail costs).

`PRIVATE_NAMES` lists them; the pin comment of aiosmtpd in pyproject.toml names the same,
and tests/test_aiosmtpd_pin.py fails, naming this module, when an aiosmtpd release changes
one of them or another module of ticketmail starts using one.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from aiosmtpd.smtp import SMTP

from ticketmail.smtp._dataread import DataState, read_data

__all__ = ["PRIVATE_NAMES", "FastPaths"]

PRIVATE_NAMES = ("_getaddr", "_reader")

# `<local@domain>` of plain dot-atoms: what nearly every MTA sends. Anything else (quoted
# local parts, address literals, source routes, odd dots) goes to aiosmtpd's full parser.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH = re.compile(rf"<({_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>")


class FastPaths(SMTP):
    """aiosmtpd's SMTP with the DATA body read in chunks and plain paths parsed by a regex."""

    async def read_data_chunked(self, write: Callable[[bytes], None]) -> DataState:
        """The DATA body up to <CRLF>.<CRLF>, read from the connection's own stream, to `write`."""
        return await read_data(
            self._reader, write, size_limit=self.data_size_limit, line_limit=self.line_length_limit
        )

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's MAIL/RCPT path parsing, without its RFC 5322 parser for plain paths.

        The result is the same, except that a path the parser crashes on is a malformed
        address (553 5.1.3) instead of an error.
        """
        plain = _PLAIN_PATH.match(arg) if arg else None
        if plain is None:
            try:
                result: tuple[str | None, str | None] = super()._getaddr(arg)
            except (IndexError, ValueError):  # CPython's parser on e.g. `MAIL FROM:a@`
                return None, None  # 553 5.1.3 malformed address, as for any unparsable path
            return result
        address = plain.group(1)
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, arg[plain.end() :].lstrip(" \t")
