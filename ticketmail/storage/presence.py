"""Every SQL statement of presence shared by the nodes (SPEC 9.1, 10): which agent has which
desk ticket open, in PostgreSQL's UNLOGGED table `desk_presence`.

Presence is no ticket state. Its rows are written on a connection of their own
(`open_presence`), never by the writer: no write lock is taken, no commit waits for the WAL
(an UNLOGGED table writes none; `synchronous_commit` is off besides), and a crash of the
database empties the table, which is all presence may lose. Each note deletes the rows older
than the window and keeps at most `per_agent` tickets of one agent, so the table stays small
by itself. On SQLite presence stays in the web's memory (web/presence.py): one node has
nobody to share it with.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ticketmail.storage import postgres
from ticketmail.storage.dialect import Conn
from ticketmail.storage.paths import DatabaseTarget

__all__ = ["Present", "note", "open_presence", "others"]


@dataclass(frozen=True, slots=True)
class Present:
    """One agent on one ticket: when last seen there, and whether their answer form held
    text then (`typing`)."""

    ticket: int
    agent: str  # the agent's address
    name: str  # as shown to the others
    seen: datetime
    typing: bool


def open_presence(target: DatabaseTarget) -> Conn:
    """A connection for presence alone (autocommit; its commits never wait for a flush)."""
    conn = postgres.connect(target.url, application="ticketmail-presence")
    conn.execute("SET synchronous_commit = off")
    return conn


def note(
    conn: Conn,
    ticket: int,
    agent: str,
    name: str,
    *,
    typing: bool,
    now: datetime,
    since: datetime,
    per_agent: int,
) -> None:
    """`agent` has `ticket` open at `now`; rows last seen at or before `since` go, and the
    agent's least recently seen tickets past `per_agent`."""
    conn.execute("DELETE FROM desk_presence WHERE seen <= ?", (since,))
    conn.execute(
        "INSERT INTO desk_presence(ticket, agent, name, seen, typing) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT(ticket, agent) DO UPDATE SET name = excluded.name, seen = excluded.seen, "
        "typing = excluded.typing",
        (ticket, agent, name, now, int(typing)),
    )
    conn.execute(
        "DELETE FROM desk_presence WHERE agent = :agent AND ticket NOT IN "
        "(SELECT ticket FROM desk_presence WHERE agent = :agent "
        " ORDER BY seen DESC, ticket DESC LIMIT :keep)",
        {"agent": agent, "keep": per_agent},
    )


def others(conn: Conn, ticket: int, agent: str, *, since: datetime) -> tuple[Present, ...]:
    """The agents other than `agent` seen on `ticket` after `since`, by name."""
    rows = conn.execute(
        "SELECT ticket, agent, name, seen, typing FROM desk_presence "
        "WHERE ticket = ? AND agent <> ? AND seen > ?",
        (ticket, agent, since),
    ).fetchall()
    found = [Present(int(r[0]), r[1], r[2], r[3], bool(r[4])) for r in rows]
    return tuple(sorted(found, key=lambda p: (p.name.casefold(), p.agent)))
