"""The database of one data directory: every write a job on one writer thread, reads on aiosqlite
(or, on PostgreSQL, on a psycopg pool's connections in threads).

Writes: `Database.write(fn)` queues `fn(conn)` for the writer thread (see `_writer`), which
owns a plain `sqlite3` connection (WAL, synchronous=FULL: a COMMIT returns only once the
WAL is fsync'd) and commits the jobs queued meanwhile together. Reads: a few read-only
aiosqlite connections (`mode=ro`), handed out one caller at a time; they see committed data
only, and never wait for a COMMIT.

On PostgreSQL the database may go away and come back (SPEC 10): `availability` says whether
it answers; the writer reconnects by itself (see `_writer`), reads fail at once with
DatabaseUnavailable while it is away, and a pooled connection found broken is replaced.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import aiosqlite
import structlog

from ticketmail.storage import postgres
from ticketmail.storage._schema import migrate
from ticketmail.storage._writer import Writer
from ticketmail.storage.availability import Availability, DatabaseUnavailable, unavailable
from ticketmail.storage.dialect import Conn, Params, Row
from ticketmail.storage.paths import DatabaseTarget

__all__ = ["BACKSTOP_CHECKPOINT_PAGES", "CHECKPOINT_SECONDS", "READERS", "Database", "Params"]

log = structlog.get_logger()
T = TypeVar("T")


BUSY_TIMEOUT_MS = 10_000
# How long closing one read-only connection may take.
READER_CLOSE_SECONDS = 5.0
# Read-only connections at most (one read at a time on each).
READERS = 2
# With checkpoints in the background (the daemon): how often one runs while there are new
# commits, and the WAL size (pages) at which a COMMIT checkpoints itself should they lag.
CHECKPOINT_SECONDS = 0.25
BACKSTOP_CHECKPOINT_PAGES = 10_000


def _open_writer(target: DatabaseTarget) -> Conn:
    """The writer's connection, the schema brought up to date on it."""
    if target.postgres:
        pg = postgres.connect(target.url, application="ticketmail-writer")
        try:
            postgres.migrate(pg)
        except BaseException:
            pg.close()
            raise
        return pg
    conn = sqlite3.connect(target.path, isolation_level=None, check_same_thread=False)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a COMMIT returns only after the WAL is fsync'd; 250 means on disk.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _reopen_writer(url: str) -> Conn:
    """The writer's new connection after its last one broke (the schema is there already)."""
    return postgres.connect(url, application="ticketmail-writer")


def _uri(path: Path, *, read_only: bool) -> str:
    return f"file:{quote(str(path.resolve()))}{'?mode=ro' if read_only else ''}"


