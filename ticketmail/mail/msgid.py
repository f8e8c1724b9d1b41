"""Message-IDs ticketmail generates: random, naming their ticket, signed with a short HMAC.

`<tm.100001.3f9c0a1b2c3d4e5f.8a7b6c5d4e@stueber.de>`: the ticket number (0 for none), 64
random bits, and the first 10 hex digits of HMAC-SHA256(secret, local part before them).
Only an ID whose signature verifies is trusted as ours, for threading and loop detection;
one of this shape with a wrong signature is a forgery and names nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field

__all__ = ["SIGNATURE_HEX", "MessageIds"]

SIGNATURE_HEX = 10
_RANDOM_HEX = 16
_OURS = re.compile(
    rf"<(tm\.(\d{{1,12}})\.[0-9a-f]{{{_RANDOM_HEX}}})\.([0-9a-f]{{{SIGNATURE_HEX}}})@[^<>@\s]+>"
)


@dataclass(frozen=True, slots=True)
class MessageIds:
    """Makes and checks ticketmail's Message-IDs under one domain with one secret."""

    domain: str
    secret: bytes = field(repr=False)

    def _sign(self, local: str) -> str:
        digest = hmac.new(self.secret, local.encode("ascii"), hashlib.sha256).hexdigest()
        return digest[:SIGNATURE_HEX]

    def new(self, ticket: int | None = None) -> str:
        """A fresh signed Message-ID, naming `ticket` (or none)."""
        local = f"tm.{ticket or 0}.{secrets.token_hex(_RANDOM_HEX // 2)}"
        return f"<{local}.{self._sign(local)}@{self.domain}>"

    @staticmethod
    def looks_own(message_id: str) -> bool:
        """Shaped like one of ours (signature not checked)."""
        return _OURS.fullmatch(message_id.strip()) is not None

    def verify(self, message_id: str) -> int | None:
        """The ticket a genuine ID of ours names (0: none); None when it is not genuine."""
        match = _OURS.fullmatch(message_id.strip())
        if match is None:
            return None
        local, number, signature = match.groups()
        if not hmac.compare_digest(self._sign(local), signature):
            return None
        return int(number)

    def is_genuine(self, message_id: str) -> bool:
        return self.verify(message_id) is not None
