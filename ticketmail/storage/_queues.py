"""The mails that wait for an admin: held (unverified senders) and quarantined (intake failed)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from ticketmail.errors import NotFoundError
from ticketmail.models import HeldEntry, QuarantineEntry
from ticketmail.storage._rows import iso, moment
from ticketmail.storage.database import Database, Params
from ticketmail.storage.dialect import Conn, Row, insert_id

__all__ = ["Queues"]


def _held(r: Row) -> HeldEntry:
    received = moment(r["received_at"])
    assert received is not None
    return HeldEntry(
        id=r["id"],
        received_at=received,
        envelope_from=r["envelope_from"],
        envelope_to=tuple(json.loads(r["envelope_to"])),
        sender=r["sender"],
        raw_sha256=r["raw_sha256"],
        size=r["size"],
        reason=r["reason"],
        status=r["status"],
        outcome=r["outcome"],
    )


def _quarantined(r: Row) -> QuarantineEntry:
    received = moment(r["received_at"])
    assert received is not None
    return QuarantineEntry(
        id=r["id"],
        received_at=received,
        envelope_from=r["envelope_from"],
        envelope_to=tuple(json.loads(r["envelope_to"])),
        raw_sha256=r["raw_sha256"],
        size=r["size"],
        error=r["error"],
        status=r["status"],
        outcome=r["outcome"],
    )


def _insert(conn: Conn, sql: str, params: Params) -> int:
    return insert_id(conn, sql, params)


def _update(conn: Conn, sql: str, params: Params) -> None:
    conn.execute(sql, params)


class Queues:
    """The Store's held and quarantined mails: one job per change, and the admin's reads."""

    db: Database

    # --- held (unverified senders) -----------------------------------------------------------

    async def add_held(
        self,
        *,
        envelope_from: str,
        envelope_to: Sequence[str],
        sender: str,
        raw_sha256: str,
        size: int,
        reason: str,
        now: datetime,
    ) -> int:
        """Keep a mail of an unverified sender until an admin releases or drops it."""
        sql = (
            "INSERT INTO held(received_at, envelope_from, envelope_to, sender, raw_sha256, "
            "size, reason, status) VALUES (?, ?, ?, ?, ?, ?, ?, 'held')"
        )
        params = (iso(now), envelope_from, json.dumps(list(envelope_to)), sender, raw_sha256,
                  size, reason[:500])  # fmt: skip
        return await self.db.write(lambda conn: _insert(conn, sql, params))

    async def resolve_held(self, entry: int, *, status: str, outcome: str, now: datetime) -> None:
        sql = "UPDATE held SET status = ?, outcome = ?, resolved_at = ? WHERE id = ?"
        params = (status, outcome, iso(now), entry)
        await self.db.write(lambda conn: _update(conn, sql, params))

    async def list_held(self) -> list[HeldEntry]:
        return [_held(r) for r in await self.db.fetchall("SELECT * FROM held ORDER BY id")]

    async def get_held(self, entry: int) -> HeldEntry:
        row = await self.db.fetchone("SELECT * FROM held WHERE id = ?", (entry,))
        if row is None:
            raise NotFoundError(f"held entry {entry} does not exist")
        return _held(row)

    # --- quarantine (intake failed) ----------------------------------------------------------

    async def add_quarantine(
        self,
        *,
        envelope_from: str,
        envelope_to: Sequence[str],
        raw_sha256: str,
        size: int,
        error: str,
        now: datetime,
    ) -> int:
        """Keep a mail intake failed on, with the error, until an admin retries it."""
        sql = (
            "INSERT INTO quarantine(received_at, envelope_from, envelope_to, raw_sha256, size, "
            "error, status) VALUES (?, ?, ?, ?, ?, ?, 'held')"
        )
        params = (iso(now), envelope_from, json.dumps(list(envelope_to)), raw_sha256, size,
                  error[:2000])  # fmt: skip
        return await self.db.write(lambda conn: _insert(conn, sql, params))

    async def resolve_quarantine(self, entry: int, *, outcome: str, now: datetime) -> None:
        sql = "UPDATE quarantine SET status = 'retried', outcome = ?, resolved_at = ? WHERE id = ?"
        params = (outcome, iso(now), entry)
        await self.db.write(lambda conn: _update(conn, sql, params))

    async def note_quarantine_error(self, entry: int, error: str) -> None:
        """A retry failed again: its error replaces the one kept."""
        sql = "UPDATE quarantine SET error = ? WHERE id = ?"
        params = (error[:2000], entry)
        await self.db.write(lambda conn: _update(conn, sql, params))

    async def list_quarantine(self) -> list[QuarantineEntry]:
        rows = await self.db.fetchall("SELECT * FROM quarantine ORDER BY id")
        return [_quarantined(r) for r in rows]

    async def get_quarantine(self, entry: int) -> QuarantineEntry:
        row = await self.db.fetchone("SELECT * FROM quarantine WHERE id = ?", (entry,))
        if row is None:
            raise NotFoundError(f"quarantine entry {entry} does not exist")
        return _quarantined(row)