async def _connect(path: Path, *, read_only: bool) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(_uri(path, read_only=read_only), uri=True, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    except BaseException:
        await conn.close()
        raise
    return conn


class _Readers:
    """Up to READERS read-only connections, opened when first needed, one caller at a time."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._idle: asyncio.LifoQueue[aiosqlite.Connection] = asyncio.LifoQueue()
        self._all: list[aiosqlite.Connection] = []
        self._opening = 0

    async def take(self) -> aiosqlite.Connection:
        if self._idle.empty() and len(self._all) + self._opening < READERS:
            self._opening += 1
            opening = asyncio.ensure_future(self._open())
            try:
                return await asyncio.shield(opening)
            except asyncio.CancelledError:  # it still opens: for the next reader
                opening.add_done_callback(self._keep)
                raise
        return await self._idle.get()

    async def _open(self) -> aiosqlite.Connection:
        try:
            conn = await _connect(self._path, read_only=True)
        finally:
            self._opening -= 1
        self._all.append(conn)
        return conn

    def _keep(self, opening: asyncio.Future[aiosqlite.Connection]) -> None:
        if not opening.cancelled() and opening.exception() is None:
            self.give_back(opening.result())

    def give_back(self, conn: aiosqlite.Connection) -> None:
        self._idle.put_nowait(conn)

    async def close(self) -> None:
        """Close each (bounded); one that fails is logged and the others still close."""
        conns, self._all = self._all, []
        for conn in conns:
            await _close_reader(conn)


class _PgReading:
    """A pool's connection for several reads in a row, each in a thread (`reading`); one
    that breaks marks the database away and raises DatabaseUnavailable."""

    def __init__(self, conn: postgres.PgConn, availability: Availability) -> None:
        self.conn = conn
        self._availability = availability

    async def execute_fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        try:
            return await asyncio.to_thread(lambda: list(self.conn.execute(sql, params).fetchall()))
        except Exception as exc:
            if not postgres.broken(self.conn):
                raise
            self._availability.lost(f"{type(exc).__name__}: {exc}")
            raise DatabaseUnavailable("the database went away") from exc


class _PgReaders:
    """PostgreSQL's readers: up to READERS pooled read-only connections (psycopg_pool); none
    asked for while the database is away, and a broken one is replaced (the pool checks
    each when it is taken and drops it when it comes back broken).

    Reads wait for a free connection here, in the event loop, never in a thread: a thread
    waiting in the pool's `getconn` for a connection held by a read that needs a thread to
    run its query starved the threads under load (20 searches at once: the pool's timeout,
    taken for the database being away, made every page 503 and SMTP answer 451). Only a
    read that holds a place asks the pool, so `getconn` waits only for a connection being
    opened: its timeout does mean the database is away."""

    def __init__(self, url: str, availability: Availability) -> None:
        self._pool = postgres.reader_pool(url, size=READERS)
        self._availability = availability
        self._places = asyncio.Semaphore(READERS)

    async def take(self) -> _PgReading:
        self._availability.check()
        await self._places.acquire()
        getting = asyncio.ensure_future(asyncio.to_thread(self._pool.getconn))
        try:
            raw = await asyncio.shield(getting)
        except asyncio.CancelledError:
            getting.add_done_callback(self._give_back_late)  # the thread still gets one
            raise
        except Exception as exc:
            self._places.release()
            if not unavailable(exc):
                raise
            self._availability.lost(f"{type(exc).__name__}: {exc}")
            raise DatabaseUnavailable("the database is unavailable") from exc
        return _PgReading(postgres.PgConn(raw), self._availability)

    def _give_back_late(self, getting: asyncio.Future[Any]) -> None:
        """A take cancelled while its thread was in `getconn`: what it got goes back."""
        try:
            if not getting.cancelled() and getting.exception() is None:
                self._pool.putconn(getting.result())
        finally:
            self._places.release()

    def give_back(self, reading: _PgReading) -> None:
        try:
            self._pool.putconn(reading.conn.raw)
        finally:
            self._places.release()

    async def close(self) -> None:
        await asyncio.to_thread(self._pool.close, READER_CLOSE_SECONDS)


class Database:
    """One database: `write` jobs on the writer thread, `fetchall`/`reading` for reads."""

    def __init__(self, target: DatabaseTarget, writer: Writer) -> None:
        self.target = target
        self.path = target.path
        self._writer = writer
        self.availability = writer.availability
        self._readers: _Readers | _PgReaders = (
            _PgReaders(target.url, self.availability) if target.postgres else _Readers(target.path)
        )
        self._checkpoints: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, target: DatabaseTarget | Path) -> Database:
        """Open (or create) the database and migrate it; start its writer thread.
        A path is an SQLite file's."""
        if isinstance(target, Path):
            target = DatabaseTarget("sqlite", target)
        conn = await asyncio.to_thread(_open_writer, target)
        reopen = functools.partial(_reopen_writer, target.url) if target.postgres else None
        writer = Writer(conn, asyncio.get_running_loop(), reopen=reopen)
        writer.start()
        return cls(target, writer)

    @property
    def commits(self) -> int:
        """COMMITs done by the writer since open (read by tests and the benchmark)."""
        return self._writer.commits

    async def write(
        self,
        fn: Callable[[Conn], T],
        /,
        *,
        flush: Callable[[], None] | None = None,
        alongside: Sequence[str] | None = None,
    ) -> T:
        """`fn(connection)` as a job on the writer thread, in a transaction (a SAVEPOINT of
        its own in the trip's); returns its result once committed (fsync'd), or raises its
        exception (its work undone, the rest of the trip kept).

        `fn` runs in the context it was queued in; it must not touch the Database (it would
        wait for itself). `flush` (say `BlobStore.sync`) runs on the writer thread before the
        trip's transaction, once for all the jobs that name it; when it raises, those jobs
        do not run and raise it. A caller cancelled before the thread took its job takes it
        back (it never runs); after that, the job runs whole and is committed regardless.

        `alongside` (what several PostgreSQL nodes may do at once; `Writer.write`): None,
        the job runs alone; keys, it may run beside other nodes' jobs, these keys held.
        """
        return await self._writer.write(fn, flush=flush, alongside=alongside)

    # --- reads ---------------------------------------------------------------------------

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[aiosqlite.Connection | _PgReading]:
        """A read-only connection for several reads in a row (no one else's meanwhile)."""
        readers = self._readers
        if isinstance(readers, _PgReaders):
            reading = await readers.take()
            try:
                yield reading
            finally:
                readers.give_back(reading)
            return
        conn = await readers.take()
        try:
            yield conn
        finally:
            readers.give_back(conn)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        """The rows of one query, on a read-only connection: committed data only."""
        async with self.reading() as conn:
            return list(await conn.execute_fetchall(sql, params))

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    # --- checkpoints ---------------------------------------------------------------------

    async def start_checkpoints(self) -> None:
        """Copy the WAL into the database on a connection and thread of their own, every
        CHECKPOINT_SECONDS while there are new commits, instead of inside the COMMIT that
        crosses SQLite's 1,000 pages (which then took several milliseconds, with its
        trip's jobs waiting). A checkpoint copies each page once, however often the WAL
        holds it. Should they fall behind, a COMMIT still checkpoints at
        BACKSTOP_CHECKPOINT_PAGES. For the daemon; a CLI command keeps SQLite's default.
        """
        if self._checkpoints is not None or self.target.postgres:
            return
        await self.write(_backstop)
        conn = await _connect(self.path, read_only=False)
        self._checkpoints = asyncio.create_task(self._checkpoint(conn), name="db-checkpoint")

    async def _checkpoint(self, conn: aiosqlite.Connection) -> None:
        try:
            done = self.commits
            while True:
                await asyncio.sleep(CHECKPOINT_SECONDS)
                if self.commits == done:
                    continue
                done = self.commits
                try:  # PASSIVE: never waits for the writer or a reader, never blocks one
                    await conn.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as exc:  # the next COMMIT or the next round tries again
                    log.warning("checkpoint_failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            await asyncio.shield(conn.close())

    async def close(self) -> None:
        """Stop the checkpoints; the jobs queued before still go to disk; close everything.
        The writer closes even when closing a reader or the checkpoints' connection failed."""
        try:
            if self._checkpoints is not None:
                checkpoints, self._checkpoints = self._checkpoints, None
                checkpoints.cancel()
                try:
                    await asyncio.wait_for(checkpoints, READER_CLOSE_SECONDS)
                except asyncio.CancelledError:
                    pass
                except Exception as exc:
                    log.error("reader_close_failed", error=f"{type(exc).__name__}: {exc}")
            await self._readers.close()
        finally:
            # The writer's goes last: the last connection to close copies the WAL into the
            # database and removes it (a read-only one could not).
            await self._writer.close()


async def _close_reader(conn: aiosqlite.Connection) -> None:
    """Close one reader, waiting READER_CLOSE_SECONDS at most: a close that is still queued
    behind a read (aiosqlite runs both on the connection's thread) goes on alone."""
    closing = asyncio.ensure_future(conn.close())
    done, _ = await asyncio.wait({closing}, timeout=READER_CLOSE_SECONDS)
    if not done:
        log.error("reader_close_failed", error=f"not closed within {READER_CLOSE_SECONDS} s")
    elif closing.exception() is not None:
        exc = closing.exception()
        log.error("reader_close_failed", error=f"{type(exc).__name__}: {exc}")


def _backstop(conn: Conn) -> None:
    conn.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_CHECKPOINT_PAGES}")
