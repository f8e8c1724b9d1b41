"""Which agents have which desk ticket open (SPEC 9.1): in memory on one node, or shared by
the nodes through PostgreSQL without durable writes (SPEC 10).

Presence is no ticket state: it never goes through the writer, so it costs a page view
nothing measurable and may be lost on a restart. An agent counts as present on a ticket for
`WINDOW` after their last page view or heartbeat. `Presence`, the registry in memory (SQLite:
one node), is bounded: each agent keeps at most `PER_AGENT` tickets and all agents together
`LIMIT` entries; past that the least recently seen entry goes; it is used from the event loop
only (no locks). `SharedPresence` (PostgreSQL) keeps the same in the database's UNLOGGED
table (storage/presence.py), on one thread with a connection of its own, so that an agent on
one node is seen on every node."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import Counter, OrderedDict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import structlog

from ticketmail.storage import presence as shared
from ticketmail.storage.dialect import DATABASE_ERRORS, Conn
from ticketmail.storage.paths import DatabaseTarget
from ticketmail.storage.presence import Present

__all__ = [
    "LIMIT",
    "PER_AGENT",
    "WINDOW",
    "Board",
    "Presence",
    "Present",
    "SharedPresence",
    "presence_for",
]

log = structlog.get_logger()

WINDOW = timedelta(minutes=5)  # SPEC 9.1: opened in the last 5 minutes
LIMIT = 4096  # entries in all: agents x tickets open at once, with room to spare
PER_AGENT = 32  # tickets one agent can be present on at once (tabs open)
CLOSE_SECONDS = 5.0  # how long closing waits for a note under way


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

    async def visit(
        self, ticket: int, agent: str, name: str, *, typing: bool, now: datetime, record: bool
    ) -> tuple[Present, ...]:
        """The agents other than `agent` on `ticket` at `now`; when `record` (a page view or
        a heartbeat, never a HEAD), `agent` is noted there first."""
        if record:
            self.note(ticket, agent, name, typing=typing, now=now)
        return self.others(ticket, agent, now=now)

    async def close(self) -> None:
        """Nothing to close: the registry goes with the process."""

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


class SharedPresence:
    """Presence in the database every node uses (PostgreSQL): notes and reads on one thread
    of its own, with a connection of its own, never the writer's. A database error loses
    presence, never the page: it is logged, the page shows nobody, and the next call
    connects again."""

    def __init__(self, target: DatabaseTarget, *, per_agent: int = PER_AGENT) -> None:
        self._target = target
        self._per_agent = per_agent
        self._thread = ThreadPoolExecutor(1, "ticketmail-presence")
        self._conn: Conn | None = None  # used on the thread only

    async def visit(
        self, ticket: int, agent: str, name: str, *, typing: bool, now: datetime, record: bool
    ) -> tuple[Present, ...]:
        """As `Presence.visit`, for every node."""
        call = functools.partial(self._visit, ticket, agent, name, typing, now, record)
        return await asyncio.get_running_loop().run_in_executor(self._thread, call)

    def _visit(
        self, ticket: int, agent: str, name: str, typing: bool, now: datetime, record: bool
    ) -> tuple[Present, ...]:
        since = now - WINDOW
        try:
            if self._conn is None:
                self._conn = shared.open_presence(self._target)
            if record:
                shared.note(self._conn, ticket, agent, name, typing=typing, now=now,
                            since=since, per_agent=self._per_agent)  # fmt: skip
            return shared.others(self._conn, ticket, agent, since=since)
        except DATABASE_ERRORS as exc:
            log.error("presence_failed", ticket=ticket, error=f"{type(exc).__name__}: {exc}")
            self._disconnect()
            return ()

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(*DATABASE_ERRORS):
                conn.close()

    async def close(self) -> None:
        """The connection closed on its thread, after the note under way (bounded)."""
        loop = asyncio.get_running_loop()
        closing = loop.run_in_executor(self._thread, self._disconnect)
        self._thread.shutdown(wait=False)
        try:
            await asyncio.wait_for(closing, CLOSE_SECONDS)
        except TimeoutError:
            log.error("presence_close_late", seconds=CLOSE_SECONDS)


Board = Presence | SharedPresence


def presence_for(target: DatabaseTarget) -> Board:
    """Shared through the database on PostgreSQL (several nodes); in memory on SQLite."""
    return SharedPresence(target) if target.postgres else Presence()
