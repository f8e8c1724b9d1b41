"""What one SMTP client may take of intake: sessions per source, and the clocks of a session."""

from __future__ import annotations

import ipaddress
import math
from collections import Counter
from dataclasses import dataclass

from ticketmail.config import SmtpConfig

__all__ = ["Clocks", "Sources", "source_of"]


def source_of(host: str) -> str:
    """The source a session counts against: its IPv4 address, or its IPv6 /64 (an IPv4
    address mapped into IPv6 counts as that IPv4 address)."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host  # not an IP address (a UNIX socket): the peer as given
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address)


class Sources:
    """Sessions open per source, against `smtp.max_sessions_per_ip`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[str] = Counter()

    def enter(self, source: str) -> bool:
        """Count one more session of `source`; False (nothing counted) when it has its limit."""
        if self._open[source] >= self.limit:
            return False
        self._open[source] += 1
        return True

    def leave(self, source: str) -> None:
        self._open[source] -= 1
        if self._open[source] <= 0:
            del self._open[source]


@dataclass(frozen=True, slots=True)
class Clocks:
    """A session's time limits (RFC 5321 4.5.3.2), from the smtp config section.

    - `command`: counted from the last command (DATA under way has its own clocks);
    - `idle`: before MAIL as well, counted from the session's start or its last mail (NOOP,
      RSET, EHLO and the like count for nothing);
    - `lifetime`: the whole session (DATA under way may finish first);
    - `data_block`: DATA must bring `data_min_bytes` in each span this long;
    - `data_total`: all of one mail's DATA.
    """

    idle: float
    command: float
    lifetime: float
    data_block: float
    data_total: float
    data_min_bytes: int

    @classmethod
    def of(cls, smtp: SmtpConfig) -> Clocks:
        block_bytes = math.ceil(smtp.data_min_bytes_per_second * smtp.data_block_seconds)
        return cls(
            idle=smtp.idle_seconds,
            command=smtp.timeout_seconds,
            lifetime=smtp.session_max_seconds,
            data_block=smtp.data_block_seconds,
            data_total=smtp.data_max_seconds,
            data_min_bytes=max(1, block_bytes),  # at least a byte: a silent block ends DATA
        )
