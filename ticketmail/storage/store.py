"""The Store: one data directory's database as the rest of ticketmail uses it.

Its reads and one-job writes live with their SQL, by concern: `_people` (customers, users,
agents), `tickets`, `outbox`, `_queues` (held and quarantined mails). A write of several
parts (a mail, a support team's action) is one `write(fn)` job whose `fn` calls the SQL
functions of those modules (and of `mails`) on the writer's connection.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from ticketmail.storage._people import People
from ticketmail.storage._queues import Queues
from ticketmail.storage.database import Database
from ticketmail.storage.dialect import Conn
from ticketmail.storage.outbox import Outbox
from ticketmail.storage.paths import DatabaseTarget, DataPaths
from ticketmail.storage.records import CustomerRow, UserRow
from ticketmail.storage.search import SearchIndexer, catch_up
from ticketmail.storage.tickets import Tickets

__all__ = ["CustomerRow", "Store", "UserRow"]

T = TypeVar("T")


class Store(People, Tickets, Outbox, Queues):
    """The database of one data directory: reads as async methods (read-only connections,
    committed data only), every write a job on the one writer thread (`write`, or a method
    that queues one); each returns once its COMMIT is on disk."""

    def __init__(self, db: Database, paths: DataPaths) -> None:
        self.db = db
        self.paths = paths
        self._indexer = SearchIndexer(db)
        self._catching_up = asyncio.Lock()

    @classmethod
    async def open(cls, data_dir: Path, database: DatabaseTarget | None = None) -> Store:
        """Open (create, migrate) the database of `data_dir` (SQLite's file in it unless
        `database` says otherwise), creating the directory."""
        paths = DataPaths(data_dir)
        await asyncio.to_thread(paths.root.mkdir, parents=True, exist_ok=True)
        return cls(await Database.open(database or DatabaseTarget("sqlite", paths.database)), paths)

    @property
    def path(self) -> Path:
        """The SQLite database file (on PostgreSQL: where it would be)."""
        return self.paths.database

    @property
    def target(self) -> DatabaseTarget:
        """Which database this is."""
        return self.db.target

    @property
    def commits(self) -> int:
        """COMMITs done since open (read by tests and the benchmark)."""
        return self.db.commits

    async def write(
        self,
        fn: Callable[[Conn], T],
        /,
        *,
        flush: Callable[[], None] | None = None,
        alongside: Sequence[str] | None = None,
    ) -> T:
        """`fn(connection)` as a job on the writer thread (see `Database.write`)."""
        return await self.db.write(fn, flush=flush, alongside=alongside)

    async def start_checkpoints(self) -> None:
        """The daemon's WAL checkpoints in the background (see `Database.start_checkpoints`)."""
        await self.db.start_checkpoints()

    def start_search_index(self) -> None:
        """The daemon's full-text indexing in the background (see `storage.search`)."""
        self._indexer.start()

    async def catch_up_search(self, *, until: float | None = None) -> int:
        """Index the articles still waiting, before a search, batches starting until `until`
        (time.monotonic); how many still wait (see `storage.search`). One search at a time
        does it: searches at once never take the writer from the mail in turns."""
        if self._catching_up.locked():
            return await catch_up(self.db, until=0.0)  # only counts
        async with self._catching_up:
            return await catch_up(self.db, until=until)

    async def close(self) -> None:
        """Close the database; jobs queued before still go to disk."""
        await self._indexer.stop()
        await self.db.close()

    async def message_id_secret(self) -> str:
        """The data directory's own signing secret, made at random the first time it is asked.

        Used when TICKETMAIL_SECRET is not set. The daemon and every CLI process share it,
        and `backup` carries it along with the database.
        """
        row = await self.db.fetchone("SELECT value FROM meta WHERE key = 'message_id_secret'")
        if row is not None:
            return str(row[0])
        return await self.db.write(_make_secret)


def _make_secret(conn: Conn) -> str:
    """The secret, made now unless another process made it first."""
    conn.execute(
        "INSERT INTO meta(key, value) VALUES ('message_id_secret', ?) ON CONFLICT(key) DO NOTHING",
        (secrets.token_hex(32),),
    )
    (value,) = conn.execute("SELECT value FROM meta WHERE key = 'message_id_secret'").fetchone()
    return str(value)
