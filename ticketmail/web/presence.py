"""Which agents have which desk ticket open (SPEC 9.1): an ephemeral registry in memory.

Presence is no ticket state: nothing here touches the database, so it costs a page view
nothing measurable and is lost on a restart. An agent counts as present on a ticket for
`WINDOW` after their last page view or heartbeat. The registry is bounded: each agent keeps
at most `PER_AGENT` tickets and all agents together `LIMIT` entries; past that the least
recently seen entry goes. It is used from the event loop only (no locks)."""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["LIMIT", "PER_AGENT", "WINDOW", "Presence", "Present"]

WINDOW = timedelta(minutes=5)  # SPEC 9.1: opened in the last 5 minutes
LIMIT = 4096  # entries in all: agents x tickets open at once, with room to spare
PER_AGENT = 32  # tickets one agent can be present on at once (tabs open)


@dataclass(frozen=True, slots=True)
class Present:
    """One agent on one ticket: when last seen there, and whether their answer form held
    text then (`typing`)."""

    ticket: int
    agent: str  # the agent's address
    name: str  # as shown to the others
    seen: datetime
    typing: bool


class Presence:
    """The agents present on each ticket, keyed by (ticket, agent), least recently seen
    first."""

    def __init__(self, *, limit: int = LIMIT, per_agent: int = PER_AGENT) -> None:
        self._limit = limit
        self._per_agent = per_agent
        self._entries: OrderedDict[tuple[int, str], Present] = OrderedDict()
        self._tickets: dict[int, dict[str, Present]] = {}
        self._of_agent: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._entries)

    def note(self, ticket: int, agent: str, name: str, *, typing: bool, now: datetime) -> None:
        """`agent` has `ticket` open at `now`; `typing`: their answer form holds text."""
        self._drop((ticket, agent))
        self._expire(now)
        if self._of_agent[agent] >= self._per_agent:
            self._drop(next(k for k in self._entries if k[1] == agent))
        if len(self._entries) >= self._limit:
            self._drop(next(iter(self._entries)))
        entry = Present(ticket=ticket, agent=agent, name=name, seen=now, typing=typing)
        self._entries[(ticket, agent)] = entry
        self._tickets.setdefault(ticket, {})[agent] = entry
        self._of_agent[agent] += 1

    def others(self, ticket: int, agent: str, *, now: datetime) -> tuple[Present, ...]:
        """The agents other than `agent` seen on `ticket` within the window, by name."""
        since = now - WINDOW
        found = self._tickets.get(ticket, {}).values()
        return tuple(sorted(
            (e for e in found if e.agent != agent and e.seen > since),
            key=lambda e: (e.name.casefold(), e.agent),
        ))  # fmt: skip

    def _expire(self, now: datetime) -> None:
        since = now - WINDOW
        while self._entries:
            key, oldest = next(iter(self._entries.items()))
            if oldest.seen > since:
                return
            self._drop(key)

    def _drop(self, key: tuple[int, str]) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        on_ticket = self._tickets[entry.ticket]
        del on_ticket[entry.agent]
        if not on_ticket:
            del self._tickets[entry.ticket]
        self._of_agent[entry.agent] -= 1
        if not self._of_agent[entry.agent]:
            del self._of_agent[entry.agent]
