"""Merging one ticket into another of the same institution (SPEC 9.1), and following a
merged ticket to the one that took it: the SQL of both, plain functions run in a write job."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ticketmail.errors import NotFoundError, RefusedError
from ticketmail.models import MERGED
from ticketmail.storage._rows import iso
from ticketmail.storage.dialect import Conn
from ticketmail.storage.tickets import record_change, version_of

__all__ = [
    "MAX_CHAIN",
    "MergeRefused",
    "Merged",
    "SourceMerged",
    "final_number",
    "merge_ticket",
    "merged_into_of",
    "refuse_merged",
]

# How many merged tickets a mail's tag or reference is followed through. A merge points the
# tickets merged into its source at its target, so a chain is one step long; the bound only
# keeps a damaged database from looping.
MAX_CHAIN = 20


@dataclass(frozen=True, slots=True)
class Merged:
    """A merge done: `source` is now 'merged' into `into`, which has its articles."""

    source: int
    into: int
    customer: str
    articles: int  # articles moved
    files: int  # of them, attachments
    source_version: int
    into_version: int


class MergeRefused(RefusedError):
    """A merge that must not be done; `reason`: self, institutions, source_merged,
    into_merged. Nothing changed."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class SourceMerged(RefusedError):
    """An action on a merged ticket, which is read-only: nothing was done."""

    def __init__(self, number: int, into: int) -> None:
        super().__init__(
            f"ticket {number} is merged into ticket {into} and can no longer be changed; "
            f"act on ticket {into}"
        )
        self.number = number
        self.into = into


def _row(conn: Conn, number: int) -> tuple[str, int | None] | None:
    """(institution, merged_into) of a ticket; None: no such ticket."""
    row = conn.execute(
        "SELECT customer, merged_into FROM tickets WHERE number = ?", (number,)
    ).fetchone()
    return (str(row[0]), None if row[1] is None else int(row[1])) if row is not None else None


def final_number(conn: Conn, number: int) -> int:
    """The ticket a mail naming ticket `number` lands on: itself, or the ticket it was
    merged into (followed at most MAX_CHAIN steps)."""
    for _ in range(MAX_CHAIN):
        row = _row(conn, number)
        if row is None or row[1] is None:
            return number
        number = int(row[1])
    return number


def refuse_merged(conn: Conn, number: int) -> None:
    """Raise SourceMerged when ticket `number` is merged (a merged ticket is read-only)."""
    row = _row(conn, number)
    if row is not None and row[1] is not None:
        raise SourceMerged(number, int(row[1]))


def merge_ticket(conn: Conn, source: int, into: int, *, by: str, now: datetime) -> Merged:
    """Merge ticket `source` into ticket `into` of the same institution, as done `by` an
    agent: the source's articles (with their files, their dates and Message-IDs) move to
    the target, where they stand in time order; the source becomes 'merged' with
    `merged_into`; both tickets' versions rise and both histories keep the merge
    (what 'merge', from the source's number, to the target's). Tickets merged into the
    source before now point at the target. Refused (MergeRefused, NotFoundError), nothing
    changes: merging into itself, a missing ticket, a source already merged, a target that
    is merged (merge into the ticket it was merged into instead), two institutions."""
    if source == into:
        raise MergeRefused("self", f"ticket {source} cannot be merged into itself")
    found = _row(conn, source)
    if found is None:
        raise NotFoundError(f"ticket {source} does not exist")
    target = _row(conn, into)
    if target is None:
        raise NotFoundError(f"ticket {into} does not exist")
    if found[1] is not None:
        raise MergeRefused(
            "source_merged", f"ticket {source} is already merged into ticket {found[1]}"
        )
    if target[1] is not None:
        final = final_number(conn, into)
        raise MergeRefused(
            "into_merged",
            f"ticket {into} is itself merged into ticket {target[1]}; merge into ticket "
            f"{final} instead",
        )
    if found[0] != target[0]:
        raise MergeRefused(
            "institutions",
            f"tickets {source} and {into} belong to two institutions: they are never merged",
        )
    # The target's history first: the moved articles take the version the merge gives it,
    # so a desk page loaded before the merge names them among what changed since.
    record_change(conn, into, "merge", str(source), str(into), by=by, now=now)
    into_version = version_of(conn, into) or 0
    (files,) = conn.execute(
        "SELECT COUNT(*) FROM attachments f JOIN articles a ON a.id = f.article WHERE a.ticket = ?",
        (source,),
    ).fetchone()
    moved = conn.execute(
        "UPDATE articles SET ticket = ?, version = ? WHERE ticket = ?",
        (into, into_version, source),
    ).rowcount
    conn.execute(
        "UPDATE tickets SET status = ?, merged_into = ?, updated_at = ? WHERE number = ?",
        (MERGED, into, iso(now), source),
    )
    conn.execute("UPDATE tickets SET merged_into = ? WHERE merged_into = ?", (into, source))
    conn.execute("UPDATE tickets SET updated_at = ? WHERE number = ?", (iso(now), into))
    record_change(conn, source, "merge", str(source), str(into), by=by, now=now)
    return Merged(
        source, into, found[0], moved, int(files), version_of(conn, source) or 0,
        into_version,
    )  # fmt: skip


def merged_into_of(conn: Conn, number: int, *, customer: str | None) -> int | None:
    """Where a visit to ticket `number` (of institution `customer`, when given) lands: the
    ticket it was merged into, None when it is not merged (or not the institution's)."""
    row = _row(conn, number)
    if row is None or row[1] is None or (customer is not None and row[0] != customer):
        return None
    return final_number(conn, number)
